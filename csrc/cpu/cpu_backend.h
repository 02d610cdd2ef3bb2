#pragma once
// The CPU primitives of sequence_loop.h. GEMMs go straight to the BLAS that libtorch_cpu
// exports (MKL on x86 wheels) instead of at::mm: a dispatcher round trip per step costs
// more than the whole GEMM at small batch.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cstring>

#include "../cell_math.h"

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc);
}

namespace fused_rnn {

inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                      const float* alpha, const float* a, const int* lda, const float* b,
                      const int* ldb, const float* beta, float* c, const int* ldc) {
  sgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
inline void blas_gemm(const char* ta, const char* tb, const int* m, const int* n, const int* k,
                      const double* alpha, const double* a, const int* lda, const double* b,
                      const int* ldb, const double* beta, double* c, const int* ldc) {
  dgemm_(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Pointwise steps smaller than this run on one thread: a parallel region costs more.
constexpr int64_t kParallelGrain = 16384;

struct CpuBackend {
  struct Guard {
    explicit Guard(const at::Tensor&) {}
  };

  template <class F>
  static void dispatch(at::ScalarType dtype, const char* name, F&& f) {
    TORCH_CHECK_TYPE(dtype == at::kFloat || dtype == at::kDouble, name,
                     ": on the CPU input must be float32 or float64, got ", dtype);
    if (dtype == at::kFloat) {
      f(static_cast<float*>(nullptr));
    } else {
      f(static_cast<double*>(nullptr));
    }
  }

  // Row-major C = op(A) op(B) + beta C is column-major C^T = op(B)^T op(A)^T.
  template <typename T>
  static void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
                   const T* B, int64_t ldb, int beta, T* C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
      if (beta == 0) {
        for (int64_t r = 0; r < M; ++r) std::memset(C + r * ldc, 0, N * sizeof(T));
      }
      return;
    }
    const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
    const int ilda = static_cast<int>(lda), ildb = static_cast<int>(ldb), ildc = static_cast<int>(ldc);
    const T one = 1, b = static_cast<T>(beta);
    blas_gemm(trans_b ? "T" : "N", trans_a ? "T" : "N", &m, &n, &k, &one, B, &ildb, A, &ilda, &b, C, &ildc);
  }

  template <typename T>
  static void copy_rows(T* dst, int64_t dst_ld, const T* src, int64_t src_ld, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) std::memcpy(dst + r * dst_ld, src + r * src_ld, cols * sizeof(T));
  }

  template <typename T>
  static void add_rows(T* dst, const T* a, int64_t a_ld, const T* b, int64_t b_ld, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) dst[r * cols + j] = a[r * a_ld + j] + b[r * b_ld + j];
    }
  }

  // Runs body(r) for every row, split over threads only when the step is large.
  template <class Body>
  static void for_rows(int64_t rows, int64_t H, Body&& body) {
    if (rows * H < kParallelGrain || rows == 1) {
      for (int64_t r = 0; r < rows; ++r) body(r);
      return;
    }
    const int64_t grain = std::max<int64_t>(1, kParallelGrain / H);
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) body(r);
    });
  }

  template <class Cell, typename T>
  static void forward_step(const ForwardStep<T>& s, int64_t rows, int64_t H) {
    for_rows(rows, H, [&](int64_t r) {
      for (int64_t j = 0; j < H; ++j) Cell::template forward<T>(s, r, j, H);
    });
  }

  template <class Cell, typename T>
  static void backward_step(const BackwardStep<T>& s, int64_t rows, int64_t H) {
    for_rows(rows, H, [&](int64_t r) {
      for (int64_t j = 0; j < H; ++j) Cell::template backward<T>(s, r, j, H);
    });
  }
};

}  // namespace fused_rnn
