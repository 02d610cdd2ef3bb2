// Time of one LSTM forward pointwise step (64 rows x 256 hidden units, float32, hot in
// L2) with the generic `omp simd` loop of cpu_backend.h and with the intrinsics of
// lstm_pointwise.inc, both for this CPU's ISA (AVX-512 or AVX2, cpu_isa.h). Each repetition first restores the pre-activations (the step
// works in place); the restore alone is timed too and is part of both figures.
// A profiling aid for bench/README.md "What we learned"; build and run with
//   make pointwise-microbench
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/cpu_backend.h"

using namespace fused_rnn;

int main() {
  const bool avx512 = cpu_isa() == CpuIsa::kAvx512;
  if (!avx512 && cpu_isa() != CpuIsa::kAvx2) {
    std::printf("this CPU has neither AVX-512 nor AVX2: nothing to compare\n");
    return 0;
  }
  std::printf("ISA: %s\n", cpu_isa_name(cpu_isa()));
  const int64_t N = 64, H = 256;
  std::vector<float> initial(N * 5 * H), ws(N * 5 * H), c(N * H), h(N * H);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& v : initial) v = normal(rng);
  for (float& v : c) v = normal(rng);
  const ForwardStep<float> step{ws.data(), 5 * H, nullptr, nullptr, nullptr, c.data(), h.data(), H};
  const char* names[] = {"generic omp simd loop", "intrinsics", "restore only"};
  for (int variant = 0; variant < 3; ++variant) {
    double best = 1e30;
    for (int round = 0; round < 20; ++round) {
      const auto start = std::chrono::steady_clock::now();
      for (int rep = 0; rep < 50; ++rep) {
        std::copy(initial.begin(), initial.end(), ws.begin());
        if (variant == 0 && avx512) rows_avx512<true, LstmCell, float>(step, 0, N, 0, H, H);
        if (variant == 0 && !avx512) rows_avx2<true, LstmCell, float>(step, 0, N, 0, H, H);
        if (variant == 1 && avx512) lstm_forward_rows_avx512(step, 0, N, 0, H, H);
        if (variant == 1 && !avx512) lstm_forward_rows_avx2(step, 0, N, 0, H, H);
      }
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 50);
    }
    std::printf("%s: %.2f us per (%ld x %ld) step\n", names[variant], best * 1e6, long(N), long(H));
  }
  return 0;
}
