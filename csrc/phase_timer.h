#pragma once
// Wall-clock time of the phases of the layer ops (sequence_loop.h), summed over calls while
// enabled: a profiling aid that bench/profiling/phase_times.py reads through the op
// fused_rnn::phase_times. It times the C++ work of each call apart from Python, autograd and
// the interleaving noise of a whole benchmark row, so that an A/B of a kernel change can
// look at the phase it changes. Disabled (the default), a call reads one relaxed atomic.
#include <atomic>
#include <chrono>
#include <cstdint>

namespace fused_rnn {

enum class Phase : int {
  kForwardSetup,        // checks, allocations, weight packing
  kForwardProjection,   // the input projection (every chunk of it)
  kForwardLoop,         // the time loop: recurrent products and pointwise steps
  kBackwardSetup,
  kBackwardLoop,
  kBackwardInputGrad,   // dgates W_ih
  kBackwardWeightGrads, // dgates^T x and dgates^T h_prev
  kBackwardBiasGrads,   // the column sums of dgates (and the projection's gradient)
  kCount
};

struct PhaseTotals {
  std::atomic<bool> enabled{false};
  std::atomic<int64_t> nanoseconds[static_cast<int>(Phase::kCount)] = {};
  std::atomic<int64_t> forward_calls{0}, backward_calls{0};
};

// The one instance of the library (an inline function's static: one per shared object).
inline PhaseTotals& phase_totals() {
  static PhaseTotals totals;
  return totals;
}

// The phase boundaries of one op call: lap(p) adds the time since the previous lap (or
// since construction) to phase p.
class PhaseClock {
 public:
  PhaseClock() : on_(phase_totals().enabled.load(std::memory_order_relaxed)), last_(on_ ? now() : 0) {}
  void lap(Phase phase) {
    if (!on_) return;
    const int64_t t = now();
    phase_totals().nanoseconds[static_cast<int>(phase)] += t - last_;
    last_ = t;
  }
  bool on() const { return on_; }

 private:
  static int64_t now() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  bool on_;
  int64_t last_;
};

}  // namespace fused_rnn
