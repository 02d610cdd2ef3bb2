// GFLOP/s of our SGEMM (csrc/cpu/sgemm.cpp, AVX-512 or AVX2: cpu_isa.h) on the shapes of an RNN, with
// the packed weight hot in cache (the best of 30 timed batches), checked against at::mm;
// then an LSTM forward's products laid out two ways (compare_step_layouts).
// A profiling aid for bench/README.md "What we learned"; build and run with
//   make sgemm-microbench THREADS=1
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cpu/cpu_isa.h"
#include "cpu/sgemm.h"

using namespace fused_rnn::sgemm;

// Seconds of the fastest of 30 runs of fn (the best of 30 timed batches).
template <class Fn>
double best_seconds(Fn&& fn) {
  double best = 1e30;
  for (int round = 0; round < 30; ++round) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

// An LSTM forward's products for T steps of M rows, two ways: the input projection of all
// steps as one GEMM, then per step h W_hh^T added onto it (what the forward does); or per
// step one GEMM over [x_t, h] with K = I + H against [W_ih, W_hh] (the "one GEMM per step"
// idea of bench/README.md). Packing included, h held fixed (only the products are timed).
void compare_step_layouts(int M, int I, int H) {
  const int T = 200, N = 4 * H;
  const at::Tensor x = at::randn({T * M, I}), h = at::randn({M, H}), w_ih = at::randn({N, I}),
                   w_hh = at::randn({N, H}), w_cat = at::cat({w_ih, w_hh}, 1);
  at::Tensor gates = at::empty({T * M, N}), xh = at::cat({x.narrow(0, 0, M), h}, 1).contiguous();
  const double separate = best_seconds([&] {
    const PackedMatrix packed_ih = pack(w_ih.data_ptr<float>(), 1, I, I, N);
    const PackedMatrix packed_hh = pack(w_hh.data_ptr<float>(), 1, H, H, N);
    gemm(T * M, {x.data_ptr<float>(), I, 1}, packed_ih, false, gates.data_ptr<float>(), N);
    for (int t = 0; t < T; ++t) {
      gemm_panels(M, M, {h.data_ptr<float>(), H, 1}, &packed_hh, 1, 0, 0, packed_hh.panels(), true,
                  gates.data_ptr<float>() + int64_t(t) * M * N, N);
    }
  });
  const double fused_k = best_seconds([&] {
    const PackedMatrix packed = pack(w_cat.data_ptr<float>(), 1, I + H, I + H, N);
    for (int t = 0; t < T; ++t) {
      for (int r = 0; r < M; ++r) {
        std::memcpy(xh.data_ptr<float>() + r * (I + H), x.data_ptr<float>() + (int64_t(t) * M + r) * I,
                    I * sizeof(float));
      }
      gemm_panels(M, M, {xh.data_ptr<float>(), I + H, 1}, &packed, 1, 0, 0, packed.panels(), false,
                  gates.data_ptr<float>() + int64_t(t) * M * N, N);
    }
  });
  const double flops = 2.0 * T * M * N * (I + H);
  std::printf("T=%d M=%d I=%d H=%d LSTM products: projection + steps %.1f GFLOP/s | "
              "one K=I+H GEMM per step %.1f GFLOP/s\n",
              T, M, I, H, flops / separate / 1e9, flops / fused_k / 1e9);
}

int main(int argc, char** argv) {
  at::set_num_threads(argc > 1 ? std::atoi(argv[1]) : 1);
  // (M, K, N): per-step products, an input projection, a weight gradient's K.
  const int shapes[][3] = {{64, 256, 1024}, {6400, 256, 1024}, {32, 512, 2048}, {32, 512, 512}, {16, 64, 256},
                           {1, 128, 512},   {2, 128, 512},     {3, 256, 768},   {1024, 2048, 256},
                           {3200, 256, 64},  {1600, 2048, 512}};
  std::printf("threads %d, packed GEMM %s (%s)\n", at::get_num_threads(), available() ? "on" : "OFF",
              fused_rnn::cpu_isa_name(fused_rnn::cpu_isa()));
  for (const auto& shape : shapes) {
    const int M = shape[0], K = shape[1], N = shape[2];
    const at::Tensor a = at::randn({M, K}), w = at::randn({N, K});
    at::Tensor c = at::empty({M, N});
    const PackedMatrix packed = pack(w.data_ptr<float>(), 1, K, K, N);
    const long reps = std::max(1L, 200000000L / (2L * M * N * K));
    // gemm: a whole-sequence product; gemm_panels: a time step's product (one thread).
    for (const bool per_step : {false, true}) {
      const double best = best_seconds([&] {
        for (long r = 0; r < reps; ++r) {
          if (per_step) {
            gemm_panels(M, M, {a.data_ptr<float>(), K, 1}, &packed, 1, 0, 0, packed.panels(), false,
                        c.data_ptr<float>(), N);
          } else {
            gemm(M, {a.data_ptr<float>(), K, 1}, packed, false, c.data_ptr<float>(), N);
          }
        }
      }) / reps;
      const float error = (at::mm(a, w.t()) - c).abs().max().item<float>();
      std::printf("M=%d K=%d N=%d %-11s: %.1f GFLOP/s (max |error| vs at::mm %.2e)\n", M, K, N,
                  per_step ? "gemm_panels" : "gemm", 2.0 * M * N * K / best / 1e9, error);
    }
  }
  for (const auto& [M, I, H] : {std::array<int, 3>{8, 64, 64}, {8, 128, 128}, {32, 256, 256}, {16, 512, 512}}) {
    compare_step_layouts(M, I, H);
  }
  return 0;
}
