// Time of one forward pointwise step (float32, hot in L1/L2) with the generic `omp simd`
// loop of cpu_backend.h and with the intrinsics of cell_pointwise.inc, both for this CPU's
// ISA (AVX-512 or AVX2, cpu_isa.h): LSTM at (64 rows, 256 units), GRU at (64, 256) and at
// (8, 64) (a thread's rows of a GRU (200, 16, 64, 64) step on 2 threads). Each repetition
// first restores the pre-activations (the step works in place); the restore alone is timed
// too and is part of both figures.
// A profiling aid for bench/README.md "What we learned"; build and run with
//   make pointwise-microbench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/cpu_backend.h"

using namespace fused_rnn;

namespace {

// Best time of 20 rounds of 50 calls of body(), in microseconds per call.
template <class Body>
double best_us(Body&& body) {
  double best = 1e30;
  for (int round = 0; round < 20; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int rep = 0; rep < 50; ++rep) body();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 50);
  }
  return best * 1e6;
}

template <class Cell>
void time_cell(const char* name, int64_t N, int64_t H) {
  const int64_t width = Cell::kWorkspace * H, n = N * width;
  // One buffer for the saved and the working pre-activations, 2 KB apart modulo 4 KB: with
  // two separate allocations glibc's memcpy (rep movsb) ran at 2 GB/s on a Zen 3 VM where
  // the destination was 16 bytes past the source modulo 4 KB.
  std::vector<float> buffer(2 * n + 512), c(N * H), h(N * H), hidden(N * 3 * H), b_hh(3 * H), h_prev(N * H);
  float* initial = buffer.data();
  float* ws = buffer.data() + n + 512;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int64_t i = 0; i < n; ++i) initial[i] = normal(rng);
  for (auto* v : {&c, &hidden, &b_hh, &h_prev}) {
    for (float& x : *v) x = normal(rng);
  }
  const ForwardStep<float> step{ws, width, hidden.data(), b_hh.data(), h_prev.data(), c.data(), h.data(), H};
  const bool avx512 = cpu_isa() == CpuIsa::kAvx512;
  auto restore = [&] { std::copy(initial, initial + n, ws); };
  const double generic = best_us([&] {
    restore();
    if (avx512) {
      rows_avx512<true, Cell, float>(step, 0, N, 0, H, H);
    } else {
      rows_avx2<true, Cell, float>(step, 0, N, 0, H, H);
    }
  });
  const double intrinsics = best_us([&] {
    restore();
    if (avx512) {
      forward_rows_avx512<Cell>(step, 0, N, 0, H, H);
    } else {
      forward_rows_avx2<Cell>(step, 0, N, 0, H, H);
    }
  });
  const double restore_only = best_us(restore);
  std::printf("%s (%ld x %ld) step, us: generic omp simd loop %.2f | intrinsics %.2f | restore only %.2f\n", name,
              long(N), long(H), generic, intrinsics, restore_only);
}

}  // namespace

int main() {
  if (cpu_isa() != CpuIsa::kAvx512 && cpu_isa() != CpuIsa::kAvx2) {
    std::printf("this CPU has neither AVX-512 nor AVX2: nothing to compare\n");
    return 0;
  }
  std::printf("ISA: %s\n", cpu_isa_name(cpu_isa()));
  time_cell<LstmCell>("LSTM", 64, 256);
  time_cell<GruCell>("GRU", 64, 256);
  time_cell<GruCell>("GRU", 8, 64);
  return 0;
}
