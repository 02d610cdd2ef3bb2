// Float32 GEMM for AVX-512 and AVX2 CPUs (see sgemm.h). Register blocking: a micro-tile of
// up to kRows rows by kTileColumns columns lives in accumulator registers
// (sgemm_micro_tile.inc, compiled once per ISA below: Avx512Tiles, Avx2Tiles over simd_lanes.h).
#include "sgemm.h"

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <array>
#include <utility>

#include "buffer_pool.h"
#include "cpu_isa.h"
#include "simd_lanes.h"

namespace fused_rnn {
namespace sgemm {
namespace {

constexpr int64_t kRowChunk = 192;  // rows of A kept hot in L2 while sweeping all panels
// k per pass. Each pass stores the C tile and the next one reloads it, so a deeper pass
// saves that epilogue; the (512, 32) panel slice (64 KB) streams from L2 fast enough for
// two vector loads per 24 FMAs. 512 vs 128: 245 -> 251-257 GFLOP/s at (64, 256, 1024),
// 241 -> 254-264 at (32, 512, 2048), 1 thread, AVX-512 (make sgemm-microbench).
constexpr int64_t kDepthBlock = 512;
constexpr int64_t kParallelFlops = int64_t(1) << 17;  // below this a GEMM stays on one thread: a
// parallel region costs 1-2 us with hot OpenMP threads (measured, bench/README.md)

// Interleaved partial sums, for the per-step products of steps with few rows (gemm_panels):
// each (row, vector) of the tile keeps kSums accumulators, accumulator h summing every
// k = h mod kSums, added up at the end. With one accumulator, a tile of one row waits on
// FMA latency: every k's FMAs need the previous k's results, so it issues 2 FMAs per
// 4-cycle latency where the core could issue 8; with 8 or more accumulators in flight it is
// limited by streaming B from L2 instead. M = 1, K = 128, N = 512 (an LSTM N = 1, H = 128
// step): 70 -> 90 GFLOP/s, M = 2: 136 -> 153 (1 thread, AVX-512, make sgemm-microbench).
// Whether a row is summed this way depends only on its step's rows, never on how the rows
// are cut into tiles or over threads, so a row rounds the same whichever the split: the
// inference forward (projection in chunks, so other thread splits) matches the training
// forward bit for bit (tests/test_inference_workspace.py).

using MicroTile = void (*)(int64_t, const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t, int,
                           bool, const float*);

// Micro-tiles of 1..max_rows rows by tile_columns columns, for A read row-major and
// column-major.
struct Tiles {
  const MicroTile* row_major;
  const MicroTile* column_major;
  int64_t max_rows;
  int tile_columns;
};
// wide: whole-panel tiles for the few rows of a chunk that plain tiles narrower than a
// panel would leave to a tile with too few accumulators (RowPlan below); none where the
// plain tiles are a whole panel wide already (max_rows 0).
struct TileSet {
  Tiles plain, interleaved, wide;
};

// The AVX-512 tile shapes: a whole panel by up to 12 rows, 24 accumulators + 2 B registers
// of the 32; with interleaved sums, up to 3 rows of 4 sums (24 accumulators).
struct Avx512Tiles : Avx512Lanes {
  static constexpr int kRegisters = 32;
  static constexpr int kTileColumns = 32, kRows = 12, kWideRows = 0;
  // B's rows 16 k ahead, as on AVX2 (Avx2Tiles): a 512-deep panel (64 KB) outgrows L1 on
  // the Intel Xeon too (bench/README.md, "What we learned on an Intel Xeon", item 2).
  static constexpr int kPrefetchRowsAhead = 16;
  static constexpr int kInterleavedTileColumns = 32, kInterleavedRows = 3, kSums = 4;
};

// The AVX2 tile shapes (16 ymm registers): half a panel (16 columns) by up to 6 rows, 12
// accumulators + 2 B registers + the broadcast A value, so each B vector loaded serves 6
// FMAs (whole-panel tiles of 2 rows, 8 accumulators + 4 B registers, served 2, and
// streaming B from L2 then bounded the projections at ~50 GFLOP/s a thread: 6400 x 256 x
// 1024 67 -> 83 GFLOP/s, 1 thread, make sgemm-microbench). With interleaved sums, whole
// panels by 1 row of 2 sums: 8 accumulators in flight, as the FMA latency needs, and each B
// vector serves two rows' worth of FMAs less than a half-panel tile of 4 sums would need
// (M = 3, K = 256, N = 768: 34 GFLOP/s with those, 48 with these).
// Wide tiles: a whole panel by up to 3 rows, 12 accumulators + 3 broadcast A values + one
// B vector at a time (sgemm_micro_tile.inc's add_one_k), for the rows RowPlan gives them.
struct Avx2Tiles : Avx2Lanes {
  static constexpr int kRegisters = 16;
  static constexpr int kTileColumns = 16, kRows = 6, kWideRows = 3;
  // The tiles ask for B's rows 16 k ahead (2 KB of the panel) in software: the packed
  // weights stream from L2 or L3, and the hardware did not keep the FMAs fed. [ab_in_process,
  // a temporary switch, `--mode forward --rounds 8 --calls 2`] B/A at (100, 64, 256, 256)
  // LSTM 0.955, GRU 0.903, RNN 0.896; at (50, 32, 512, 512) 0.881, 0.852, 0.872; forward+
  // backward LSTM (50, 32, 512, 512) 0.927, (100, 64, 256, 256) 0.954, GRU 0.889; even at
  // (200, 16, 64, 64) (20-30 rounds). 8 or 32 k ahead instead of 16: even or slower.
  static constexpr int kPrefetchRowsAhead = 16;
  static constexpr int kInterleavedTileColumns = 32, kInterleavedRows = 1, kSums = 2;
};

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // see simd_lanes.h
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace avx512_tiles {
using Lanes = Avx512Tiles;
#define FUSED_RNN_TILE_TARGET FUSED_RNN_AVX512
#include "sgemm_micro_tile.inc"
#undef FUSED_RNN_TILE_TARGET
}  // namespace avx512_tiles

namespace avx2_tiles {
using Lanes = Avx2Tiles;
#define FUSED_RNN_TILE_TARGET FUSED_RNN_AVX2
#include "sgemm_micro_tile.inc"
#undef FUSED_RNN_TILE_TARGET
}  // namespace avx2_tiles

#pragma GCC diagnostic pop

const TileSet& tiles_of_this_cpu() {
  return cpu_isa() == CpuIsa::kAvx512 ? avx512_tiles::tile_set() : avx2_tiles::tile_set();
}

// Row tiles of a chunk of rows: near-equal sizes, so 64 rows run as 11+11+11+11+10+10
// rather than 12*5+4 (AVX-512).
struct RowTiles {
  int64_t count, rows;
  int64_t size(int64_t t) const { return rows / count + (t < rows % count ? 1 : 0); }
};
RowTiles row_tiles(int64_t rows, int64_t max_rows) { return {(rows + max_rows - 1) / max_rows, rows}; }

// How a chunk's rows are cut into tiles: the first rows in near-equal plain tiles
// (`narrow`), the last `wide` rows in one whole-panel tile. An FMA's result is ready 4
// cycles after it issues and a core issues 2 a cycle, so a tile needs 8 accumulators to
// keep the FMA units busy, and runs freely only with more. A half-panel AVX2 tile of r rows
// has 2 r: the 8 rows a thread takes of a batch of 16 (the row split) ran as 4 + 4 rows at
// that limit, 7 rows as 4 + 3 below it. Now 8 rows run as 5 + 3 wide (10 and 12
// accumulators), 7 as 4 + 3 wide, 9 as 6 + 3 wide. [make sgemm-variant-ab, 1 thread, K = 64,
// N = 256, 40 rounds, GFLOP/s] M = 8: 79.6 -> 83.9 in a fast period of this VM (faster in 33
// of 40 rounds), 47.5 -> 63.3 in a slow one (38 of 40); M = 7: 68.2 -> 81.2 (39), 47.9 ->
// 50.8 (26); M = 9: 55.2 -> 62.3 (36); M = 13, and 14 at K = 128, N = 512: faster in 28 and 26.
// In the op [ab_in_process, forward, 30 rounds of 3 calls] LSTM (200, 16, 64, 64) B/A 0.961
// (B faster in 25 of 30), GRU 0.969 (26). The whole-sequence products' chunks (about 190
// rows, so 1-3 rows past whole tiles too) gained nothing and their forward+backward ran
// 2-5% slower with wide tiles (LSTM and GRU (200, 16, 64, 64) B/A 1.016 and 1.045, 20
// rounds); so only chunks of up to kWideMaxChunkRows rows (the per-step products) take
// them, and those of up to 6 rows stay as they were (not measured with wide tiles).
// Interleaved tiles are a whole panel wide already.
constexpr int64_t kWideMaxChunkRows = 15;
struct RowPlan {
  RowTiles narrow;
  int64_t wide;
};
RowPlan row_plan(int64_t rows, const TileSet& set, bool interleaved) {
  const int64_t max_rows = interleaved ? set.interleaved.max_rows : set.plain.max_rows;
  const int64_t max_wide = interleaved ? 0 : set.wide.max_rows;
  const int64_t past_whole = rows % max_rows;
  const bool takes_wide = rows > max_rows && rows <= kWideMaxChunkRows && past_whole >= 1 && past_whole <= max_wide;
  const int64_t wide = takes_wide ? max_wide : 0;
  return {row_tiles(rows - wide, max_rows), wide};
}

// A is read in place, never packed: a micro-tile's rows are 12 streams along k, which the
// L1 serves as fast as one packed stream, and packing a row chunk (a scalar transpose)
// cost more than it saved. Without it, 1 thread: (6400, 256, 1024) 245 -> 258 GFLOP/s,
// (3200, 256, 64), the input gradient of an LSTM with I = 64, 175 -> 266 (make
// sgemm-microbench); LSTM (200, 16, 64, 64) forward+backward 2.6 -> 2.0 ms together
// with the balanced row chunks of run_tiles [module_times].
// One chunk of rows of A times panel p of B, into C's rows of that chunk; `rows_of_a` is A
// at the chunk's first row. interleaved: with interleaved partial sums (chunk_rows <=
// kInterleavedSumsMaxRows). How the rows are cut into tiles changes no value: every tile
// sums each element over k in the same order.
void chunk_times_panel(const MatrixView& rows_of_a, int64_t chunk_rows, const PackedMatrix& B, int64_t p,
                       bool accumulate, float* C, int64_t ldc, const float* bias, bool interleaved) {
  const TileSet& set = tiles_of_this_cpu();
  const Tiles& tiles_of = interleaved ? set.interleaved : set.plain;
  const bool column_a = rows_of_a.row_stride == 1 && rows_of_a.col_stride != 1;
  const MicroTile* tile_of = column_a ? tiles_of.column_major : tiles_of.row_major;
  const int64_t lda = column_a ? rows_of_a.col_stride : rows_of_a.row_stride;
  const int panel_columns = static_cast<int>(std::min<int64_t>(kPanel, B.N - p * kPanel));
  const RowPlan plan = row_plan(chunk_rows, set, interleaved);
  const RowTiles& tiles = plan.narrow;
  for (int64_t k0 = 0; k0 < B.K; k0 += kDepthBlock) {
    const int64_t depth = std::min<int64_t>(kDepthBlock, B.K - k0);
    // The panel's column blocks of tile_columns (one block with AVX-512, two halves with AVX2).
    for (int c0 = 0; c0 < panel_columns; c0 += tiles_of.tile_columns) {
      const float* panel = B.panel(p) + B.offset(k0, c0);
      const float* block_bias = bias ? bias + p * kPanel + c0 : nullptr;
      const float* a = rows_of_a.data;
      float* c = C + p * kPanel + c0;
      for (int64_t t = 0; t < tiles.count; ++t) {
        const int64_t rows = tiles.size(t);
        const bool add = k0 > 0 || accumulate;
        tile_of[rows - 1](depth, a + k0 * rows_of_a.col_stride, lda, panel, B.k_stride, B.block_stride, c, ldc,
                          panel_columns - c0, add, block_bias);
        a += rows * rows_of_a.row_stride;
        c += rows * ldc;
      }
    }
    if (plan.wide > 0) {
      const int64_t first = chunk_rows - plan.wide;
      const MicroTile* wide_of = column_a ? set.wide.column_major : set.wide.row_major;
      wide_of[plan.wide - 1](depth, rows_of_a.data + first * rows_of_a.row_stride + k0 * rows_of_a.col_stride, lda,
                             B.panel(p) + B.offset(k0, 0), B.k_stride, B.block_stride, C + first * ldc + p * kPanel,
                             ldc, panel_columns, k0 > 0 || accumulate, bias ? bias + p * kPanel : nullptr);
    }
  }
}

}  // namespace

bool available() { return cpu_isa() >= CpuIsa::kAvx2; }

namespace {

// GCC 12's unpack intrinsics start from _mm512_undefined_ps(), which -Wmaybe-uninitialized
// reports once they are inlined into the two functions below; every lane of every result
// is defined by its two inputs.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// o[c][i] = r[i][c] for a 16 x 16 block: interleave 32-bit pairs of row pairs, then 64-bit
// pairs (u[4q + e], lane L: rows 4q..4q+3 at column 4L + e), then regroup the 128-bit lanes.
FUSED_RNN_AVX512 void transpose16(const __m512 (&r)[16], __m512 (&o)[16]) {
  __m512 t[16], u[16];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    const __m512d lo01 = _mm512_castps_pd(t[4 * q]), hi01 = _mm512_castps_pd(t[4 * q + 1]);
    const __m512d lo23 = _mm512_castps_pd(t[4 * q + 2]), hi23 = _mm512_castps_pd(t[4 * q + 3]);
    u[4 * q + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo01, lo23));
    u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo01, lo23));
    u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi01, hi23));
    u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi01, hi23));
  }
#pragma GCC unroll 4
  for (int e = 0; e < 4; ++e) {
    const __m512 v = _mm512_shuffle_f32x4(u[e], u[4 + e], 0x44), w = _mm512_shuffle_f32x4(u[e], u[4 + e], 0xEE);
    const __m512 v2 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0x44);
    const __m512 w2 = _mm512_shuffle_f32x4(u[8 + e], u[12 + e], 0xEE);
    o[e] = _mm512_shuffle_f32x4(v, v2, 0x88);
    o[4 + e] = _mm512_shuffle_f32x4(v, v2, 0xDD);
    o[8 + e] = _mm512_shuffle_f32x4(w, w2, 0x88);
    o[12 + e] = _mm512_shuffle_f32x4(w, w2, 0xDD);
  }
}

// One panel (columns [n0, n0 + kPanel)) of op(W) = W^T, for W whose rows (the columns of
// op(W)) are contiguous along k: 16 x 16 blocks are loaded row-wise and transposed in
// registers. The scalar loop this replaced read one element per cycle, a tenth of a small
// layer's whole forward call (LSTM T=1 N=1 H=128: 33 of 96 us, perf).
FUSED_RNN_AVX512 void pack_transposed_panel(const float* data, int64_t n_stride, int64_t K, int64_t N, int64_t n0,
                                            float* dst) {
  for (int64_t k0 = 0; k0 < K; k0 += 16) {
    const int width = static_cast<int>(std::min<int64_t>(16, K - k0));
    const __mmask16 mask = width == 16 ? __mmask16(0xFFFF) : __mmask16((1u << width) - 1);
    for (int g = 0; g < kPanel / 16; ++g) {
      __m512 rows[16], cols[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        const int64_t n = n0 + 16 * g + i;
        rows[i] = n < N ? _mm512_maskz_loadu_ps(mask, data + n * n_stride + k0) : _mm512_setzero_ps();
      }
      transpose16(rows, cols);
      for (int c = 0; c < width; ++c) _mm512_storeu_ps(dst + (k0 + c) * kPanel + 16 * g, cols[c]);
    }
  }
}

#pragma GCC diagnostic pop

// o[c][i] = r[i][c] for an 8 x 8 block: interleave 32-bit pairs of row pairs, then take
// 64-bit pairs (u[4q + e]: rows 4q..4q+3 at column e in the low 128 bits, e + 4 in the high),
// then join the 128-bit halves of the two row quads.
FUSED_RNN_AVX2 void transpose8(const __m256 (&r)[8], __m256 (&o)[8]) {
  __m256 t[8], u[8];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
#pragma GCC unroll 2
  for (int q = 0; q < 2; ++q) {
    u[4 * q + 0] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
    u[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
    u[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
    u[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
  }
#pragma GCC unroll 4
  for (int e = 0; e < 4; ++e) {
    o[e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x20);
    o[4 + e] = _mm256_permute2f128_ps(u[e], u[4 + e], 0x31);
  }
}

// pack_transposed_panel for AVX2, in 8 x 8 blocks; the last K % 8 k go one at a time. With
// the scalar loop it replaced, the setup of an LSTM (1, 1, 128, 128) forward on the Zen 3
// (mostly packing W_ih and W_hh) took 90-93 us, with it 50-57 (bench/README.md).
FUSED_RNN_AVX2 void pack_transposed_panel_avx2(const float* data, int64_t n_stride, int64_t K, int64_t N, int64_t n0,
                                               const PackedMatrix& layout, float* dst) {
  const int64_t whole = K / 8 * 8;
  for (int64_t k0 = 0; k0 < whole; k0 += 8) {
    for (int g = 0; g < kPanel / 8; ++g) {
      __m256 rows[8], cols[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        const int64_t n = n0 + 8 * g + i;
        rows[i] = n < N ? _mm256_loadu_ps(data + n * n_stride + k0) : _mm256_setzero_ps();
      }
      transpose8(rows, cols);
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) _mm256_storeu_ps(dst + layout.offset(k0 + c, 8 * g), cols[c]);
    }
  }
  for (int64_t k = whole; k < K; ++k) {
    for (int64_t j = 0; j < kPanel; ++j) dst[layout.offset(k, j)] = n0 + j < N ? data[k + (n0 + j) * n_stride] : 0.0f;
  }
}

// One panel of op(W) = W whose rows (along n) are contiguous: each k is a straight copy of
// up to 32 floats, zero-padded.
FUSED_RNN_AVX512 void pack_panel_rows(const float* data, int64_t k_stride, int64_t K, int64_t N, int64_t n0,
                                      float* dst) {
  __mmask16 mask[kPanel / 16];
  for (int g = 0; g < kPanel / 16; ++g) {
    const int64_t left = std::clamp<int64_t>(N - n0 - 16 * g, 0, 16);
    mask[g] = left == 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
  }
  for (int64_t k = 0; k < K; ++k) {
    for (int g = 0; g < kPanel / 16; ++g) {
      _mm512_storeu_ps(dst + k * kPanel + 16 * g, _mm512_maskz_loadu_ps(mask[g], data + k * k_stride + n0 + 16 * g));
    }
  }
}

// One panel of B whose rows are contiguous along n, in any layout: a copy per k and block,
// zero-padded past N (where AVX-512's masked copy does not apply).
void pack_panel_rows_by_block(const float* data, int64_t k_stride, int64_t K, int64_t N, int64_t n0,
                              const PackedMatrix& layout, float* dst) {
  for (int64_t j0 = 0; j0 < kPanel; j0 += kBlockColumns) {
    const int64_t width = std::clamp<int64_t>(N - n0 - j0, 0, kBlockColumns);
    for (int64_t k = 0; k < K; ++k) {
      float* block_row = dst + layout.offset(k, j0);
      if (width > 0) std::memcpy(block_row, data + k * k_stride + n0 + j0, width * sizeof(float));
      std::fill(block_row + width, block_row + kBlockColumns, 0.0f);
    }
  }
}

}  // namespace

PackedMatrix pack(const float* data, int64_t k_stride, int64_t n_stride, int64_t K, int64_t N) {
  PackedMatrix packed;
  packed.K = K;
  packed.N = N;
  const int64_t panels = (N + kPanel - 1) / kPanel;
  packed.storage = pooled_buffer({std::max<int64_t>(panels * K * kPanel, 1)}, at::kFloat);
  float* out = packed.storage.data_ptr<float>();
  packed.data = out;
  packed.panel_stride = K * kPanel;
  // AVX2: each 16-column block contiguous along k (sgemm.h), so that a half-panel tile
  // streams consecutive cache lines of B from L2 or L3 instead of every other one
  // [ab_in_process, forward, 10 rounds]: B/A 0.90-0.98 at (100, 64, 256, 256) and (50, 32,
  // 512, 512) for LSTM, GRU and RNN, even at the small sizes and with backward
  // (bench/README.md, "What we learned on an AVX2 CPU", item 24).
  if (cpu_isa() == CpuIsa::kAvx2) {
    packed.k_stride = kBlockColumns;
    packed.block_stride = K * kBlockColumns;
  }
  at::parallel_for(0, panels, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * kPanel, width = std::min<int64_t>(kPanel, N - n0);
      float* dst = out + p * K * kPanel;
      if (k_stride == 1 && cpu_isa() == CpuIsa::kAvx512) {
        pack_transposed_panel(data, n_stride, K, N, n0, dst);
        continue;
      }
      if (k_stride == 1) {  // AVX2 (available() holds)
        pack_transposed_panel_avx2(data, n_stride, K, N, n0, packed, dst);
        continue;
      }
      if (n_stride == 1 && cpu_isa() == CpuIsa::kAvx512) {
        pack_panel_rows(data, k_stride, K, N, n0, dst);
        continue;
      }
      if (n_stride == 1) {
        pack_panel_rows_by_block(data, k_stride, K, N, n0, packed, dst);
        continue;
      }
      // Neither stride is 1: a plain loop, zero-padded.
      std::fill(dst, dst + K * kPanel, 0.0f);
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t j = 0; j < width; ++j) dst[packed.offset(k, j)] = data[k * k_stride + (n0 + j) * n_stride];
      }
    }
  });
  return packed;
}

PackedMatrix columns(const PackedMatrix& matrix, int64_t n0, int64_t N) {
  TORCH_INTERNAL_ASSERT(n0 % kPanel == 0 && n0 + N <= matrix.N, "columns: not whole panels of the matrix");
  PackedMatrix view = matrix;
  view.data = matrix.panel(n0 / kPanel);
  view.N = N;
  return view;
}

PackedMatrix in_place(const float* data, int64_t ld, int64_t K, int64_t N) {
  TORCH_INTERNAL_ASSERT(N % kPanel == 0, "in_place: N must be a multiple of the panel width");
  PackedMatrix matrix;
  matrix.data = data;
  matrix.K = K;
  matrix.N = N;
  matrix.k_stride = ld;
  matrix.panel_stride = kPanel;
  return matrix;
}

namespace {

// Row chunks of at most kRowChunk rows and near-equal sizes: the threads split the (chunk,
// panel) grid, so 256 rows run as 128 + 128 rather than 192 + 64, which left one of two
// threads with three quarters of a weight gradient's work (M = 4H = 256, N = 64 panels).
struct RowChunks {
  int64_t count, rows;
  int64_t first(int64_t c) const { return rows * c / count; }  // chunk c: [first(c), first(c + 1))
};
RowChunks row_chunks(int64_t M) { return {std::max<int64_t>(1, (M + kRowChunk - 1) / kRowChunk), M}; }

// Tiles [t0, t1) of the (row chunk, panel) grid restricted to panels [p0, p0 + panels), on
// the calling thread, for each of `count` matrices Bs[i] (same shape) into C + i * c_stride.
// interleaved: as chunk_times_panel.
void run_tiles(int64_t M, const MatrixView& A, const PackedMatrix* Bs, int64_t count, int64_t c_stride, int64_t p0,
               int64_t panels, int64_t t0, int64_t t1, bool accumulate, float* C, int64_t ldc, const float* bias,
               bool interleaved, PanelDone panel_done = nullptr, bool descending = false) {
  const PackedMatrix& B = Bs[0];
  const RowChunks chunks = row_chunks(M);
  if (B.K == 0) {
    for (int64_t i = 0; i < count; ++i) {
      for (int64_t m = 0; m < M && !accumulate; ++m) {
        for (int64_t n = p0 * kPanel; n < std::min(B.N, (p0 + panels) * kPanel); ++n) {
          C[i * c_stride + m * ldc + n] = bias ? bias[n] : 0.0f;
        }
      }
    }
    for (int64_t t = t0; t < t1 && panel_done; ++t) {
      const int64_t chunk = t / panels;
      panel_done(chunks.first(chunk), chunks.first(chunk + 1), p0 + t - chunk * panels);
    }
    return;
  }
  for (int64_t n = 0; n < t1 - t0; ++n) {
    const int64_t t = descending ? t1 - 1 - n : t0 + n;
    const int64_t chunk = t / panels, p = p0 + t - chunk * panels;
    const int64_t m0 = chunks.first(chunk), m1 = chunks.first(chunk + 1);
    const MatrixView rows{A.data + m0 * A.row_stride, A.row_stride, A.col_stride};
    for (int64_t j = 0; j < count; ++j) {
      const int64_t i = descending ? count - 1 - j : j;
      chunk_times_panel(rows, m1 - m0, Bs[i], p, accumulate, C + i * c_stride + m0 * ldc, ldc, bias, interleaved);
    }
    if (panel_done) panel_done(m0, m1, p);
  }
}

}  // namespace

void gemm(int64_t M, const MatrixView& A, const PackedMatrix& B, bool accumulate, float* C, int64_t ldc,
          const float* bias) {
  if (M == 0 || B.N == 0) return;
  const int64_t panels = B.panels();
  const int64_t tiles = row_chunks(M).count * panels;
  auto run = [&](int64_t t0, int64_t t1) {
    run_tiles(M, A, &B, 1, 0, 0, panels, t0, t1, accumulate, C, ldc, bias, /*interleaved=*/false);
  };
  if (2 * M * B.N * B.K < kParallelFlops || tiles == 1) {
    run(0, tiles);
  } else {
    at::parallel_for(0, tiles, 1, run);
  }
}

void gemm_panels(int64_t M, int64_t step_rows, const MatrixView& A, const PackedMatrix* Bs, int64_t count,
                 int64_t c_stride, int64_t p0, int64_t p1, bool accumulate, float* C, int64_t ldc,
                 PanelDone panel_done, bool descending, const float* bias) {
  p1 = std::min(p1, Bs[0].panels());
  if (M == 0 || p1 <= p0 || count == 0) return;
  TORCH_INTERNAL_ASSERT(M <= step_rows, "gemm_panels: a call's rows are part of its step's");
  run_tiles(M, A, Bs, count, c_stride, p0, p1 - p0, 0, row_chunks(M).count * (p1 - p0), accumulate, C, ldc, bias,
            /*interleaved=*/step_rows <= kInterleavedSumsMaxRows, panel_done, descending);
}

namespace {

// Columns [j0, j1) of src into rows [j0, j1) of dst, all rows: 8 x 8 blocks through
// transpose8, the edges one element at a time. Source rows are walked in the outer loop so
// that the destination rows being filled (j1 - j0 of them, a 32-byte piece each per
// block) stay in L1 until their cache lines are whole.
FUSED_RNN_AVX2 void transpose_columns(const float* src, int64_t rows, int64_t ld_src, float* dst, int64_t ld_dst,
                                      int64_t j0, int64_t j1) {
  const int64_t whole_rows = rows / 8 * 8, whole_end = j0 + (j1 - j0) / 8 * 8;
  for (int64_t i0 = 0; i0 < whole_rows; i0 += 8) {
    for (int64_t j = j0; j < whole_end; j += 8) {
      __m256 in[8], out[8];
#pragma GCC unroll 8
      for (int r = 0; r < 8; ++r) in[r] = _mm256_loadu_ps(src + (i0 + r) * ld_src + j);
      transpose8(in, out);
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) _mm256_storeu_ps(dst + (j + c) * ld_dst + i0, out[c]);
    }
    for (int64_t j = whole_end; j < j1; ++j) {
      for (int64_t i = i0; i < i0 + 8; ++i) dst[j * ld_dst + i] = src[i * ld_src + j];
    }
  }
  for (int64_t i = whole_rows; i < rows; ++i) {
    for (int64_t j = j0; j < j1; ++j) dst[j * ld_dst + i] = src[i * ld_src + j];
  }
}

// Destination rows per task: 64 rows of 32-byte pieces are 2 KB of L1 in flight.
constexpr int64_t kTransposeColumns = 64;

}  // namespace

void transpose(const float* src, int64_t rows, int64_t cols, int64_t ld_src, float* dst, int64_t ld_dst) {
  TORCH_INTERNAL_ASSERT(cpu_isa() >= CpuIsa::kAvx2, "sgemm::transpose needs AVX2");
  const int64_t blocks = (cols + kTransposeColumns - 1) / kTransposeColumns;
  auto run = [&](int64_t b0, int64_t b1) {
    transpose_columns(src, rows, ld_src, dst, ld_dst, b0 * kTransposeColumns,
                      std::min(cols, b1 * kTransposeColumns));
  };
  // A copy is two memory accesses per element: worth threads from the same size a product is.
  if (worth_threads(rows * cols * 8) && blocks > 1) {
    at::parallel_for(0, blocks, 1, run);
  } else {
    run(0, blocks);
  }
}

void gemm_transposed_a(int64_t M, int64_t K, const float* d, int64_t ldd, RowsOfB rows_of_b, bool accumulate,
                       float* C, int64_t ldc) {
  // A row of the buffer is a block's tokens plus a cache line, so that its rows do not all
  // start in the same L1 set.
  const int64_t ld = std::min(K, kDepthBlock) + 16;
  const at::Tensor buffer = pooled_buffer({M, ld}, at::kFloat);
  float* a = buffer.data_ptr<float>();
  for (int64_t k0 = 0; k0 < K; k0 += kDepthBlock) {
    const int64_t tokens = std::min(kDepthBlock, K - k0);
    transpose(d + k0 * ldd, tokens, M, ldd, a, ld);
    gemm(M, {a, ld, 1}, rows_of_b(k0, tokens), accumulate || k0 > 0, C, ldc);
  }
}

bool worth_threads(int64_t flops) { return flops >= kParallelFlops; }

}  // namespace sgemm
}  // namespace fused_rnn
