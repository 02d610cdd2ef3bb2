// See lstm_pointwise_avx512.h.
#include "lstm_pointwise_avx512.h"

#include <immintrin.h>

#include <algorithm>

#include "cpu_isa.h"

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
template <int kLanes>
using Vectors = __m512[kLanes];

// e^x with host_expf's range reduction and polynomial (cell_math.h). The clamp keeps
// 1 + e^x finite, so that the reciprocal's Newton step never computes inf * 0; x is the
// second operand of min/max because they return the second operand when either is NaN,
// so NaN passes through.
template <int L>
FUSED_RNN_AVX512 inline void exp_ps(Vectors<L>& x) {
  Vectors<L> k, r, p;
#pragma GCC unroll 4
  for (int v = 0; v < L; ++v) {
    x[v] = _mm512_max_ps(_mm512_set1_ps(-87.0f), _mm512_min_ps(_mm512_set1_ps(88.0f), x[v]));
    k[v] = _mm512_roundscale_ps(_mm512_mul_ps(x[v], _mm512_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
#pragma GCC unroll 4
  for (int v = 0; v < L; ++v) r[v] = _mm512_fnmadd_ps(k[v], _mm512_set1_ps(0.693359375f), x[v]);
#pragma GCC unroll 4
  for (int v = 0; v < L; ++v) r[v] = _mm512_fmadd_ps(k[v], _mm512_set1_ps(2.12194440e-4f), r[v]);
  const float coefficients[] = {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                                5.0000001201e-1f};
#pragma GCC unroll 4
  for (int v = 0; v < L; ++v) p[v] = _mm512_set1_ps(1.9875691500e-4f);
#pragma GCC unroll 5
  for (float c : coefficients) {
#pragma GCC unroll 4
    for (int v = 0; v < L; ++v) p[v] = _mm512_fmadd_ps(p[v], r[v], _mm512_set1_ps(c));
  }
#pragma GCC unroll 4
  for (int v = 0; v < L; ++v) {
    p[v] = _mm512_fmadd_ps(_mm512_mul_ps(p[v], r[v]), r[v], _mm512_add_ps(r[v], _mm512_set1_ps(1.0f)));
    x[v] = _mm512_scalef_ps(p[v], k[v]);  // p * 2^k
  }
}

// 1 / (1 + e) for e >= 0 (finite or NaN): a 14-bit estimate and one Newton step, r + r (1 - d r).
template <int L>
FUSED_RNN_AVX512 inline void one_over_one_plus(Vectors<L>& e) {
#pragma GCC unroll 4
  for (int v = 0; v < L; ++v) {
    const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), e[v]);
    const __m512 r = _mm512_rcp14_ps(d);
    e[v] = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
  }
}

template <int L>
FUSED_RNN_AVX512 inline void sigmoid_ps(Vectors<L>& x) {
#pragma GCC unroll 4
  for (int v = 0; v < L; ++v) x[v] = _mm512_sub_ps(_mm512_setzero_ps(), x[v]);
  exp_ps(x);
  one_over_one_plus(x);
}

// tanh(x) = 1 - 2 / (1 + e^{2x}), as tanh_acc.
template <int L>
FUSED_RNN_AVX512 inline void tanh_ps(Vectors<L>& x) {
#pragma GCC unroll 4
  for (int v = 0; v < L; ++v) x[v] = _mm512_add_ps(x[v], x[v]);
  exp_ps(x);
  one_over_one_plus(x);
#pragma GCC unroll 4
  for (int v = 0; v < L; ++v) x[v] = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), x[v], _mm512_set1_ps(1.0f));
}

// The same units of R rows go through the math together (R kChains vectors): the chain
// that ends a row's step, tanh(c) and h = o tanh(c), depends on everything before it, and
// with one row's two vectors in flight it left the FP units waiting on its latency. Two
// rows at a time (make pointwise-microbench, (64 rows, 256 units) with the 2.8 us restore):
// 18.4 -> 15.0-15.6 us; four spill registers (37 us). Row q's units [j, j + 16 kChains)
// are at g[q] + j (c_state[q] + j, h_out[q] + j); vector v of row q is lane q kChains + v.
template <int R>
struct RowPointers {
  float* g[R];
  float* c_state[R];
  float* h_out[R];
};

// Loads and stores of kChains consecutive vectors per row; masked only at the end of a
// row (a masked store of a whole vector was the slowest instruction of the step, perf).
template <bool kMasked, int R>
FUSED_RNN_AVX512 inline void load(Vectors<R * kChains>& x, float* const (&p)[R], int64_t offset,
                                  const __mmask16 (&m)[kChains]) {
#pragma GCC unroll 8
  for (int l = 0; l < R * kChains; ++l) {
    const float* at = p[l / kChains] + offset + 16 * (l % kChains);
    x[l] = kMasked ? _mm512_maskz_loadu_ps(m[l % kChains], at) : _mm512_loadu_ps(at);
  }
}

template <bool kMasked, int R>
FUSED_RNN_AVX512 inline void store(float* const (&p)[R], int64_t offset, const Vectors<R * kChains>& x,
                                   const __mmask16 (&m)[kChains]) {
#pragma GCC unroll 8
  for (int l = 0; l < R * kChains; ++l) {
    float* at = p[l / kChains] + offset + 16 * (l % kChains);
    if (kMasked) {
      _mm512_mask_storeu_ps(at, m[l % kChains], x[l]);
    } else {
      _mm512_storeu_ps(at, x[l]);
    }
  }
}

// Units [j, j + 16 kChains) of R rows, those at or past the masks' end computed from zeros
// and not stored.
template <bool kMasked, int R>
FUSED_RNN_AVX512 inline void lstm_forward_units(const RowPointers<R>& rows, int64_t j, int64_t H,
                                                const __mmask16 (&m)[kChains]) {
  constexpr int L = R * kChains;
  Vectors<L> i, f, c_in, o, c, h;
  load<kMasked>(i, rows.g, j, m);
  load<kMasked>(f, rows.g, H + j, m);
  load<kMasked>(c_in, rows.g, 2 * H + j, m);
  load<kMasked>(o, rows.g, 3 * H + j, m);
  sigmoid_ps(i);
  sigmoid_ps(f);
  tanh_ps(c_in);
  sigmoid_ps(o);
  load<kMasked>(c, rows.c_state, j, m);
#pragma GCC unroll 8
  for (int l = 0; l < L; ++l) h[l] = c[l] = _mm512_fmadd_ps(f[l], c[l], _mm512_mul_ps(i[l], c_in[l]));
  tanh_ps(h);
#pragma GCC unroll 8
  for (int l = 0; l < L; ++l) h[l] = _mm512_mul_ps(o[l], h[l]);
  store<kMasked>(rows.g, j, i, m);
  store<kMasked>(rows.g, H + j, f, m);
  store<kMasked>(rows.g, 2 * H + j, c_in, m);
  store<kMasked>(rows.g, 3 * H + j, o, m);
  store<kMasked>(rows.g, 4 * H + j, c, m);
  store<kMasked>(rows.c_state, j, c, m);
  store<kMasked>(rows.h_out, j, h, m);
}

// Units [j0, j1) of R rows starting at row r.
template <int R>
FUSED_RNN_AVX512 inline void lstm_forward_row_group(const ForwardStep<float>& s, int64_t r, int64_t j0,
                                                    int64_t tail_start, int64_t j1, int64_t H,
                                                    const __mmask16 (&full)[kChains],
                                                    const __mmask16 (&tail)[kChains]) {
  constexpr int64_t kBlock = 16 * kChains;
  RowPointers<R> rows;
  for (int q = 0; q < R; ++q) {
    rows.g[q] = s.ws + (r + q) * s.ws_ld;
    rows.c_state[q] = s.c_state + (r + q) * H;
    rows.h_out[q] = s.h_out + (r + q) * s.h_out_ld;
  }
  for (int64_t j = j0; j < tail_start; j += kBlock) lstm_forward_units<false>(rows, j, H, full);
  if (tail_start < j1) lstm_forward_units<true>(rows, tail_start, H, tail);
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
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) lstm_forward_row_group<2>(s, r, j0, tail_start, j1, H, full, tail);
  if (r < r1) lstm_forward_row_group<1>(s, r, j0, tail_start, j1, H, full, tail);
}

#pragma GCC diagnostic pop

}  // namespace avx512
}  // namespace fused_rnn
