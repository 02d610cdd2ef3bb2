// GFLOP/s of the AVX-512 SGEMM (csrc/cpu/sgemm_avx512.cpp) on the shapes of an RNN, with
// the packed weight hot in cache (the best of 30 timed batches), checked against at::mm.
// A profiling aid for bench/README.md "What we learned"; build and run with
//   make sgemm-microbench THREADS=1
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "cpu/sgemm_avx512.h"

int main(int argc, char** argv) {
  using namespace fused_rnn::avx512;
  at::set_num_threads(argc > 1 ? std::atoi(argv[1]) : 1);
  // (M, K, N): per-step products, an input projection, a weight gradient's K.
  const int shapes[][3] = {{64, 256, 1024}, {6400, 256, 1024}, {32, 512, 2048}, {32, 512, 512}, {16, 64, 256},
                           {1, 128, 512},   {2, 128, 512},     {3, 256, 768},   {1024, 2048, 256},
                           {3200, 256, 64}};
  std::printf("threads %d, AVX-512 path %s\n", at::get_num_threads(), available() ? "on" : "OFF");
  for (const auto& shape : shapes) {
    const int M = shape[0], K = shape[1], N = shape[2];
    const at::Tensor a = at::randn({M, K}), w = at::randn({N, K});
    at::Tensor c = at::empty({M, N});
    const PackedMatrix packed = pack(w.data_ptr<float>(), 1, K, K, N);
    const long reps = std::max(1L, 200000000L / (2L * M * N * K));
    // gemm: a whole-sequence product; gemm_panels: a time step's product (one thread).
    for (const bool per_step : {false, true}) {
      double best = 1e30;
      for (int round = 0; round < 30; ++round) {
        const auto start = std::chrono::steady_clock::now();
        for (long r = 0; r < reps; ++r) {
          if (per_step) {
            gemm_panels(M, M, {a.data_ptr<float>(), K, 1}, &packed, 1, 0, 0, packed.panels(), false,
                        c.data_ptr<float>(), N);
          } else {
            gemm(M, {a.data_ptr<float>(), K, 1}, packed, false, c.data_ptr<float>(), N);
          }
        }
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps);
      }
      const float error = (at::mm(a, w.t()) - c).abs().max().item<float>();
      std::printf("M=%d K=%d N=%d %-11s: %.1f GFLOP/s (max |error| vs at::mm %.2e)\n", M, K, N,
                  per_step ? "gemm_panels" : "gemm", 2.0 * M * N * K / best / 1e9, error);
    }
  }
  return 0;
}
