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
#include <cstdlib>
#include <string>
#include <vector>
#include "cpu/sgemm.h"
#define sgemm sgemm_alt
#include "sgemm_alt.h"  // a copy of cpu/sgemm.h (its #pragma once blocks a second include)
#undef sgemm
namespace A = fused_rnn::sgemm;
namespace B = fused_rnn::sgemm_alt;
// B (K, N) as the op's mm gives it to gemm: read in place up to 128 columns, else packed
// (cpu_backend.h, rhs_operand).
template <class Matrix, class Pack, class InPlace>
Matrix rhs(const float* b, int64_t K, int64_t N, Pack pack, InPlace in_place) {
  return N % 32 == 0 && N <= 128 ? in_place(b, N, K, N) : pack(b, N, 1, K, N);
}

// Whole-sequence products on every thread (`sgemm_variant_ab whole THREADS`), each also
// through at::mm (MKL) on the operands the op has: the input projection (B = W_ih^T packed),
// the input gradient (B = W_ih packed from its rows along n) and the weight gradients
// (gemm_transposed_a of the gate gradients d, a row per token; MKL reads d^T as a view).
void whole_sequence_products(int threads) {
  at::set_num_threads(threads);
  struct Shape {
    const char* what;
    int M, K, N;
  };
  const Shape shapes[] = {
      {"projection", 1600, 512, 2048},       {"input grad", 1600, 2048, 512},       {"input grad", 6400, 1024, 256},
      {"lstm weight grad", 2048, 1600, 512}, {"lstm weight grad", 1024, 6400, 256}, {"lstm weight grad", 256, 3200, 64},
      {"lstm weight grad", 512, 100, 128},   {"gru weight grad", 1536, 1600, 512},  {"gru weight grad", 768, 6400, 256},
      {"gru weight grad", 192, 3200, 64},    {"gru weight grad", 384, 100, 128}};
  constexpr int kRounds = 12;
  for (const Shape& sh : shapes) {
    const int M = sh.M, K = sh.K, N = sh.N;
    const bool weight_grad = std::string(sh.what).find("weight grad") != std::string::npos;
    // a: A (M, K) row-major, or for a weight gradient d (K, M), a row per token.
    const at::Tensor a = weight_grad ? at::randn({K, M}) : at::randn({M, K}), b = at::randn({K, N});
    at::Tensor c = at::empty({M, N});
    const float* bp = b.data_ptr<float>();
    std::vector<double> seconds[3];
    for (int round = 0; round < kRounds; ++round) {
      for (int v = 0; v < 3; ++v) {
        auto s = std::chrono::steady_clock::now();
        if (v == 2) {
          at::mm_out(c, weight_grad ? a.t() : a, b);
        } else if (weight_grad && v == 0) {
          A::gemm_transposed_a(M, K, a.data_ptr<float>(), M, [&](int64_t k0, int64_t rows) {
            return rhs<A::PackedMatrix>(bp + k0 * N, rows, N, A::pack, A::in_place);
          }, false, c.data_ptr<float>(), N);
        } else if (weight_grad) {
          B::gemm_transposed_a(M, K, a.data_ptr<float>(), M, [&](int64_t k0, int64_t rows) {
            return rhs<B::PackedMatrix>(bp + k0 * N, rows, N, B::pack, B::in_place);
          }, false, c.data_ptr<float>(), N);
        } else if (v == 0) {
          A::gemm(M, {a.data_ptr<float>(), K, 1}, A::pack(bp, N, 1, K, N), false, c.data_ptr<float>(), N);
        } else {
          B::gemm(M, {a.data_ptr<float>(), K, 1}, B::pack(bp, N, 1, K, N), false, c.data_ptr<float>(), N);
        }
        seconds[v].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count());
      }
    }
    for (auto& x : seconds) std::sort(x.begin(), x.end());
    const double flop = 2.0 * M * N * K;
    std::printf("%s M=%d K=%d N=%d, %d threads: A %.1f | B %.1f | MKL %.1f GFLOP/s (medians of %d)\n", sh.what, M, K,
                N, threads, flop / seconds[0][kRounds / 2] / 1e9, flop / seconds[1][kRounds / 2] / 1e9,
                flop / seconds[2][kRounds / 2] / 1e9, kRounds);
  }
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "whole") {
    whole_sequence_products(argc > 2 ? std::atoi(argv[2]) : 2);
    return 0;
  }
  at::set_num_threads(1);
  // (M, K, N): per-step products of the row split (8-16 rows a thread), larger steps, and
  // whole-sequence products.
  const int shapes[][3] = {{8, 64, 64},    {7, 64, 256},    {8, 64, 256},      {9, 64, 256},
                           {8, 128, 256},  {10, 64, 256},   {13, 64, 256},     {14, 128, 512},
                           {16, 64, 256},  {6, 128, 512},
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
