#pragma once
// A float32 GEMM for AVX-512 and AVX2 CPUs (cpu_isa.h), for the shapes of an RNN:
// C(M, N) (+)= A(M, K) B(K, N) with B packed once into 32-column panels and reused across
// all time steps.
//
// Why not the BLAS libtorch exports: on AMD CPUs MKL runs its AVX2 path, about half the
// throughput oneDNN (torch.nn.LSTM's CPU backend) reaches on the same machine, and oneDNN's
// own GEMM is not exported; and a BLAS call per time step costs microseconds of its own
// (MKL: 7-10 us for a (16, 64) x (64, 256) step on an AVX2 Zen 3). See bench/README.md.
#include <ATen/ATen.h>
#include <c10/util/FunctionRef.h>
#include <cstdint>

namespace fused_rnn {
namespace sgemm {

constexpr int64_t kPanel = 32;  // columns per packed panel: two AVX-512 or four AVX2 registers

// True when cpu_isa() is AVX2 or AVX-512, so that the kernels below may be used.
bool available();

constexpr int64_t kBlockColumns = 16;  // a panel is two blocks of 16 columns (an AVX2 tile's width)

// B (K, N) as the kernels read it: in panels of kPanel columns, each two blocks of
// kBlockColumns; row k of block h of panel p is the kBlockColumns floats at panel(p) +
// h * block_stride + k * k_stride. In place and packed for AVX-512 a panel's rows are
// whole (block_stride = kBlockColumns); packed for AVX2 each block is contiguous along k
// (k_stride = kBlockColumns, block_stride = K kBlockColumns), so that a tile of one block's
// width reads consecutive cache lines rather than every other one.
struct PackedMatrix {
  at::Tensor storage;  // the packed copy; undefined when B is read in place
  const float* data = nullptr;
  int64_t K = 0, N = 0;
  int64_t k_stride = kPanel, panel_stride = 0, block_stride = kBlockColumns;
  const float* panel(int64_t p) const { return data + p * panel_stride; }
  int64_t panels() const { return (N + kPanel - 1) / kPanel; }
  // Offset of B(k, j) from its panel's start, j its column within the panel.
  int64_t offset(int64_t k, int64_t j) const {
    return (j / kBlockColumns) * block_stride + k * k_stride + j % kBlockColumns;
  }
};

// B(k, n) = data[k * k_stride + n * n_stride], copied into panels of (K, kPanel) contiguous
// floats, zero-padded past N.
PackedMatrix pack(const float* data, int64_t k_stride, int64_t n_stride, int64_t K, int64_t N);

// Columns [n0, n0 + N) of a matrix, n0 a multiple of kPanel: a view sharing its storage.
PackedMatrix columns(const PackedMatrix& matrix, int64_t n0, int64_t N);

// B(k, n) = data[k * ld + n], row-major with N a multiple of kPanel, read where it is. For
// the whole-sequence products whose B has a row per token (the input or the outputs): a
// packed copy of it is as large as the product's other operand.
PackedMatrix in_place(const float* data, int64_t ld, int64_t K, int64_t N);

// A(m, k) = a[m * row_stride + k * col_stride]; either stride is 1 (row- or column-major).
struct MatrixView {
  const float* data;
  int64_t row_stride, col_stride;
};

// C = A B + bias (accumulate false; bias (N,) added to every row, or nullptr) or C += A B
// (accumulate true); C row-major with leading dimension ldc. Splits the work over threads
// when it is large enough to pay for a parallel region.
void gemm(int64_t M, const MatrixView& A, const PackedMatrix& B, bool accumulate, float* C, int64_t ldc,
          const float* bias = nullptr);

// Called as panel_done(m0, m1, p) once panel p of every B is in C for rows [m0, m1).
using PanelDone = c10::function_ref<void(int64_t, int64_t, int64_t)>;

// A time step's rows up to which gemm_panels sums k in interleaved partial sums (few rows
// are limited by FMA latency, not by bandwidth, otherwise; see sgemm.cpp).
constexpr int64_t kInterleavedSumsMaxRows = 3;

// A times each of `count` same-shaped matrices Bs[i] into C + i * c_stride, restricted to
// panels [p0, p1) (columns [32 p0, 32 p1)), on the calling thread: for callers that split
// the columns, or the rows, of a time step's product over threads themselves. step_rows:
// the rows of the product (usually the step's) of which A's M rows are some (M = step_rows
// unless the rows were split); a row's rounding depends on it alone, not on the split.
// panel_done, if given, lets the caller consume those columns of every C while they are
// still in L1. descending: the
// panels (and the matrices of each) in reverse order, for time loops that alternate the
// order every step, so that the B data read last, still in L1, is read first next step.
// The order changes no value. bias: as gemm's (accumulate false only).
void gemm_panels(int64_t M, int64_t step_rows, const MatrixView& A, const PackedMatrix* Bs, int64_t count,
                 int64_t c_stride, int64_t p0, int64_t p1, bool accumulate, float* C, int64_t ldc,
                 PanelDone panel_done = nullptr, bool descending = false, const float* bias = nullptr);

// dst(j, i) = src(i, j) for i < rows, j < cols: src row-major with leading dimension
// ld_src, dst row-major with ld_dst. In 8 x 8 register blocks, split over threads when
// large. For a left operand that the AVX2 tiles would otherwise read column by column.
void transpose(const float* src, int64_t rows, int64_t cols, int64_t ld_src, float* dst, int64_t ld_dst);

// The rows [k0, k0 + tokens) of a product's right operand, as gemm takes it.
using RowsOfB = c10::function_ref<PackedMatrix(int64_t k0, int64_t tokens)>;

// C (+)= d^T B for d (K, M) row-major with leading dimension ldd (a row per token, e.g. the
// gate gradients) and B (K, N) given block by block: K in blocks of kDepthBlock tokens, each
// block of d transposed into a row-major buffer that stays in cache and multiplied by its
// rows of B. The sums round as one gemm over all K would (same depth blocks).
void gemm_transposed_a(int64_t M, int64_t K, const float* d, int64_t ldd, RowsOfB rows_of_b, bool accumulate,
                       float* C, int64_t ldc);

// Whether a product of this many flops pays for a parallel region.
bool worth_threads(int64_t flops);

}  // namespace sgemm
}  // namespace fused_rnn
