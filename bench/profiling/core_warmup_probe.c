// Kernels for core_warmup_probe.py: each runs `segments` consecutive segments of n
// iterations and writes each segment's ns per iteration to out[], so that the driver sees
// how the speed of one kind of work moves during the first milliseconds after whatever ran
// before it. Built as a shared library and called through ctypes.
#include <immintrin.h>
#include <stdlib.h>
#include <time.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

#define TIMED_SEGMENTS(body)                          \
  for (int s = 0; s < segments; ++s) {                \
    const double start = now_ns();                    \
    for (long i = 0; i < n; ++i) {                    \
      body;                                           \
    }                                                 \
    out[s] = (now_ns() - start) / n;                  \
  }

// The empty asm keeps the vectors in registers and the loop from being folded away.
#define KEEP(v) __asm__ volatile("" : "+x"(v))

// One dependent chain of FMAs: the FMA latency, so the core's clock (4 cycles a link).
__attribute__((target("avx2,fma"))) void fma_latency(long n, int segments, double* out) {
  __m256 x = _mm256_set1_ps(1.0f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  TIMED_SEGMENTS(x = _mm256_fmadd_ps(x, a, b); KEEP(x))
}

// Eight independent chains: the FMA throughput (two FMA pipes: 4 cycles an iteration).
__attribute__((target("avx2,fma"))) void fma_throughput(long n, int segments, double* out) {
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  __m256 x0 = _mm256_set1_ps(1.0f), x1 = x0, x2 = x0, x3 = x0, x4 = x0, x5 = x0, x6 = x0, x7 = x0;
  TIMED_SEGMENTS(x0 = _mm256_fmadd_ps(x0, a, b); x1 = _mm256_fmadd_ps(x1, a, b); x2 = _mm256_fmadd_ps(x2, a, b);
                 x3 = _mm256_fmadd_ps(x3, a, b); x4 = _mm256_fmadd_ps(x4, a, b); x5 = _mm256_fmadd_ps(x5, a, b);
                 x6 = _mm256_fmadd_ps(x6, a, b); x7 = _mm256_fmadd_ps(x7, a, b);
                 KEEP(x0); KEEP(x1); KEEP(x2); KEEP(x3); KEEP(x4); KEEP(x5); KEEP(x6); KEEP(x7))
}

// A sum over a buffer of `floats` floats, one pass an iteration: L1 (16 KB) or L2 (256 KB)
// bandwidth, the buffer staying in that cache between passes.
__attribute__((target("avx2"))) static void sum_passes(const float* p, long floats, long n, int segments,
                                                       double* out) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  TIMED_SEGMENTS(for (long j = 0; j < floats; j += 32) {
    s0 = _mm256_add_ps(s0, _mm256_load_ps(p + j));
    s1 = _mm256_add_ps(s1, _mm256_load_ps(p + j + 8));
    s2 = _mm256_add_ps(s2, _mm256_load_ps(p + j + 16));
    s3 = _mm256_add_ps(s3, _mm256_load_ps(p + j + 24));
  } KEEP(s0); KEEP(s1); KEEP(s2); KEEP(s3))
}

static const float* ones(long floats) {
  float* p = aligned_alloc(64, floats * sizeof(float));
  for (long i = 0; i < floats; ++i) p[i] = 1.0f;
  return p;
}

void l1_sum(long n, int segments, double* out) {
  static const float* buffer;
  if (!buffer) buffer = ones(4096);
  sum_passes(buffer, 4096, n, segments, out);
}

void l2_sum(long n, int segments, double* out) {
  static const float* buffer;
  if (!buffer) buffer = ones(65536);
  sum_passes(buffer, 65536, n, segments, out);
}
