// One-process A/B of two builds of our SGEMM: csrc/cpu/sgemm.cpp (A) against a variant copy
// of it (B, e.g. another tile shape or depth block) compiled into the same binary under the
// namespace sgemm_alt, timed in alternating batches over the same buffers, per-step products
// (gemm_panels, 1 thread), 40 rounds. Separate processes could not resolve 10% here; even in
// one process, buffer addresses move figures by that much (bench/README.md, AVX2 item 18).
//   make sgemm-variant-ab VARIANT=/tmp/sgemm_variant.cpp
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <vector>
#include "cpu/sgemm.h"
#define sgemm sgemm_alt
#include "sgemm_alt.h"  // a copy of cpu/sgemm.h (its #pragma once blocks a second include)
#undef sgemm
namespace A = fused_rnn::sgemm;
namespace B = fused_rnn::sgemm_alt;
int main() {
  at::set_num_threads(1);
  // (M, K, N): per-step products of the row split (8-16 rows a thread), larger steps, and
  // whole-sequence products.
  const int shapes[][3] = {{8, 64, 64},    {7, 64, 256},    {8, 64, 256},      {9, 64, 256},
                           {8, 128, 256},  {10, 64, 256},   {16, 64, 256},     {6, 128, 512},
                           {32, 256, 1024}, {64, 256, 1024}, {1600, 512, 2048}, {1024, 1024, 1024}};
  constexpr int kRounds = 40;
  for (const auto& sh : shapes) {
    const int M = sh[0], K = sh[1], N = sh[2];
    const at::Tensor a = at::randn({M, K}), w = at::randn({N, K});
    at::Tensor c = at::empty({M, N});
    const A::PackedMatrix pa = A::pack(w.data_ptr<float>(), 1, K, K, N);
    const B::PackedMatrix pb = B::pack(w.data_ptr<float>(), 1, K, K, N);
    const long reps = std::max(1L, 30000000L / (2L * M * N * K));
    std::vector<double> seconds[2];
    int b_faster = 0;
    for (int round = 0; round < kRounds; ++round) {
      for (int v = 0; v < 2; ++v) {
        auto s = std::chrono::steady_clock::now();
        for (long r = 0; r < reps; ++r) {
          if (v == 0) {
            A::gemm_panels(M, M, {a.data_ptr<float>(), K, 1}, &pa, 1, 0, 0, pa.panels(), false, c.data_ptr<float>(), N);
          } else {
            B::gemm_panels(M, M, {a.data_ptr<float>(), K, 1}, &pb, 1, 0, 0, pb.panels(), false, c.data_ptr<float>(), N);
          }
        }
        seconds[v].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count() / reps);
      }
      b_faster += seconds[1].back() < seconds[0].back();
    }
    for (auto& x : seconds) std::sort(x.begin(), x.end());
    const double flop = 2.0 * M * N * K;
    std::printf("M=%d K=%d N=%d: A %.1f | B %.1f GFLOP/s (medians), B faster in %d of %d rounds\n", M, K, N,
                flop / seconds[0][kRounds / 2] / 1e9, flop / seconds[1][kRounds / 2] / 1e9, b_faster, kRounds);
  }
}
