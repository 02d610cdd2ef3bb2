// See cell_pointwise.h: cell_pointwise.inc compiled for AVX-512 and for AVX2.
#include "cell_pointwise.h"

#include <algorithm>

#include "cpu_isa.h"
#include "simd_lanes.h"

namespace fused_rnn {
namespace {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see simd_lanes.h
#pragma GCC diagnostic ignored "-Wuninitialized"

// One Newton step takes rcp14's 14 bits to full precision.
struct Avx512Pointwise : Avx512Lanes {
  static constexpr int kReciprocalSteps = 1;
};
// rcp's 12 bits need two Newton steps for the 4 ulp of tests/test_cpu_pointwise.py.
struct Avx2Pointwise : Avx2Lanes {
  static constexpr int kReciprocalSteps = 2;
};

namespace avx512_pointwise {
using Lanes = Avx512Pointwise;
#define FUSED_RNN_POINTWISE_TARGET FUSED_RNN_AVX512
#include "cell_pointwise.inc"
#undef FUSED_RNN_POINTWISE_TARGET
}  // namespace avx512_pointwise

namespace avx2_pointwise {
using Lanes = Avx2Pointwise;
#define FUSED_RNN_POINTWISE_TARGET FUSED_RNN_AVX2
#include "cell_pointwise.inc"
#undef FUSED_RNN_POINTWISE_TARGET
}  // namespace avx2_pointwise

#pragma GCC diagnostic pop

}  // namespace

template <class Cell>
void forward_rows_avx512(const ForwardStep<float>& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t H) {
  avx512_pointwise::forward_rows<Cell>(s, r0, r1, j0, j1, H);
}

template <class Cell>
void forward_rows_avx2(const ForwardStep<float>& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t H) {
  avx2_pointwise::forward_rows<Cell>(s, r0, r1, j0, j1, H);
}

#define FUSED_RNN_INSTANTIATE(Cell)                                                                      \
  template void forward_rows_avx512<Cell>(const ForwardStep<float>&, int64_t, int64_t, int64_t, int64_t, \
                                          int64_t);                                                      \
  template void forward_rows_avx2<Cell>(const ForwardStep<float>&, int64_t, int64_t, int64_t, int64_t, int64_t);
FUSED_RNN_INSTANTIATE(LstmCell)
FUSED_RNN_INSTANTIATE(GruCell)
#undef FUSED_RNN_INSTANTIATE

}  // namespace fused_rnn
