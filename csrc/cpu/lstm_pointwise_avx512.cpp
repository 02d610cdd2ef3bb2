// See lstm_pointwise_avx512.h.
#include "lstm_pointwise_avx512.h"

#include <immintrin.h>

#include <algorithm>

#include "avx512_target.h"

namespace fused_rnn {
namespace avx512 {
namespace {

// GCC 12's intrinsics (roundscale, scalef, rcp14) start from _mm512_undefined_ps(), which
// -W(maybe-)uninitialized reports once inlined; every lane of their results is defined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// kChains independent vectors go through each function below together, one operation at
// a time across all of them, so that their dependent chains overlap. Two vectors are one
// 32-unit panel, the block the step gets from gemm_panels' panel_done (with 4, a panel
// would run half-empty masked blocks).
constexpr int kChains = 2;
using Vectors = __m512[kChains];

// e^x with host_expf's range reduction and polynomial (cell_math.h). The clamp keeps
// 1 + e^x finite, so that the reciprocal's Newton step never computes inf * 0; x is the
// second operand of min/max because they return the second operand when either is NaN,
// so NaN passes through.
FUSED_RNN_AVX512 inline void exp_ps(Vectors& x) {
  Vectors k, r, p;
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) {
    x[v] = _mm512_max_ps(_mm512_set1_ps(-87.0f), _mm512_min_ps(_mm512_set1_ps(88.0f), x[v]));
    k[v] = _mm512_roundscale_ps(_mm512_mul_ps(x[v], _mm512_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) r[v] = _mm512_fnmadd_ps(k[v], _mm512_set1_ps(0.693359375f), x[v]);
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) r[v] = _mm512_fmadd_ps(k[v], _mm512_set1_ps(2.12194440e-4f), r[v]);
  const float coefficients[] = {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                                5.0000001201e-1f};
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) p[v] = _mm512_set1_ps(1.9875691500e-4f);
#pragma GCC unroll 5
  for (float c : coefficients) {
#pragma GCC unroll 4
    for (int v = 0; v < kChains; ++v) p[v] = _mm512_fmadd_ps(p[v], r[v], _mm512_set1_ps(c));
  }
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) {
    p[v] = _mm512_fmadd_ps(_mm512_mul_ps(p[v], r[v]), r[v], _mm512_add_ps(r[v], _mm512_set1_ps(1.0f)));
    x[v] = _mm512_scalef_ps(p[v], k[v]);  // p * 2^k
  }
}

// 1 / (1 + e) for e >= 0 (finite or NaN): a 14-bit estimate and one Newton step, r + r (1 - d r).
FUSED_RNN_AVX512 inline void one_over_one_plus(Vectors& e) {
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) {
    const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), e[v]);
    const __m512 r = _mm512_rcp14_ps(d);
    e[v] = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
  }
}

FUSED_RNN_AVX512 inline void sigmoid_ps(Vectors& x) {
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) x[v] = _mm512_sub_ps(_mm512_setzero_ps(), x[v]);
  exp_ps(x);
  one_over_one_plus(x);
}

// tanh(x) = 1 - 2 / (1 + e^{2x}), as tanh_acc.
FUSED_RNN_AVX512 inline void tanh_ps(Vectors& x) {
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) x[v] = _mm512_add_ps(x[v], x[v]);
  exp_ps(x);
  one_over_one_plus(x);
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) x[v] = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), x[v], _mm512_set1_ps(1.0f));
}

// Loads and stores of kChains consecutive vectors; masked only at the end of a row (a
// masked store of a whole vector was the slowest instruction of the step, perf).
template <bool kMasked>
FUSED_RNN_AVX512 inline void load(Vectors& x, const float* p, const __mmask16 (&m)[kChains]) {
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) x[v] = kMasked ? _mm512_maskz_loadu_ps(m[v], p + 16 * v) : _mm512_loadu_ps(p + 16 * v);
}

template <bool kMasked>
FUSED_RNN_AVX512 inline void store(float* p, const Vectors& x, const __mmask16 (&m)[kChains]) {
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) {
    if (kMasked) {
      _mm512_mask_storeu_ps(p + 16 * v, m[v], x[v]);
    } else {
      _mm512_storeu_ps(p + 16 * v, x[v]);
    }
  }
}

// Units [j, j + 16 kChains) of one row, those at or past the masks' end computed from
// zeros and not stored.
template <bool kMasked>
FUSED_RNN_AVX512 inline void lstm_forward_units(float* g, float* c_state, float* h_out, int64_t H,
                                                const __mmask16 (&m)[kChains]) {
  Vectors i, f, c_in, o, c, h;
  load<kMasked>(i, g, m);
  load<kMasked>(f, g + H, m);
  load<kMasked>(c_in, g + 2 * H, m);
  load<kMasked>(o, g + 3 * H, m);
  sigmoid_ps(i);
  sigmoid_ps(f);
  tanh_ps(c_in);
  sigmoid_ps(o);
  load<kMasked>(c, c_state, m);
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) h[v] = c[v] = _mm512_fmadd_ps(f[v], c[v], _mm512_mul_ps(i[v], c_in[v]));
  tanh_ps(h);
#pragma GCC unroll 4
  for (int v = 0; v < kChains; ++v) h[v] = _mm512_mul_ps(o[v], h[v]);
  store<kMasked>(g, i, m);
  store<kMasked>(g + H, f, m);
  store<kMasked>(g + 2 * H, c_in, m);
  store<kMasked>(g + 3 * H, o, m);
  store<kMasked>(g + 4 * H, c, m);
  store<kMasked>(c_state, c, m);
  store<kMasked>(h_out, h, m);
}

}  // namespace

FUSED_RNN_AVX512 void lstm_forward_rows(const ForwardStep<float>& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1,
                                        int64_t H) {
  constexpr int64_t kBlock = 16 * kChains;
  __mmask16 full[kChains], tail[kChains];
  const int64_t tail_start = j0 + (j1 - j0) / kBlock * kBlock;
  for (int v = 0; v < kChains; ++v) {
    full[v] = 0xFFFF;
    const int64_t left = std::clamp<int64_t>(j1 - tail_start - 16 * v, 0, 16);
    tail[v] = left == 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
  }
  for (int64_t r = r0; r < r1; ++r) {
    float* g = s.ws + r * s.ws_ld;
    float* c_state = s.c_state + r * H;
    float* h_out = s.h_out + r * s.h_out_ld;
    for (int64_t j = j0; j < tail_start; j += kBlock) lstm_forward_units<false>(g + j, c_state + j, h_out + j, H, full);
    if (tail_start < j1) lstm_forward_units<true>(g + tail_start, c_state + tail_start, h_out + tail_start, H, tail);
  }
}

#pragma GCC diagnostic pop

}  // namespace avx512
}  // namespace fused_rnn
