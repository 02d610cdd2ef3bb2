#pragma once
// The CUDA primitives of sequence_loop.h: cuBLAS GEMMs on torch's handle and current
// stream (no dispatcher), one fused pointwise kernel per step, async copies.
// Half and bfloat16 are stored as such; the cell math runs in float (at::opmath_type).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <cublas_v2.h>
#include <dlfcn.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime.h>

#include "../cell_math.h"
#include "../gemm_edge_cases.h"
#include "../weight_use.h"
#include "persistent_forward.cuh"

namespace fused_rnn {

constexpr int kThreadsPerBlock = 256;

inline unsigned int blocks_for(int64_t elements) {
  const int64_t blocks = (elements + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535));
}

// One pointwise step (the cell's forward, or its backward): one thread per (row, unit).
template <bool kForward, class Cell, typename T, typename Step>
__global__ void step_kernel(Step s, int64_t rows, int64_t H) {
  using acc_t = at::opmath_type<T>;
  const int64_t n = rows * H;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / H;
    if constexpr (kForward) {
      Cell::template forward<acc_t>(s, r, idx - r * H, H);
    } else {
      Cell::template backward<acc_t>(s, r, idx - r * H, H);
    }
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

// Writes `row` (cols,) into every row of dst: the bias under a GEMM that accumulates.
template <typename T>
__global__ void broadcast_rows_kernel(T* dst, int64_t dst_ld, const T* row, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = idx / cols;
    dst[r * dst_ld + (idx - r * cols)] = row[idx - r * cols];
  }
}

#define FUSED_RNN_STR2(x) #x
#define FUSED_RNN_STR(x) FUSED_RNN_STR2(x)

// cublasGemmEx, looked up in the libcublas that torch has already loaded. torch's own GEMM
// wrappers are not exported from libtorch_cuda, and linking libcublas ourselves would tie
// the build to where a given install keeps it (toolkit lib64 or pip's nvidia/ folder).
using CublasGemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                        const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                                        int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                                        cublasGemmAlgo_t);

inline CublasGemmEx cublas_gemm_ex() {
  static const CublasGemmEx fn = [] {
    void* symbol = dlsym(RTLD_DEFAULT, "cublasGemmEx");
    for (const char* lib : {"libcublas.so." FUSED_RNN_STR(CUBLAS_VER_MAJOR), "libcublas.so"}) {
      if (symbol) break;
      void* handle = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD);
      if (!handle) handle = dlopen(lib, RTLD_LAZY | RTLD_LOCAL);
      if (handle) symbol = dlsym(handle, "cublasGemmEx");
    }
    TORCH_CHECK(symbol, "fused_rnn: cublasGemmEx was not found (libcublas.so." FUSED_RNN_STR(CUBLAS_VER_MAJOR)
                        " is not loadable); torch's CUDA libraries should provide it");
    return reinterpret_cast<CublasGemmEx>(symbol);
  }();
  return fn;
}

template <typename T>
struct CublasTypes;
template <>
struct CublasTypes<float> {
  static constexpr cudaDataType data = CUDA_R_32F;
  static cublasComputeType_t compute() {
    // Follow the flag that torch.nn's cuDNN RNNs obey (torch.backends.cudnn.allow_tf32, or
    // torch.backends.cudnn.rnn.fp32_precision), so that a drop-in replacement computes at
    // the precision the user already gets from torch.nn.
    return at::globalContext().allowTF32CuDNN(at::Float32Op::RNN) ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                   : CUBLAS_COMPUTE_32F;
  }
};
template <>
struct CublasTypes<double> {
  static constexpr cudaDataType data = CUDA_R_64F;
  static cublasComputeType_t compute() { return CUBLAS_COMPUTE_64F; }
};
template <>
struct CublasTypes<at::Half> {
  static constexpr cudaDataType data = CUDA_R_16F;
  static cublasComputeType_t compute() { return CUBLAS_COMPUTE_32F; }
};
template <>
struct CublasTypes<at::BFloat16> {
  static constexpr cudaDataType data = CUDA_R_16BF;
  static cublasComputeType_t compute() { return CUBLAS_COMPUTE_32F; }
};

// A matrix as gemm() takes it: row-major storage (ld = its row stride), or the transpose of
// row-major storage (a .t() view, as the weight-gradient products pass). Anything else is
// copied to row-major first.
struct RowMajorOperand {
  at::Tensor data;
  int64_t ld;
  bool transposed;

  static RowMajorOperand of(const at::Tensor& m) {
    if (m.is_contiguous()) return {m, std::max<int64_t>(m.size(1), 1), false};
    if (m.t().is_contiguous()) return {m, std::max<int64_t>(m.size(0), 1), true};
    return of(m.contiguous());
  }
};

struct CudaBackend {
  struct Guard {
    explicit Guard(const at::Tensor& t) : guard(t.device()) {}
    c10::cuda::CUDAGuard guard;
  };

  // Inference too runs the whole input projection in one GEMM (sequence_loop.h): chunks
  // would split the persistent kernel's single launch into one per chunk, and the caching
  // allocator reuses the buffer without page faults.
  static constexpr int64_t kProjectionChunkBytes = INT64_MAX;

  // The caching allocator already reuses freed blocks.
  static at::Tensor scratch(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return at::empty(sizes, options);
  }

  template <class F>
  static void dispatch(at::ScalarType dtype, const char* name, F&& f) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "fused_rnn",
                                    [&] { f(static_cast<scalar_t*>(nullptr)); });
  }

  // Row-major C = op(A) op(B) + beta C is column-major C^T = op(B)^T op(A)^T.
  template <typename T>
  static void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
                   const T* B, int64_t ldb, int beta, T* C, int64_t ldc) {
    const bool handled = handled_without_blas(M, N, K, beta, [&] {
      C10_CUDA_CHECK(cudaMemset2DAsync(C, ldc * sizeof(T), 0, N * sizeof(T), M, at::cuda::getCurrentCUDAStream()));
    });
    if (handled) return;
    // Scale factors have the compute type: double for double, float otherwise.
    using scale_t = std::conditional_t<std::is_same_v<T, double>, double, float>;
    const scale_t one = 1, beta_s = static_cast<scale_t>(beta);
    const cudaDataType type = CublasTypes<T>::data;
    const cublasStatus_t status = cublas_gemm_ex()(
        at::cuda::getCurrentCUDABlasHandle(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
        static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), &one, B, type, static_cast<int>(ldb), A, type,
        static_cast<int>(lda), &beta_s, C, type, static_cast<int>(ldc), CublasTypes<T>::compute(), CUBLAS_GEMM_DEFAULT);
    // Integers as text, not streamed: checks.h says why.
    TORCH_CHECK(status == CUBLAS_STATUS_SUCCESS, "fused_rnn: cublasGemmEx failed with status ",
                std::to_string(static_cast<int>(status)), " for M=", std::to_string(M), " N=", std::to_string(N),
                " K=", std::to_string(K));
  }

  // On the GPU a prepared weight is just the matrix: cuBLAS reads it in place.
  template <typename T>
  struct Weight {
    const T* data;
    int64_t rows, cols;
    bool transpose;
  };

  template <typename T>
  static Weight<T> prepare_weight(const T* w, int64_t rows, int64_t cols, bool transpose, const WeightUse&) {
    return {w, rows, cols, transpose};
  }

  // C(M, N) = A(M, K) op(W) + beta C, or + bias (N,) in every row when beta is 0.
  template <typename T>
  static void gemm_weight(int64_t M, const T* A, int64_t lda, const Weight<T>& w, int beta, T* C, int64_t ldc,
                          const T* bias = nullptr) {
    const int64_t N = w.transpose ? w.rows : w.cols, K = w.transpose ? w.cols : w.rows;
    if (bias && beta == 0 && M * N > 0) {
      broadcast_rows_kernel<T><<<blocks_for(M * N), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
          C, ldc, bias, M, N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      beta = 1;
    }
    gemm<T>(false, w.transpose, M, N, K, A, lda, w.data, w.cols, beta, C, ldc);
  }

  // A whole-sequence product through the same cuBLAS call (and so the same float32
  // precision rule) as the per-step GEMMs; torch.mm would follow the matmul flag instead.
  static at::Tensor mm(const at::Tensor& a, const at::Tensor& b) {
    const RowMajorOperand lhs = RowMajorOperand::of(a), rhs = RowMajorOperand::of(b);
    at::Tensor c = at::empty({a.size(0), b.size(1)}, a.options());
    dispatch(a.scalar_type(), "mm", [&](auto* tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      gemm<T>(lhs.transposed, rhs.transposed, a.size(0), b.size(1), a.size(1), lhs.data.template data_ptr<T>(),
              lhs.ld, rhs.data.template data_ptr<T>(), rhs.ld, 0, c.template data_ptr<T>(), b.size(1));
    });
    return c;
  }

  // c += a @ b.
  static void mm_add(at::Tensor& c, const at::Tensor& a, const at::Tensor& b) { c.addmm_(a, b); }

  template <typename T>
  static Weight<T> prepare_recurrent_weight(const T* w_hh, int64_t G, int64_t H, int64_t P, const WeightUse& use) {
    return prepare_weight<T>(w_hh, G * H, P, true, use);
  }

  // Small batches: the whole forward loop in one persistent launch (persistent_forward.cuh).
  // Elsewhere false, and sequence_loop.h runs its per-step loop of cuBLAS + pointwise kernel.
  // w_ih: never given (projects_in_loop is false here).
  template <class Cell, typename T, class StepAt>
  static bool run_recurrent_loop(int64_t steps, const Weight<T>& w_hh, T* h_state, int64_t H, int64_t P, int64_t N,
                                 bool projected, StepAt&& step_at, const Weight<T>* w_ih = nullptr,
                                 const T* = nullptr) {
    TORCH_INTERNAL_ASSERT(!w_ih, "run_recurrent_loop: the CUDA loops do not project their input");
    return persistent::run_forward<Cell, T>(steps, w_hh.data, h_state, H, P, N, projected, step_at);
  }

  // The input projection is one GEMM before the loop (sequence_loop.h).
  template <typename T>
  static bool projects_in_loop(int64_t, int64_t, const Weight<T>&, const Weight<T>&, int64_t, int64_t, bool) {
    return false;
  }

  template <class Cell, typename T, class StepAt, class Sums>
  static bool run_recurrent_backward_loop(int64_t, const Weight<T>&, T*, int64_t, int64_t, int64_t, bool,
                                          StepAt&&, Sums*) {
    return false;
  }

  // One time step: target(b, G*H) (+)= h_prev W_hh^T, then the cell's pointwise kernel.
  template <class Cell, typename T>
  static void recurrent_step(int64_t b, const T* h_prev, int64_t P, const Weight<T>& w, T* target, int64_t target_ld,
                             bool accumulate, const ForwardStep<T>& step, int64_t H) {
    gemm_weight<T>(b, h_prev, P, w, accumulate ? 1 : 0, target, target_ld);
    forward_step<Cell, T>(step, b, H);
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
    step_kernel<true, Cell, T><<<blocks_for(rows * H), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        s, rows, H);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  template <class Cell, typename T>
  static void backward_step(const BackwardStep<T>& s, int64_t rows, int64_t H) {
    step_kernel<false, Cell, T><<<blocks_for(rows * H), kThreadsPerBlock, 0, at::cuda::getCurrentCUDAStream()>>>(
        s, rows, H);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
};

}  // namespace fused_rnn
