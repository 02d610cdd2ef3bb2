#pragma once
// Vectors of float32 lanes and the operations the CPU kernels use, once per ISA
// (cpu_isa.h): sgemm_micro_tile.inc and cell_pointwise.inc are written once over a `Lanes`
// type and compiled for each. Call a Lanes type's operations only from functions compiled
// for its ISA (FUSED_RNN_AVX512 / FUSED_RNN_AVX2).
#include <immintrin.h>

#include "cpu_isa.h"

#define FUSED_RNN_LANES_512 FUSED_RNN_AVX512 static inline __attribute__((always_inline))
#define FUSED_RNN_LANES_256 FUSED_RNN_AVX2 static inline __attribute__((always_inline))

namespace fused_rnn {

#pragma GCC diagnostic push
// GCC 12's AVX-512 intrinsics (masked loads, roundscale, scalef, rcp14) start from
// _mm512_undefined_ps(), which -W(maybe-)uninitialized reports once inlined; every lane of
// their results is defined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// 16 floats in a zmm register.
struct Avx512Lanes {
  using V = __m512;
  static constexpr int kWidth = 16;
  FUSED_RNN_LANES_512 V zero() { return _mm512_setzero_ps(); }
  FUSED_RNN_LANES_512 V broadcast(float x) { return _mm512_set1_ps(x); }
  FUSED_RNN_LANES_512 V load(const float* p) { return _mm512_loadu_ps(p); }
  FUSED_RNN_LANES_512 void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static inline __mmask16 first(int n) {
    return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
  }
  // The first n lanes (n may be <= 0 or > kWidth); the others read as zero and are not stored.
  FUSED_RNN_LANES_512 V load_first(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  FUSED_RNN_LANES_512 void store_first(float* p, V v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  FUSED_RNN_LANES_512 V add(V a, V b) { return _mm512_add_ps(a, b); }
  FUSED_RNN_LANES_512 V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  FUSED_RNN_LANES_512 V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  FUSED_RNN_LANES_512 V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }    // a b + c
  FUSED_RNN_LANES_512 V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a b
  // min/max return their second operand when either is NaN.
  FUSED_RNN_LANES_512 V min(V a, V b) { return _mm512_min_ps(a, b); }
  FUSED_RNN_LANES_512 V max(V a, V b) { return _mm512_max_ps(a, b); }
  FUSED_RNN_LANES_512 V round_nearest(V x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // p 2^k for integral k in [-126, 127].
  FUSED_RNN_LANES_512 V times_pow2(V p, V k) { return _mm512_scalef_ps(p, k); }
  // 1 / d to about 1e-4 relative (14 bits).
  FUSED_RNN_LANES_512 V reciprocal_estimate(V d) { return _mm512_rcp14_ps(d); }
};

// 8 floats in a ymm register (AVX2 + FMA). Masked loads and stores are vmaskmovps, slow on
// AMD CPUs: full vectors go without masks.
struct Avx2Lanes {
  using V = __m256;
  static constexpr int kWidth = 8;
  FUSED_RNN_LANES_256 V zero() { return _mm256_setzero_ps(); }
  FUSED_RNN_LANES_256 V broadcast(float x) { return _mm256_set1_ps(x); }
  FUSED_RNN_LANES_256 V load(const float* p) { return _mm256_loadu_ps(p); }
  FUSED_RNN_LANES_256 void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  FUSED_RNN_LANES_256 __m256i first(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  FUSED_RNN_LANES_256 V load_first(const float* p, int n) {
    return n >= kWidth ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first(n));
  }
  FUSED_RNN_LANES_256 void store_first(float* p, V v, int n) {
    if (n >= kWidth) {
      _mm256_storeu_ps(p, v);
    } else {
      _mm256_maskstore_ps(p, first(n), v);
    }
  }
  FUSED_RNN_LANES_256 V add(V a, V b) { return _mm256_add_ps(a, b); }
  FUSED_RNN_LANES_256 V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  FUSED_RNN_LANES_256 V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  FUSED_RNN_LANES_256 V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  FUSED_RNN_LANES_256 V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  FUSED_RNN_LANES_256 V min(V a, V b) { return _mm256_min_ps(a, b); }
  FUSED_RNN_LANES_256 V max(V a, V b) { return _mm256_max_ps(a, b); }
  FUSED_RNN_LANES_256 V round_nearest(V x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p 2^k for integral k in [-126, 127]: 2^k built in the exponent bits.
  FUSED_RNN_LANES_256 V times_pow2(V p, V k) {
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
  }
  // 1 / d to about 3e-4 relative (12 bits).
  FUSED_RNN_LANES_256 V reciprocal_estimate(V d) { return _mm256_rcp_ps(d); }
};

#pragma GCC diagnostic pop

}  // namespace fused_rnn
