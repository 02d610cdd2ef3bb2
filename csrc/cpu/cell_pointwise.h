#pragma once
// The LSTM and GRU forward pointwise steps in float32 with vector intrinsics (AVX-512 and
// AVX2, one source, cell_pointwise.inc): the same math as LstmCell::forward and
// GruCell::forward (cell_math.h), which every other dtype and device runs.
//
// Why a second copy of that math: compiled from the scalar code, each vector takes a
// division per sigmoid/tanh and an exp whose range reduction rebuilds 2^k from integer
// bits, and one vector at a time leaves the FMA units waiting on a chain of dependent
// operations (GRU's is longest: r, then n = tanh(. + r hn), then h). Here a reciprocal
// estimate refined by Newton steps replaces each division, and two vectors of two rows go
// through each operation together. AVX-512: the LSTM (64 rows, 256 units) step alone 18 ->
// 16 us, an LSTM forward at (T, N, H) = (100, 64, 256) about 1% faster on one thread
// (bench/README.md). The results stay within 4 ulp of torch.nn's
// (tests/test_cpu_pointwise.py).
#include <cstdint>
#include <type_traits>

#include "../cell_math.h"

namespace fused_rnn {

// Whether Cell's float32 forward step has the intrinsics below.
template <class Cell>
constexpr bool kHasForwardIntrinsics = std::is_same_v<Cell, LstmCell> || std::is_same_v<Cell, GruCell>;

// Cell::forward for rows [r0, r1) and hidden units [j0, j1) of one step (Cell: LstmCell or
// GruCell). Call only where cpu_isa() is at least the function's ISA.
template <class Cell>
void forward_rows_avx512(const ForwardStep<float>& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t H);
template <class Cell>
void forward_rows_avx2(const ForwardStep<float>& s, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t H);

}  // namespace fused_rnn
