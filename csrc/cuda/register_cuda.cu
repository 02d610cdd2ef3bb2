// CUDA kernels of every op: the shared sequence loop over CudaBackend.
#include <torch/library.h>

#include "../layer_ops.h"
#include "cuda_backend.cuh"

TORCH_LIBRARY_IMPL(fused_rnn, CUDA, m) { FUSED_RNN_REGISTER_BACKEND(m, ::fused_rnn::CudaBackend); }
