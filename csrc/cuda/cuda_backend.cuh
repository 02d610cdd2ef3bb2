#pragma once
// The CUDA primitives of sequence_loop.h: cuBLAS GEMMs through ATen's wrappers (current
// stream and handle, no dispatcher), one fused pointwise kernel per step, async copies.
// Half and bfloat16 are stored as such; the cell math runs in float (at::opmath_type).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDABlas.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>

#include "../cell_math.h"

namespace fused_rnn {

constexpr int kThreadsPerBlock = 256;

inline unsigned int blocks_for(int64_t elements) {
  const int64_t blocks = (elements + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535));
}

template <class Cell, typename T>
__global__ void forward_step_kernel(ForwardStep<T> s, int64_t rows, int64_t H) {
  using acc_t = at::opmath_type<T>;
  const int64_t n = rows * H;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / H;
    Cell::template forward<acc_t>(s, r, idx - r * H, H);
  }
}

template <class Cell, typename T>
__global__ void backward_step_kernel(BackwardStep<T> s, int64_t rows, int64_t H) {
  using acc_t = at::opmath_type<T>;
  const int64_t n = rows * H;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / H;
    Cell::template backward<acc_t>(s, r, idx - r * H, H);
  }
}

template <typename T>
__global__ void add_rows_kernel(T* dst, const T* a, int64_t a_ld, const T* b, int64_t b_ld, int64_t rows, int64_t cols) {
  using acc_t = at::opmath_type<T>;
  const int64_t n = rows * cols;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / cols, c = idx - r * cols;
    dst[idx] = static_cast<T>(static_cast<acc_t>(a[r * a_ld + c]) + static_cast<acc_t>(b[r * b_ld + c]));
  }
}

struct CudaBackend {
  struct Guard {
    explicit Guard(const at::Tensor& t) : guard(t.device()) {}
    c10::cuda::CUDAGuard guard;
  };

  template <class F>
  static void dispatch(at::ScalarType dtype, const char* name, F&& f) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "fused_rnn",
                                    [&] { f(static_cast<scalar_t*>(nullptr)); });
  }

  // Row-major C = op(A) op(B) + beta C is column-major C^T = op(B)^T op(A)^T.
  template <typename T>
  static void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
                   const T* B, int64_t ldb, int beta, T* C, int64_t ldc) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
      if (beta == 0) {
        C10_CUDA_CHECK(cudaMemset2DAsync(C, ldc * sizeof(T), 0, N * sizeof(T), M,
                                         at::cuda::getCurrentCUDAStream()));
      }
      return;
    }
    using opmath_t = at::opmath_type<T>;
    at::cuda::blas::gemm<T>(trans_b ? 't' : 'n', trans_a ? 't' : 'n', N, M, K, opmath_t(1), B, ldb, A, lda,
                            opmath_t(beta), C, ldc);
  }

  template <typename T>
  static void copy_rows(T* dst, int64_t dst_ld, const T* src, int64_t src_ld, int64_t rows, int64_t cols) {
    if (rows == 0 || cols == 0) return;
    C10_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_ld * sizeof(T), src, src_ld * sizeof(T), cols * sizeof(T), rows,
                                     cudaMemcpyDeviceToDevice, at::cuda::getCurrentCUDAStream()));
  }

  template <typename T>
  static void add_rows(T* dst, const T* a, int64_t a_ld, const T* b, int64_t b_ld, int64_t rows, int64_t cols) {
    if (rows * cols == 0) return;
    add_rows_kernel<T><<<blocks_for(rows * cols), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        dst, a, a_ld, b, b_ld, rows, cols);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <class Cell, typename T>
  static void forward_step(const ForwardStep<T>& s, int64_t rows, int64_t H) {
    forward_step_kernel<Cell, T><<<blocks_for(rows * H), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        s, rows, H);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <class Cell, typename T>
  static void backward_step(const BackwardStep<T>& s, int64_t rows, int64_t H) {
    backward_step_kernel<Cell, T><<<blocks_for(rows * H), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        s, rows, H);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace fused_rnn
