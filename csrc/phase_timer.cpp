// The op fused_rnn::phase_times (schema in fused_rnn.cpp) over phase_timer.h's totals.
#include "phase_timer.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace fused_rnn {
namespace {

at::Tensor take_phase_times(bool enable) {
  PhaseTotals& totals = phase_totals();
  constexpr int kPhases = static_cast<int>(Phase::kCount);
  at::Tensor result = at::empty({kPhases + 2}, at::kDouble);
  double* out = result.data_ptr<double>();
  for (int p = 0; p < kPhases; ++p) out[p] = totals.nanoseconds[p].exchange(0) / 1e3;
  out[kPhases] = static_cast<double>(totals.forward_calls.exchange(0));
  out[kPhases + 1] = static_cast<double>(totals.backward_calls.exchange(0));
  totals.enabled.store(enable);
  return result;
}

}  // namespace
}  // namespace fused_rnn

// No tensor argument selects no backend: one kernel for every dispatch key.
TORCH_LIBRARY_IMPL(fused_rnn, CompositeImplicitAutograd, m) { m.impl("phase_times", &fused_rnn::take_phase_times); }
