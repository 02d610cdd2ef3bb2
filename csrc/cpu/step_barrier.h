#pragma once
// A barrier for the threads of one parallel region that meet once per time step.
//
// Why not `#pragma omp barrier`: libgomp's barrier counts arrivals on one shared counter
// and releases the waiters through a second shared word, so every step pays two
// cache-line transfers between the cores on top of the state's own. Here each thread
// publishes how many steps it has finished in a cache line of its own and waits until
// every other thread's count has caught up: one transfer per waiting thread, and the
// lines the waiters read are never written by anyone but their owner.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif

namespace fused_rnn {

// The CPUs this process may run on (its affinity mask), read once. Threads that meet every
// step must each have a CPU: with more threads than CPUs a waiter holds a CPU that the
// thread it waits for needs, and every step costs time slices, not microseconds (with
// torch.set_num_threads(3) or (4) on this 2-CPU machine an LSTM (100, 1, 128, 128)
// forward+backward took 21-29 ms instead of 0.64; bench/README.md item 36).
inline int64_t usable_cpus() {
  static const int64_t cpus = [] {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return static_cast<int64_t>(std::max(1, CPU_COUNT(&set)));
#endif
    return static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency()));
  }();
  return cpus;
}

class StepBarrier {
 public:
  explicit StepBarrier(int64_t max_threads) : arrivals_(new Arrivals[max_threads]) {}

  // Thread `id` of `threads` (the region's thread count, the same for every caller):
  // returns once every thread has called wait as many times as this one. Writes made
  // before the call are visible to every thread after it (release / acquire).
  void wait(int64_t id, int64_t threads) {
    const int64_t mine = arrivals_[id].count.load(std::memory_order_relaxed) + 1;
    arrivals_[id].count.store(mine, std::memory_order_release);
    for (int64_t other = 0; other < threads; ++other) {
      // Spin a few microseconds, then yield: with more threads than free cores a waiter
      // that keeps its core would stall the very thread it waits for.
      int spins = 0;  // stops counting at the limit: a long wait must not overflow it
      while (arrivals_[other].count.load(std::memory_order_acquire) < mine) {
        if (spins < kSpinsBeforeYield) {
          ++spins;
          pause();
        } else {
          std::this_thread::yield();
        }
      }
    }
  }

 private:
  static constexpr int kSpinsBeforeYield = 4096;

  static void pause() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#endif
  }

  // One cache line (and its adjacent-line prefetch pair) per thread.
  struct alignas(128) Arrivals {
    std::atomic<int64_t> count{0};
  };
  std::unique_ptr<Arrivals[]> arrivals_;
};

}  // namespace fused_rnn
