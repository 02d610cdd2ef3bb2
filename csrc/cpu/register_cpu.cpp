// CPU kernels of every op: the shared sequence loop over CpuBackend.
#include <torch/library.h>

#include "../layer_ops.h"
#include "cpu_backend.h"

TORCH_LIBRARY_IMPL(fused_rnn, CPU, m) { FUSED_RNN_REGISTER_BACKEND(m, ::fused_rnn::CpuBackend); }
