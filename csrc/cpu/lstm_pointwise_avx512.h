#pragma once
// The LSTM forward pointwise step in float32 with AVX-512 intrinsics: the same math as
// LstmCell::forward (cell_math.h), which every other dtype and device runs.
//
// Why a second copy of that math: compiled from the scalar code, each 16 elements take
// five `vdivps` (one per sigmoid/tanh) and an exp whose range reduction rebuilds 2^k from
// integer bits, and one vector at a time leaves the FMA units waiting on a chain of ~15
// dependent operations. Here a reciprocal estimate refined by one Newton step replaces
// each division, vscalefps the bit tricks, and two vectors go through each operation
// together: the (64 rows, 256 units) step alone 18 -> 16 us, an LSTM forward at
// (T, N, H) = (100, 64, 256) about 1% faster on one thread (bench/README.md). The results
// stay within 4 ulp of torch.nn's (tests/test_cpu_pointwise.py).
#include <cstdint>

#include "../cell_math.h"

namespace fused_rnn {
namespace avx512 {

// LstmCell::forward for rows [r0, r1) and hidden units [j0, j1) of one step. Call only
// where cpu_isa() is CpuIsa::kAvx512.
void lstm_forward_rows(const ForwardStep<float>& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t H);

}  // namespace avx512
}  // namespace fused_rnn
