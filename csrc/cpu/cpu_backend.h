#pragma once
// The CPU primitives of sequence_loop.h. No GEMM in the time loop goes through the
// dispatcher: float32 on AVX-512 CPUs uses the packed-weight kernel of sgemm_avx512.h,
// everything else the BLAS that libtorch_cpu exports (MKL on x86 wheels).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstring>
#include <type_traits>

#include "../cell_math.h"
#include "sgemm_avx512.h"

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
constexpr int64_t kParallelGrain = 32768;

#define FUSED_RNN_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,fma")))

// One pointwise step over rows [r0, r1). `omp simd` states what the compiler cannot prove:
// the hidden units j of a row are independent (in-place updates touch only element j).
#define FUSED_RNN_ROWS_LOOP(METHOD)                                              \
  for (int64_t r = r0; r < r1; ++r) {                                            \
    _Pragma("omp simd") for (int64_t j = 0; j < H; ++j) Cell::template METHOD<T>(s, r, j, H); \
  }

template <class Cell, typename T, typename Step>
FUSED_RNN_TARGET_AVX512 void forward_rows_avx512(const Step& s, int64_t r0, int64_t r1, int64_t H) {
  FUSED_RNN_ROWS_LOOP(forward)
}
template <class Cell, typename T, typename Step>
void forward_rows_generic(const Step& s, int64_t r0, int64_t r1, int64_t H) {
  FUSED_RNN_ROWS_LOOP(forward)
}
template <class Cell, typename T, typename Step>
FUSED_RNN_TARGET_AVX512 void backward_rows_avx512(const Step& s, int64_t r0, int64_t r1, int64_t H) {
  FUSED_RNN_ROWS_LOOP(backward)
}
template <class Cell, typename T, typename Step>
void backward_rows_generic(const Step& s, int64_t r0, int64_t r1, int64_t H) {
  FUSED_RNN_ROWS_LOOP(backward)
}

// A weight matrix W (rows, cols), row-major, prepared once per op call as the right-hand
// GEMM operand op(W) = W^T (transpose) or W of every time step.
template <typename T>
struct CpuWeight {
  const T* data;
  int64_t rows, cols;
  bool transpose;
  avx512::PackedMatrix packed;  // used when packed.storage is defined
};

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
  static CpuWeight<T> prepare_weight(const T* w, int64_t rows, int64_t cols, bool transpose) {
    CpuWeight<T> weight{w, rows, cols, transpose, {}};
    if constexpr (std::is_same_v<T, float>) {
      if (avx512::available()) {
        weight.packed = transpose ? avx512::pack(w, 1, cols, cols, rows) : avx512::pack(w, cols, 1, rows, cols);
      }
    }
    return weight;
  }

  // C(M, N) = A(M, K) op(W) + beta C, or + bias (N,) in every row when beta is 0.
  template <typename T>
  static void gemm_weight(int64_t M, const T* A, int64_t lda, const CpuWeight<T>& w, int beta, T* C, int64_t ldc,
                          const T* bias = nullptr) {
    if constexpr (std::is_same_v<T, float>) {
      if (w.packed.storage.defined()) {
        avx512::gemm(M, {A, lda, 1}, w.packed, beta != 0, C, ldc, beta != 0 ? nullptr : bias);
        return;
      }
    }
    const int64_t N = w.transpose ? w.rows : w.cols, K = w.transpose ? w.cols : w.rows;
    if (bias && beta == 0) {
      for (int64_t r = 0; r < M; ++r) std::memcpy(C + r * ldc, bias, N * sizeof(T));
      beta = 1;
    }
    gemm<T>(false, w.transpose, M, N, K, A, lda, w.data, w.cols, beta, C, ldc);
  }

  // Whole-sequence product a @ b (once per op call; a may be a transposed view).
  static at::Tensor mm(const at::Tensor& a, const at::Tensor& b) {
    if (a.scalar_type() == at::kFloat && avx512::available() && (a.stride(0) == 1 || a.stride(1) == 1)) {
      at::Tensor c = at::empty({a.size(0), b.size(1)}, a.options());
      const avx512::PackedMatrix packed =
          avx512::pack(b.data_ptr<float>(), b.stride(0), b.stride(1), b.size(0), b.size(1));
      avx512::gemm(a.size(0), {a.data_ptr<float>(), a.stride(0), a.stride(1)}, packed, false, c.data_ptr<float>(),
                   c.size(1));
      return c;
    }
    return a.mm(b);
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

  // Runs rows(r0, r1) over all rows, split over threads only when the step is large.
  template <class Rows>
  static void for_rows(int64_t rows, int64_t H, Rows&& body) {
    if (rows * H < kParallelGrain || rows == 1) {
      body(0, rows);
      return;
    }
    at::parallel_for(0, rows, std::max<int64_t>(1, kParallelGrain / H), body);
  }

  template <class Cell, typename T>
  static void forward_step(const ForwardStep<T>& s, int64_t rows, int64_t H) {
    const bool wide = avx512::available();
    for_rows(rows, H, [&](int64_t r0, int64_t r1) {
      wide ? forward_rows_avx512<Cell, T>(s, r0, r1, H) : forward_rows_generic<Cell, T>(s, r0, r1, H);
    });
  }

  template <class Cell, typename T>
  static void backward_step(const BackwardStep<T>& s, int64_t rows, int64_t H) {
    const bool wide = avx512::available();
    for_rows(rows, H, [&](int64_t r0, int64_t r1) {
      wide ? backward_rows_avx512<Cell, T>(s, r0, r1, H) : backward_rows_generic<Cell, T>(s, r0, r1, H);
    });
  }
};

}  // namespace fused_rnn
