#pragma once
// The GEMM shapes that every backend's gemm() treats alike, before calling its BLAS:
// nothing to compute when M or N is 0, and for K = 0 (a direct op call with input size 0)
// C = beta * C, i.e. zeros when beta is 0 and C unchanged when beta is 1.
#include <cstdint>

namespace fused_rnn {

// Returns true when (M, N, K) is one of those shapes and has been handled; zero_c() must
// write zeros into the M x N matrix C (it is called only for K = 0 and beta = 0).
template <class ZeroC>
bool handled_without_blas(int64_t M, int64_t N, int64_t K, int beta, ZeroC&& zero_c) {
  if (M == 0 || N == 0) return true;
  if (K != 0) return false;
  if (beta == 0) zero_c();
  return true;
}

}  // namespace fused_rnn
