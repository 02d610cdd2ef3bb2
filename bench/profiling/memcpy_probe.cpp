// glibc's memcpy on this machine, by size and by where the destination sits relative to
// the source modulo 4 KB: on the Zen 3 VM (glibc 2.36), copies from 4 KB up (the `rep movsb`
// path) slowed down many times over for some placements, which is why
// pointwise_microbench.cpp keeps its saved and working buffers 2 KB apart modulo 4 KB.
// A profiling aid for bench/README.md "What we learned"; build and run with
//   make memcpy-probe
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace {

// Best time of 10 rounds of 1000 copies, in microseconds per copy.
double best_us(char* dst, const char* src, size_t bytes) {
  double best = 1e30;
  for (int round = 0; round < 10; ++round) {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) {
      std::memcpy(dst, src, bytes);
      asm volatile("" ::: "memory");  // keep every copy
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 1000);
  }
  return best * 1e6;
}

}  // namespace

int main() {
  char* base = static_cast<char*>(std::aligned_alloc(4096, 1 << 22));
  std::memset(base, 1, 1 << 22);
  char* src = base + 65536 + 16;  // 16 bytes into a cache line, as malloc's blocks are
  for (size_t bytes : {2048, 4096, 8192, 65536}) {
    std::printf("%6zu B:", bytes);
    for (long delta : {16L, 64L, 2048L}) {
      const double us = best_us(src + (1 << 20) + delta, src, bytes);
      std::printf("  dst - src = %4ld mod 4 KB: %7.3f us (%5.1f GB/s)", delta, us, bytes / us / 1e3);
    }
    std::printf("\n");
  }
  std::free(base);
  return 0;
}
