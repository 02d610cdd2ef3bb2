#pragma once
// The CPU primitives of sequence_loop.h. No GEMM in the time loop goes through the
// dispatcher: float32 on AVX-512 and AVX2 CPUs uses the packed-weight kernel of sgemm.h
// (except single steps of few rows, worth_packing), everything else the BLAS that
// libtorch_cpu exports (MKL on x86 wheels).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../cell_math.h"
#include "../gemm_edge_cases.h"
#include "buffer_pool.h"
#include "cpu_isa.h"
#include "cell_pointwise.h"
#include "sequence_products.h"
#include "sgemm.h"
#include "step_barrier.h"
#include "../weight_use.h"

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

// One pointwise step (the cell's forward, or its backward) over rows [r0, r1) and hidden
// units [j0, j1), compiled three times: for AVX-512 and for AVX2 (chosen at run time,
// cpu_isa.h) and for the baseline ISA. `omp simd` states what the compiler cannot prove:
// the units j of a row are independent (in-place updates touch only element j). The AVX2
// copy matters more than its name suggests: for the baseline ISA (SSE2) the exp's
// rounding is a call to floorf per element, and an LSTM (200, 16, 64, 64) forward spent
// three quarters of its time in that loop on an AVX2 CPU (perf).
#define FUSED_RNN_ROWS_LOOP                                                                  \
  for (int64_t r = r0; r < r1; ++r) {                                                        \
    _Pragma("omp simd") for (int64_t j = j0; j < j1; ++j) {                                  \
      if constexpr (kForward) Cell::template forward<T>(s, r, j, H);                         \
      else Cell::template backward<T>(s, r, j, H);                                           \
    }                                                                                        \
  }

template <bool kForward, class Cell, typename T, typename Step>
FUSED_RNN_AVX512 void rows_avx512(const Step& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t H) {
  FUSED_RNN_ROWS_LOOP
}
template <bool kForward, class Cell, typename T, typename Step>
FUSED_RNN_AVX2 void rows_avx2(const Step& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t H) {
  FUSED_RNN_ROWS_LOOP
}
template <bool kForward, class Cell, typename T, typename Step>
void rows_generic(const Step& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t H) {
  FUSED_RNN_ROWS_LOOP
}

template <bool kForward, class Cell, typename T, typename Step>
void pointwise_rows(const Step& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t H) {
  constexpr bool kIntrinsics = kForward && kHasForwardIntrinsics<Cell> && std::is_same_v<T, float>;
  switch (cpu_isa()) {
    case CpuIsa::kAvx512:
      if constexpr (kIntrinsics) return forward_rows_avx512<Cell>(s, r0, r1, j0, j1, H);
      return rows_avx512<kForward, Cell, T>(s, r0, r1, j0, j1, H);
    case CpuIsa::kAvx2:
      if constexpr (kIntrinsics) return forward_rows_avx2<Cell>(s, r0, r1, j0, j1, H);
      return rows_avx2<kForward, Cell, T>(s, r0, r1, j0, j1, H);
    default:
      return rows_generic<kForward, Cell, T>(s, r0, r1, j0, j1, H);
  }
}


// The forward pointwise step of panel p's hidden units for rows [m0, m1) (plus
// row_offset), as sgemm::gemm_panels' panel_done: it runs as soon as every gate of those
// units is computed, so it reads them back from L1 instead of L2.
template <class Cell, typename T>
auto pointwise_after_panel(const ForwardStep<T>& step, int64_t row_offset, int64_t H) {
  return [&step, row_offset, H](int64_t m0, int64_t m1, int64_t p) {
    pointwise_rows<true, Cell, T>(step, row_offset + m0, row_offset + m1, p * sgemm::kPanel,
                                  std::min(H, (p + 1) * sgemm::kPanel), H);
  };
}

// A weight matrix W (rows, cols), row-major, prepared once per op call as the right-hand
// GEMM operand op(W) = W^T (transpose) or W of every time step.
template <typename T>
struct CpuWeight {
  const T* data;
  int64_t rows, cols;
  bool transpose;
  sgemm::PackedMatrix packed;  // used when packed.storage is defined
};

// Hidden units [j0, j1) owned by one thread: 32-column panels [u0, u1); and the step
// barrier the threads meet at (every thread must call meet() equally often).
struct UnitRange {
  int64_t u0, u1, j0, j1;
  StepBarrier* barrier;
  int64_t thread, threads;

  void meet() const { barrier->wait(thread, threads); }
};

// A time loop split by hidden units meets at a barrier every step (an omp barrier cost
// about 0.2 us alone, 0.5 us with the state's cache lines moving between the cores;
// StepBarrier ~0.1 us less), so the split pays only from this many flops per step. The
// first measurement, with the omp barrier, had put the limit at 131K; with StepBarrier
// it pays from about 24K (2 threads, T = 200, N = 1, per step, A/B 3 rounds
// [step_cost]): forward LSTM H = 64 (33K flops) 0.64-0.66 -> 0.38-0.41 us, GRU H = 64
// (25K) 0.53-0.54 -> 0.35-0.36, RNN H = 128 (33K) 0.51-0.53 -> 0.33-0.36, GRU H = 128
// (98K) 1.92-2.05 -> 1.03-1.06; with the backward split too, forward+backward LSTM H =
// 64 1.20-1.26 -> 0.89-0.95, GRU H = 128 3.25-3.36 -> 2.45-2.51; RNN H = 96 (18K)
// forward is slower split, 0.24 -> 0.27. In this VM's slow periods a split step costs
// about 0.6 us more (LSTM H = 64 forward 0.95 us, unsplit 0.65-0.73), and torch.nn's
// oneDNN loop slows down as much (bench/README.md, item 36).
constexpr int64_t kUnitSplitMinStepFlops = 24 * 1024;

// Runs body(UnitRange) on every thread of ONE parallel region, the H hidden units split
// over the threads by whole panels (body meets the other threads with UnitRange::meet).
// Returns false, running nothing, where a region does not pay: fewer than two panels or
// threads, too few flops per step, already inside a parallel region, or more threads than
// usable CPUs (then the barrier waits for time slices; capping the region's threads
// instead left it mixing team sizes with ATen's regions, and slower still).
template <class Body>
bool in_one_region_by_units(int64_t H, int64_t step_flops, Body&& body) {
  const int64_t unit_panels = (H + sgemm::kPanel - 1) / sgemm::kPanel;
  const int64_t requested = at::get_num_threads();
  const int64_t threads = std::min<int64_t>(requested, unit_panels);
  if (threads < 2 || at::in_parallel_region() || step_flops < kUnitSplitMinStepFlops || requested > usable_cpus()) {
    return false;
  }
  StepBarrier barrier(threads);
#pragma omp parallel num_threads(threads)
  {
    const int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t u0 = unit_panels * id / n, u1 = unit_panels * (id + 1) / n;
    body(UnitRange{u0, u1, std::min(H, u0 * sgemm::kPanel), std::min(H, u1 * sgemm::kPanel), &barrier, id, n});
  }
  return true;
}

// Batch rows [r0, r1) owned by one thread.
struct RowRange {
  int64_t r0, r1;
};

// The rows of a batch never depend on each other, so where W_hh is small enough, the
// threads split the batch instead of the hidden units and run the whole time loop without
// ever waiting for each other (no barrier per step). Each thread then reads all of W_hh
// every step, from L3 once it outgrows the core's L2 (1 MB on Zen 5), where the unit split
// keeps each thread's share of W_hh in its L2 and pays a barrier per step, plus reading
// the state the other threads wrote: h (N x P) in the forward, the step's gate gradients
// (N x G H, G times more) in the backward. So the backward splits rows up to a W_hh of
// 1 MB and the forward only up to 512 KB. At W_hh = 1 MB (LSTM (100, 64, 256, 256)) the
// backward by rows was 5% faster (bench/README.md item 19); the forward by units 1-2%
// faster, and it kept its ratio to oneDNN in the VM's slow periods where the row split
// fell to 0.97x (item 39).
constexpr int64_t kRowSplitMinRows = 4;                         // rows per thread, at least
constexpr int64_t kRowSplitMaxWeightBytesForward = 1 << 19;     // W_hh bytes, at most
constexpr int64_t kRowSplitMaxWeightBytesBackward = 1 << 20;

// The threads a split by rows (in_one_region_by_rows) would use, or 0 where it does not
// apply; whether it pays is worth_threads(row-steps * flops per row-step).
inline int64_t row_split_threads(int64_t rows, int64_t weight_bytes, int64_t max_weight_bytes) {
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), rows / kRowSplitMinRows);
  return threads < 2 || weight_bytes > max_weight_bytes || at::in_parallel_region() ? 0 : threads;
}

// Asks for the `count` contiguous values at p to be brought into L1. The in-loop projection
// reads each step's input rows once, fresh from L3 or memory, and the hardware prefetcher
// does not run ahead across steps, so the loop asks for the next step's rows a step ahead.
// [ab_in_process, `--cell lstm gru --shapes 200,16,64 50,16,128 --mode forward --rounds
// 30`] LSTM (200, 16, 64, 64) B/A 0.958 (25 of 30 rounds), GRU 0.972 (24 of 30).
template <typename T>
inline void prefetch_rows(const T* p, int64_t count) {
  const char* const end = reinterpret_cast<const char*>(p + count);
  for (const char* line = reinterpret_cast<const char*>(p); line < end; line += 64) __builtin_prefetch(line, 0, 3);
}

// Runs body(RowRange) on every thread of ONE parallel region, contiguous batch rows per
// thread, split so that each thread gets about the same number of active row-steps (rows
// of packed sequences end at different steps; step_at(s).rows are step s's active rows).
// Returns false, running nothing, where the split does not apply or pay (weight_bytes of
// W_hh above max_weight_bytes among them).
template <class StepAt, class Body>
bool in_one_region_by_rows(int64_t steps, int64_t rows, StepAt&& step_at, int64_t weight_bytes,
                           int64_t max_weight_bytes, int64_t flops_per_row_step, Body&& body) {
  const int64_t threads = row_split_threads(rows, weight_bytes, max_weight_bytes);
  if (threads == 0) return false;
  std::vector<int64_t> active(rows, 0);  // steps at which each row is active
  int64_t total = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t b = step_at(s).rows;
    for (int64_t r = 0; r < b; ++r) ++active[r];
    total += b;
  }
  if (!sgemm::worth_threads(total * flops_per_row_step)) return false;
#pragma omp parallel num_threads(threads)
  {
    // Row r goes to thread floor(n * (row-steps before r) / total): contiguous ranges.
    const int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
    int64_t r0 = rows, r1 = rows, before = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t owner = std::min(n - 1, before * n / total);
      if (owner >= id && r0 == rows) r0 = r;
      if (owner > id) {
        r1 = r;
        break;
      }
      before += active[r];
    }
    body(RowRange{r0, std::max(r0, r1)});
  }
  return true;
}

// W_hh for the recurrent step. With the packed GEMM (float32 on AVX-512 or AVX2), one
// packed (P, H) matrix per gate, so that a thread owning hidden units [j0, j1) computes
// all G gates of those units and runs their pointwise step itself: GEMM and pointwise
// share one parallel region.
template <typename T>
struct CpuRecurrentWeight {
  CpuWeight<T> whole;                          // used when per_gate is empty
  std::vector<sgemm::PackedMatrix> per_gate;  // gate g: rows [g H, (g+1) H) of W_hh, transposed
};

struct CpuBackend {
  struct Guard {
    explicit Guard(const at::Tensor&) {}
  };

  // Inference: input projection per chunk of steps (sequence_loop.h), small enough to stay
  // in the L3 cache (32 MB, shared) until its steps read it.
  static constexpr int64_t kProjectionChunkBytes = int64_t(4) << 20;

  // Temporaries of the sequence loops come from the buffer pool: allocated and freed by
  // glibc on every call, the backward's gate gradients (26 MB at LSTM (100, 64, 256, 256))
  // were page-faulted in anew: 5855 minor faults per forward+backward there before, none
  // after (bench/profiling/page_faults.py; buffer_pool.h).
  static at::Tensor scratch(at::IntArrayRef sizes, const at::TensorOptions& options) {
    return pooled_buffer(sizes, options.dtype().toScalarType());
  }

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
    const bool handled = handled_without_blas(M, N, K, beta, [&] {
      for (int64_t r = 0; r < M; ++r) std::memset(C + r * ldc, 0, N * sizeof(T));
    });
    if (handled) return;
    const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
    const int ilda = static_cast<int>(lda), ildb = static_cast<int>(ldb), ildc = static_cast<int>(ldc);
    const T one = 1, b = static_cast<T>(beta);
    blas_gemm(trans_b ? "T" : "N", trans_a ? "T" : "N", &m, &n, &k, &one, B, &ildb, A, &ilda, &b, C, &ildc);
  }

  // Packing a weight for sgemm.h reads and writes all of it once per call, which pays only
  // where the call multiplies it with enough rows. A single step of fewer than 64 rows (the
  // cells, one-step sequences) multiplies each weight once, and the BLAS product without
  // our packing was faster there. [bench/profiling/ab_in_process.py with a temporary
  // switch, packing vs never packing, 12 rounds, Zen 3, LSTM / GRU forward] T = 1: N = 1,
  // H = 128 B/A 0.73 / 0.72; N = 16, H = 128 0.94 / 0.94; N = 32, H = 512 0.87 / 0.82;
  // N = 64, H = 128 1.02 / 0.95; N = 64, H = 512 0.94 / 0.90; but N = 64, H = 256 1.09 /
  // 1.08 and N = 96, H = 256 1.09 / 1.04; fwd+bwd N = 1 and 16, H = 128 0.80-0.87. Over
  // two steps and more the packed weights already won at (2, 16, 512) (1.19 / 1.21) and
  // (16, 1, 128) (1.16 / 1.08). Inference and training take the same decision from the
  // same shapes, so a forward still rounds alike in either (test_inference_workspace.py).
  static constexpr int64_t kPackMinRowsOfOneStep = 64;

  static bool worth_packing(const WeightUse& use) { return use.steps > 1 || use.rows >= kPackMinRowsOfOneStep; }

  template <typename T>
  static CpuWeight<T> prepare_weight(const T* w, int64_t rows, int64_t cols, bool transpose, const WeightUse& use) {
    CpuWeight<T> weight{w, rows, cols, transpose, {}};
    if constexpr (std::is_same_v<T, float>) {
      if (sgemm::available() && worth_packing(use)) {
        weight.packed = transpose ? sgemm::pack(w, 1, cols, cols, rows) : sgemm::pack(w, cols, 1, rows, cols);
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
        sgemm::gemm(M, {A, lda, 1}, w.packed, beta != 0, C, ldc, beta != 0 ? nullptr : bias);
        return;
      }
    }
    const int64_t N = w.transpose ? w.rows : w.cols, K = w.transpose ? w.cols : w.rows;
    if (bias && beta == 0 && N > 0) {
      for (int64_t r = 0; r < M; ++r) std::memcpy(C + r * ldc, bias, N * sizeof(T));
      beta = 1;
    }
    gemm<T>(false, w.transpose, M, N, K, A, lda, w.data, w.cols, beta, C, ldc);
  }

  template <typename T>
  static CpuRecurrentWeight<T> prepare_recurrent_weight(const T* w_hh, int64_t G, int64_t H, int64_t P,
                                                        const WeightUse& use) {
    CpuRecurrentWeight<T> weight;
    if constexpr (std::is_same_v<T, float>) {
      if (sgemm::available() && worth_packing(use)) {
        weight.whole = CpuWeight<T>{w_hh, G * H, P, true, {}};
        if (H % sgemm::kPanel == 0) {
          // Each gate's panels are whole panels of W_hh^T: pack it once (one parallel region,
          // not one per gate) and view each gate's panels.
          const sgemm::PackedMatrix all = sgemm::pack(w_hh, 1, P, P, G * H);
          for (int64_t g = 0; g < G; ++g) weight.per_gate.push_back(sgemm::columns(all, g * H, H));
        } else {
          for (int64_t g = 0; g < G; ++g) weight.per_gate.push_back(sgemm::pack(w_hh + g * H * P, 1, P, P, H));
        }
        return weight;
      }
    }
    weight.whole = prepare_weight<T>(w_hh, G * H, P, true, use);
    return weight;
  }

  // One time step: target(b, G*H) (+)= h_prev W_hh^T (accumulate: onto the input
  // projection already there), then the cell's pointwise step for every row and unit.
  template <class Cell, typename T>
  static void recurrent_step(int64_t b, const T* h_prev, int64_t P, const CpuRecurrentWeight<T>& w, T* target,
                             int64_t target_ld, bool accumulate, const ForwardStep<T>& step, int64_t H) {
    if constexpr (std::is_same_v<T, float>) {
      if (!w.per_gate.empty()) {
        const int64_t G = static_cast<int64_t>(w.per_gate.size());
        const int64_t unit_panels = (H + sgemm::kPanel - 1) / sgemm::kPanel;
        auto units = [&](int64_t u0, int64_t u1) {
          sgemm::gemm_panels(b, b, {h_prev, P, 1}, w.per_gate.data(), G, H, u0, u1, accumulate, target, target_ld,
                              pointwise_after_panel<Cell, T>(step, 0, H));
        };
        if (unit_panels > 1 && sgemm::worth_threads(2 * b * G * H * P)) {
          at::parallel_for(0, unit_panels, 1, units);
        } else {
          units(0, unit_panels);
        }
        return;
      }
    }
    gemm_weight<T>(b, h_prev, P, w.whole, accumulate ? 1 : 0, target, target_ld);
    forward_step<Cell, T>(step, b, H);
  }

  // Whether run_recurrent_loop, given w_ih, projects each step's input itself, for
  // inference (layer_forward asks only then): where it splits the batch rows over threads
  // and W_ih and W_hh together fit a core's L2 next to a step's rows. Each thread then
  // writes its rows' pre-activations x_t W_ih^T + b just before the recurrent product adds
  // to them (the same products and rounding as the whole-sequence GEMM), so they stay in
  // its L1 instead of going out to L3 for a 4 MB chunk of steps and coming back, and the
  // workspace is one step's rows. [bench/profiling/ab_in_process.py with a temporary
  // switch here, 20 rounds, Zen 3, forward] LSTM (200, 16, 64, 64) 4.14 -> 3.87 ms (faster
  // in 19 of 20 rounds), GRU (200, 16, 64, 64) 2.98 -> 2.66 (20 of 20), GRU (100, 16, 128,
  // 128) 5.36 -> 5.00 (18);
  // but LSTM (100, 16, 128, 128), whose packed weights are 512 KB, 5.88 -> 6.11 (5 of 20):
  // every step then streams them from L3 where the chunk's GEMM reused them. Training keeps
  // the whole workspace anyway, and there the whole-sequence GEMM was 2-6% faster.
  static constexpr int64_t kInLoopProjectionMaxWeightBytes = int64_t(448) << 10;

  template <typename T>
  static bool projects_in_loop(int64_t row_steps, int64_t N, const CpuWeight<T>& w_ih,
                               const CpuRecurrentWeight<T>& w_hh, int64_t H, int64_t P, bool projected) {
    const int64_t G = static_cast<int64_t>(w_hh.per_gate.size());
    if (G == 0 || projected || !w_ih.packed.storage.defined()) return false;
    const int64_t weight_bytes = (w_ih.rows * w_ih.cols + G * H * P) * static_cast<int64_t>(sizeof(T));
    if (weight_bytes > kInLoopProjectionMaxWeightBytes) return false;
    return row_split_threads(N, G * H * P * sizeof(T), kRowSplitMaxWeightBytesForward) > 0 &&
           sgemm::worth_threads(row_steps * 2 * G * H * P);
  }

  // The whole forward time loop in ONE parallel region, instead of one region per step.
  // Where in_one_region_by_rows applies, each thread runs every step for its own batch rows
  // and the threads never meet; given w_ih (projects_in_loop), each also projects its rows
  // of the step's input (spec.input) into the workspace first, bias included. Otherwise
  // each thread owns a range of hidden units for every step (its GEMM columns and its
  // pointwise units) and the threads meet at one barrier per step. The state is double
  // buffered: step s reads states[s % 2] (every unit, in the GEMM) while each thread writes
  // its own units of states[(s + 1) % 2], so the barrier after the step is the only one
  // needed (with one buffer a second barrier had to separate the reads from the update).
  // `step_at(s)` gives step s's rows b, ForwardStep, GEMM target and output rows; it must be
  // a pure function (every thread calls it). Returns false where it does not apply (the
  // caller then runs recurrent_step per step): no packed GEMM (float32 on AVX-512 or AVX2),
  // a projected LSTM, too little work to split, or already inside a parallel region.
  template <class Cell, typename T, class StepAt>
  static bool run_recurrent_loop(int64_t steps, const CpuRecurrentWeight<T>& w, T* h_state, int64_t H, int64_t P,
                                 int64_t max_rows, bool projected, StepAt&& step_at,
                                 const CpuWeight<T>* w_ih = nullptr, const T* bias = nullptr) {
    if constexpr (!std::is_same_v<T, float>) {
      TORCH_INTERNAL_ASSERT(!w_ih, "run_recurrent_loop: only float32 projects in the loop");
      return false;
    } else {
      const int64_t G = static_cast<int64_t>(w.per_gate.size());
      if (G == 0 || projected) return false;
      const int64_t all_panels = (H + sgemm::kPanel - 1) / sgemm::kPanel;
      // The per-step projections are parts of one product of all the sequence's rows, and
      // round as the whole-sequence GEMM they replace (tests/test_inference_workspace.py:
      // the packed sequences' last steps have fewer rows than interleave sums).
      int64_t projection_rows = 0;
      for (int64_t s = 0; s < steps && w_ih; ++s) projection_rows += step_at(s).rows;
      const bool by_rows = in_one_region_by_rows(
          steps, max_rows, step_at, G * H * P * sizeof(T), kRowSplitMaxWeightBytesForward, 2 * G * H * P,
          [&](const RowRange& mine) {
            // Each step's spec is made once, a step early, so that its input rows can be
            // prefetched while this step runs (steps >= 1: the split runs only with work).
            auto next = step_at(0);
            for (int64_t s = 0; s < steps; ++s) {
              const auto spec = next;
              if (s + 1 < steps) next = step_at(s + 1);
              const int64_t r1 = std::min(mine.r1, spec.rows);
              if (r1 <= mine.r0) continue;  // no barrier in this loop: threads may differ here
              if (w_ih) {
                const int64_t I = w_ih->cols;
                if (s + 1 < steps) {
                  const int64_t next_rows = std::max<int64_t>(0, std::min(mine.r1, next.rows) - mine.r0);
                  prefetch_rows(next.input + mine.r0 * I, next_rows * I);
                }
                sgemm::gemm_panels(r1 - mine.r0, projection_rows, {spec.input + mine.r0 * I, I, 1}, &w_ih->packed,
                                    1, 0, 0, w_ih->packed.panels(), false, spec.step.ws + mine.r0 * spec.step.ws_ld,
                                    spec.step.ws_ld, nullptr, false, bias);
              }
              sgemm::gemm_panels(r1 - mine.r0, spec.rows, {h_state + mine.r0 * P, P, 1}, w.per_gate.data(), G, H, 0,
                                  all_panels, spec.accumulate, spec.target + mine.r0 * spec.target_ld,
                                  spec.target_ld, pointwise_after_panel<Cell, T>(spec.step, mine.r0, H));
              std::memcpy(h_state + mine.r0 * P, spec.output + mine.r0 * P, (r1 - mine.r0) * P * sizeof(T));
            }
          });
      if (by_rows) return true;
      TORCH_INTERNAL_ASSERT(!w_ih, "run_recurrent_loop: given w_ih where projects_in_loop is false");
      std::vector<T> spare(max_rows * P);
      T* const states[2] = {h_state, spare.data()};
      return in_one_region_by_units(H, 2 * max_rows * G * H * P, [&](const UnitRange& mine) {
        const size_t own_bytes = (mine.j1 - mine.j0) * sizeof(T);
        int64_t done = 0;  // steps run so far: which buffer holds the current state
        for (int64_t s = 0; s < steps; ++s) {
          auto spec = step_at(s);
          if (spec.rows == 0) continue;  // the same for every thread: barriers stay matched
          T* const current = states[done % 2];
          T* const next = states[(done + 1) % 2];
          spec.step.h_prev = current;  // GRU's pointwise step reads its units' previous h
          // Odd steps take the panels in reverse: each thread reads its part of W_hh (128 KB
          // at H = 128) from L2 every step, and in reverse the part read last, still in the
          // 48 KB L1, comes first. [A/B, per-step cost at T = 400, N = 1, 5 rounds] LSTM
          // H = 128 1.27-1.34 -> 1.20-1.22 us, H = 256 3.97-4.26 -> 3.84-3.99 us.
          sgemm::gemm_panels(spec.rows, spec.rows, {current, P, 1}, w.per_gate.data(), G, H, mine.u0, mine.u1,
                              spec.accumulate, spec.target, spec.target_ld,
                              pointwise_after_panel<Cell, T>(spec.step, 0, H), /*descending=*/done % 2 == 1);
          // This thread's units of the next state: the step's h for its rows, the rest carried.
          for (int64_t r = 0; r < max_rows && own_bytes > 0; ++r) {
            const T* from = r < spec.rows ? spec.output : current;
            std::memcpy(next + r * P + mine.j0, from + r * P + mine.j0, own_bytes);
          }
          ++done;
          mine.meet();
        }
        if (done % 2 == 1) {  // the final state is in the spare buffer
          for (int64_t r = 0; r < max_rows && own_bytes > 0; ++r) {
            std::memcpy(h_state + r * P + mine.j0, states[1] + r * P + mine.j0, own_bytes);
          }
        }
      });
    }
  }

  // The backward time loop in one parallel region, as run_recurrent_loop: by batch rows
  // where that applies (no barrier), else each thread owns hidden units [j0, j1) = state
  // columns [j0, j1) (P == H without projection). Per step it then runs the pointwise
  // backward of its units, waits at ONE barrier (every gate gradient of the step is
  // written), then computes its columns of dh_state = dgates_hidden W_hh. The next step's
  // pointwise reads only those columns, so it needs no second barrier.
  // By rows, the loop also sums the gate gradients over the rows (the bias gradients) into
  // sums (GateGradientSums, sequence_loop.h), each thread its own rows while they are in
  // L1, and sets sums->filled: one pass over the R x G H gate gradients less after the loop.
  template <class Cell, typename T, class StepAt, class Sums>
  static bool run_recurrent_backward_loop(int64_t steps, const CpuWeight<T>& w_hh, T* dh_state, int64_t H,
                                          int64_t P, int64_t max_rows, bool projected, StepAt&& step_at,
                                          Sums* sums) {
    if constexpr (!std::is_same_v<T, float>) {
      return false;
    } else {
      const int64_t G = Cell::kGates, GH = G * H;
      if (!w_hh.packed.storage.defined() || projected) return false;
      const int64_t state_panels = (P + sgemm::kPanel - 1) / sgemm::kPanel;
      const int64_t sum_width = Cell::kHiddenGatesApart ? 2 * GH : GH;  // GRU: dgates, then dgates_hidden
      std::vector<T> partial(at::get_num_threads() * sum_width, T(0));   // per thread
      const bool by_rows = in_one_region_by_rows(
          steps, max_rows, step_at, GH * P * sizeof(T), kRowSplitMaxWeightBytesBackward, 2 * GH * P,
          [&](const RowRange& mine) {
            T* const mine_sums = partial.data() + omp_get_thread_num() * sum_width;
            for (int64_t s = steps - 1; s >= 0; --s) {
              const auto spec = step_at(s);
              const int64_t r1 = std::min(mine.r1, spec.rows);
              if (r1 <= mine.r0) continue;  // no barrier in this loop: threads may differ here
              pointwise_rows<false, Cell, T>(spec.step, mine.r0, r1, 0, H, H);
              for (int64_t r = mine.r0; r < r1; ++r) {
                add_to(mine_sums, spec.step.dgates + r * spec.step.dgates_ld, GH);
                if (Cell::kHiddenGatesApart) add_to(mine_sums + GH, spec.step.dgates_hidden + r * GH, GH);
              }
              sgemm::gemm_panels(r1 - mine.r0, spec.rows, {spec.step.dgates_hidden + mine.r0 * GH, GH, 1},
                                  &w_hh.packed, 1, 0, 0, state_panels, spec.accumulate, dh_state + mine.r0 * P, P);
            }
          });
      if (by_rows) {
        const int64_t threads = static_cast<int64_t>(partial.size()) / sum_width;
        for (int64_t j = 0; j < sum_width; ++j) {
          T total = 0;
          for (int64_t t = 0; t < threads; ++t) total += partial[t * sum_width + j];
          (j < GH ? sums->gates[j] : sums->hidden_gates[j - GH]) = total;
        }
        sums->filled = true;
        return true;
      }
      return in_one_region_by_units(H, 2 * max_rows * G * H * P, [&](const UnitRange& mine) {
        int64_t done = 0;  // steps run so far: odd ones take the panels in reverse (L1 reuse)
        for (int64_t s = steps - 1; s >= 0; --s) {
          const auto spec = step_at(s);
          if (spec.rows == 0) continue;  // the same for every thread: barriers stay matched
          pointwise_rows<false, Cell, T>(spec.step, 0, spec.rows, mine.j0, mine.j1, H);
          mine.meet();
          sgemm::gemm_panels(spec.rows, spec.rows, {spec.step.dgates_hidden, G * H, 1}, &w_hh.packed, 1, 0, mine.u0,
                              mine.u1, spec.accumulate, dh_state, P, nullptr, /*descending=*/done++ % 2 == 1);
        }
      });
    }
  }

  // b is read in place (sgemm::in_place) up to this many columns, else packed first. In
  // place saves copying a b with a row per token, but reads each k's 32 columns from rows
  // 4 N bytes apart; from 256 columns that cost more than the copy. LSTM fwd+bwd, A/B 4-5
  // rounds [module_times]: (200, 16, 64, 64) ~2.15 -> ~1.95 ms, (100, 16, 128, 128) 3.3-3.8
  // either way, (100, 64, 256, 256) 51-54 -> 54-57 ms, (50, 32, 512, 512) 47-48 -> 50-51 ms.
  static constexpr int64_t kInPlaceMaxColumns = 128;

  // Whole-sequence product a @ b (once per op call; a may be a transposed view).
  static at::Tensor mm(const at::Tensor& a, const at::Tensor& b) {
    if (!own_product_takes(a, b)) return a.mm(b);
    at::Tensor c = at::empty({a.size(0), b.size(1)}, a.options());
    own_product(a, b, false, c);
    return c;
  }

  // Whether mm and mm_add compute a @ b themselves (own_product) rather than through ATen:
  // never where ATen's BLAS takes the whole-sequence products (sequence_products.h).
  static bool own_product_takes(const at::Tensor& a, const at::Tensor& b) {
    if (sequence_products() == SequenceProducts::kBlas) return false;
    return by_token_blocks_takes(a, b) || own_gemm_takes(a);
  }

  // c (+)= a @ b for c contiguous, where own_product_takes(a, b).
  static void own_product(const at::Tensor& a, const at::Tensor& b, bool accumulate, at::Tensor& c) {
    if (by_token_blocks_takes(a, b)) {
      gemm_by_token_blocks(a, b, accumulate, c);
      return;
    }
    sgemm::gemm(a.size(0), {a.data_ptr<float>(), a.stride(0), a.stride(1)}, rhs_operand(b), accumulate,
                 c.data_ptr<float>(), c.size(1));
  }

  // The product size per token (a's rows times b's columns) from which a weight gradient
  // goes through gemm_by_token_blocks rather than MKL: its transposing copy costs the same
  // per element of a whatever b's width, so it pays only where the product per token is
  // large. Measured on the Zen 3 against MKL, forward+backward (bench/README.md, "What we
  // learned on an AVX2 CPU", item 28): faster at 2048 x 512 and 1536 x 512 (LSTM and GRU
  // (50, 32, 512, 512)), slower at 512 x 512 (RNN there), even or slower at 1024 x 256 and
  // 768 x 256 (LSTM and GRU (100, 64, 256, 256)) and below.
  static constexpr int64_t kByTokenBlocksMinProduct = int64_t(1) << 19;

  // Whether gemm_by_token_blocks takes a b: float32, a's columns contiguous (d^T for a
  // gate gradient d, a row per token), on AVX2, where our tiles would read a column by
  // column; a product large enough per token (kByTokenBlocksMinProduct).
  static bool by_token_blocks_takes(const at::Tensor& a, const at::Tensor& b) {
    return a.scalar_type() == at::kFloat && sgemm::available() && cpu_isa() == CpuIsa::kAvx2 &&
           a.stride(0) == 1 && a.stride(1) != 1 && a.size(1) > 0 &&
           a.size(0) * b.size(1) >= kByTokenBlocksMinProduct;
  }

  // c (+)= a b for a = d^T (by_token_blocks_takes) through sgemm::gemm_transposed_a.
  static void gemm_by_token_blocks(const at::Tensor& a, const at::Tensor& b, bool accumulate, at::Tensor& c) {
    sgemm::gemm_transposed_a(
        a.size(0), a.size(1), a.data_ptr<float>(), a.stride(1),
        [&](int64_t k0, int64_t tokens) { return rhs_operand(b.narrow(0, k0, tokens)); }, accumulate,
        c.data_ptr<float>(), c.size(1));
  }

  // c += a @ b, c a contiguous product of mm, with mm's GEMM where mm uses it. The
  // backward adds W_hh's gradient from the first step's rows (K = N) this way; through
  // MKL's addmm_ that small product took 20-60 us of an LSTM (200, 16, 64, 64) backward's
  // ~500 us of weight gradients (bench/README.md item 42).
  static void mm_add(at::Tensor& c, const at::Tensor& a, const at::Tensor& b) {
    if (!own_product_takes(a, b) || !c.is_contiguous()) {
      c.addmm_(a, b);
      return;
    }
    own_product(a, b, true, c);
  }

  // Whether mm's own GEMM takes a as its left operand: float32, and rows contiguous, or
  // columns contiguous on AVX-512. The weight gradients' a is dgates^T, its columns 4 G H
  // bytes apart; read in place by the AVX2 tiles (16 columns, so each A value is read
  // twice) their phase of an LSTM (100, 64, 256, 256) forward+backward took ~216 ms on a
  // Zen 3, 57-90 ms through MKL, and copying A per row tile first did not beat MKL
  // (bench/README.md, "What we learned on an AVX2 CPU", item 3), so there MKL takes them,
  // but for the largest products per token (by_token_blocks_takes).
  static bool own_gemm_takes(const at::Tensor& a) {
    if (a.scalar_type() != at::kFloat || !sgemm::available()) return false;
    return a.stride(1) == 1 || (a.stride(0) == 1 && cpu_isa() == CpuIsa::kAvx512);
  }

  // b as mm's right operand: in place where its rows are whole panels of at most
  // kInPlaceMaxColumns, else packed.
  static sgemm::PackedMatrix rhs_operand(const at::Tensor& b) {
    const bool whole_panels = b.stride(1) == 1 && b.size(1) % sgemm::kPanel == 0 && b.size(1) <= kInPlaceMaxColumns;
    return whole_panels ? sgemm::in_place(b.data_ptr<float>(), b.stride(0), b.size(0), b.size(1))
                        : sgemm::pack(b.data_ptr<float>(), b.stride(0), b.stride(1), b.size(0), b.size(1));
  }

  // dst[j] += src[j] for j < n.
  template <typename T>
  static void add_to(T* dst, const T* src, int64_t n) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dst[j] += src[j];
  }

  template <typename T>
  static void copy_rows(T* dst, int64_t dst_ld, const T* src, int64_t src_ld, int64_t rows, int64_t cols) {
    if (rows == 0 || cols == 0) return;  // empty tensors may have null data pointers
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
    for_rows(rows, H, [&](int64_t r0, int64_t r1) { pointwise_rows<true, Cell, T>(s, r0, r1, 0, H, H); });
  }

  template <class Cell, typename T>
  static void backward_step(const BackwardStep<T>& s, int64_t rows, int64_t H) {
    for_rows(rows, H, [&](int64_t r0, int64_t r1) { pointwise_rows<false, Cell, T>(s, r0, r1, 0, H, H); });
  }
};

}  // namespace fused_rnn
