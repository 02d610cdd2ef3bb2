#pragma once
// The time loop of one layer in one direction, written once for every cell (cell_math.h)
// and every device. A Backend supplies the per-step primitives:
//   kProjectionChunkBytes                             workspace bytes per chunk of input projection
//                                                     when no workspace is kept (inference)
//   scratch(sizes, options)                           an uninitialised temporary that never
//                                                     leaves the op call (CPU: a pooled buffer)
//   prepare_weight<T>(W, rows, cols, transpose, use)  W (rows, cols) as GEMM operand op(W) =
//                                                     W^T or W, prepared once per call for its
//                                                     WeightUse (weight_use.h)
//   gemm_weight<T>(M, A, lda, weight, beta, C, ldc, bias = nullptr)
//                                                     row-major C(M, N) = A op(W) + beta C, beta
//                                                     0/1; with beta 0 a bias (N,) may be added
//   mm(a, b), mm_add(c, a, b)                         a whole-sequence product, once per call;
//                                                     c += a b
//   prepare_recurrent_weight<T>(W_hh, G, H, P, use), recurrent_step<Cell, T>(...)
//                                                     one step: recurrent GEMM + pointwise step
//   run_recurrent_loop, run_recurrent_backward_loop   optionally, a whole time loop at once
//   projects_in_loop<T>(row_steps, N, w_ih, w_hh, H, P, projected)
//                                                     inference: whether run_recurrent_loop,
//                                                     given w_ih and the bias, projects each
//                                                     step's input rows itself
//                                                     (RecurrentStep::input)
//   copy_rows<T>(dst, dst_ld, src, src_ld, rows, cols)
//   add_rows<T>(dst, a, a_ld, b, b_ld, rows, cols)      dst contiguous (rows, cols)
//   forward_step<Cell, T>(ForwardStep, rows, H) / backward_step<Cell, T>(BackwardStep, rows, H)
// Inside the loop there is no allocation and no dispatcher call: only raw BLAS and the
// fused pointwise step. Whole-sequence GEMMs (input projection, weight gradients) run once
// per call (the input projection once per chunk when no workspace is kept).
#include <ATen/ATen.h>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cell_math.h"
#include "phase_timer.h"
#include "weight_use.h"

namespace fused_rnn {

// Tensors of one layer and direction (shapes.h). Optional ones are undefined tensors.
struct LayerArgs {
  at::Tensor input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr;
  std::vector<int64_t> batch_sizes;
  bool reverse = false;
  // false: no backward will follow (inference), so the forward returns an empty workspace
  // and keeps only a chunk of steps' pre-activations at a time (see layer_forward).
  bool keep_workspace = true;
};

struct LayerForwardResult {
  at::Tensor output, h_n, c_n, workspace;
};

struct LayerBackwardResult {
  at::Tensor grad_input, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr;
};

// Row offset of every time step in the packed layout, and the processing order.
struct StepPlan {
  std::vector<int64_t> batch, offset;
  bool reverse;
  int64_t steps() const { return static_cast<int64_t>(batch.size()); }
  // Time index of the s-th step processed: the reverse direction walks t = T-1 .. 0.
  int64_t time_of(int64_t s) const { return reverse ? steps() - 1 - s : s; }

  StepPlan(const std::vector<int64_t>& batch_sizes, bool reverse_)
      : batch(batch_sizes), offset(batch_sizes.size()), reverse(reverse_) {
    int64_t row = 0;
    for (size_t t = 0; t < batch.size(); ++t) {
      offset[t] = row;
      row += batch[t];
    }
  }
};

// One forward time step as pointers: `rows` active rows; target(rows, G*H) (+)= h_prev
// W_hh^T (accumulate: onto the input projection), then the pointwise `step`, which writes
// h into `output` (rows, P) (or into the projection's input).
template <typename T>
struct RecurrentStep {
  int64_t rows;
  ForwardStep<T> step;
  T* target;
  int64_t target_ld;
  bool accumulate;
  T* output;
  const T* input;  // (rows, I) the step's input rows, for a loop that projects them itself
};

// A copy of the contiguous tensor t, and the sum of two contiguous tensors of one shape,
// through the Backend's copy_rows / add_rows rather than Tensor::clone and operator+,
// whose dispatcher and TensorIterator cost more than the arithmetic at small sizes (the
// state copies h_n, c_n, grad_h0, grad_c0, the bias fold b_ih + b_hh). [ab_in_process, a
// temporary switch, 20 rounds, Zen 3, B/A, two runs forward] forward at T = 1, H = 128,
// N = 1: LSTM 0.90-0.92, GRU 0.89-0.96, RNN-tanh 0.85-0.86; N = 16: 0.91-1.02; (100, 1,
// 128, 128): 0.95-0.99; (200, 16, 64, 64) 0.96-1.00; fwd+bwd at T = 1, N = 1: 0.95-0.97,
// N = 16: 0.96-1.00, (100, 1, 128, 128): 0.98 (B faster in 8-20 of 20 rounds).
template <class Backend, typename T>
at::Tensor copy_of(const at::Tensor& t) {
  TORCH_INTERNAL_ASSERT(t.is_contiguous(), "copy_of: the tensor must be contiguous");
  at::Tensor copy = at::empty(t.sizes(), t.options());
  Backend::template copy_rows<T>(copy.template data_ptr<T>(), t.numel(), t.template data_ptr<T>(), t.numel(), 1,
                                 t.numel());
  return copy;
}

template <class Backend, typename T>
at::Tensor sum_of(const at::Tensor& a, const at::Tensor& b) {
  TORCH_INTERNAL_ASSERT(a.is_contiguous() && b.is_contiguous() && a.sizes() == b.sizes(), "sum_of: operands");
  at::Tensor sum = at::empty(a.sizes(), a.options());
  Backend::template add_rows<T>(sum.template data_ptr<T>(), a.template data_ptr<T>(), a.numel(),
                                b.template data_ptr<T>(), b.numel(), 1, a.numel());
  return sum;
}

template <class Backend, class Cell, typename T>
LayerForwardResult layer_forward(const LayerArgs& a) {
  const int64_t G = Cell::kGates;
  const int64_t H = a.w_ih.size(0) / G;
  const int64_t GH = G * H;
  const int64_t WH = Cell::kWorkspace * H;
  const int64_t P = a.h0.size(1);
  const int64_t R = a.input.size(0);
  const int64_t I = a.input.size(1);
  const bool projected = a.w_hr.defined();
  const StepPlan plan(a.batch_sizes, a.reverse);

  PhaseClock clock;
  const int64_t N = a.h0.size(0);
  // The input projection's bias. LSTM and RNN fold b_hh in here too; GRU adds b_hh inside
  // the step because r multiplies it.
  at::Tensor bias;
  if (a.b_ih.defined()) {
    bias = (Cell::kHiddenGatesApart || !a.b_hh.defined()) ? a.b_ih : sum_of<Backend, T>(a.b_ih, a.b_hh);
  }
  const T* bias_data = bias.defined() ? bias.template data_ptr<T>() : nullptr;
  const WeightUse use{plan.steps(), R};
  const auto w_ih = Backend::template prepare_weight<T>(a.w_ih.template data_ptr<T>(), GH, I, true, use);
  const auto w_hh = Backend::template prepare_recurrent_weight<T>(a.w_hh.template data_ptr<T>(), G, H, P, use);
  const bool in_loop =
      !a.keep_workspace && Backend::template projects_in_loop<T>(R, N, w_ih, w_hh, H, P, projected);

  // Without a kept workspace, the input projection runs chunk by chunk into a buffer of
  // one chunk, each chunk just before its steps: a long sequence's whole workspace is
  // tens of MB, which the allocator maps fresh on every call, and the page faults of that
  // first touch cost as much as a third of the call (LSTM T=200, N=64, H=256, perf). With
  // a kept workspace (training) there is one chunk, the whole sequence; where the loop
  // projects each step itself (inference, projects_in_loop), one step's rows.
  LayerForwardResult out;
  const int64_t projection_chunk_rows = Backend::kProjectionChunkBytes / std::max<int64_t>(1, WH * sizeof(T));
  const int64_t chunk_rows = a.keep_workspace ? R
                             : in_loop        ? std::min(R, N)
                                              : std::min(R, std::max(N, projection_chunk_rows));
  out.workspace = at::empty({a.keep_workspace ? R : 0, WH}, a.input.options());
  const at::Tensor chunk_buffer =
      a.keep_workspace ? out.workspace : Backend::scratch({chunk_rows, WH}, a.input.options());
  out.output = at::empty({R, P}, a.input.options());
  // the state buffer: rows stop changing when their sequence ends
  out.h_n = copy_of<Backend, T>(a.h0);
  if (Cell::kHasCellState) out.c_n = copy_of<Backend, T>(a.c0);

  at::Tensor hidden_gates, h_unprojected;
  if (Cell::kHiddenGatesApart) hidden_gates = Backend::scratch({N, GH}, a.input.options());
  if (projected) h_unprojected = Backend::scratch({N, H}, a.input.options());

  T* ws = chunk_buffer.template data_ptr<T>();
  int64_t ws_first_row = 0;  // the packed row whose workspace row is ws[0]
  T* output = out.output.template data_ptr<T>();
  T* h_state = out.h_n.template data_ptr<T>();
  T* c_state = Cell::kHasCellState ? out.c_n.template data_ptr<T>() : nullptr;
  const auto w_hr = Backend::template prepare_weight<T>(projected ? a.w_hr.template data_ptr<T>() : nullptr,
                                                        projected ? P : 0, H, true, use);
  T* hidden = Cell::kHiddenGatesApart ? hidden_gates.template data_ptr<T>() : nullptr;
  const at::Tensor b_hh = Cell::kHiddenGatesApart && !a.b_hh.defined() ? at::zeros({GH}, a.input.options()) : a.b_hh;
  T* h_pre = projected ? h_unprojected.template data_ptr<T>() : nullptr;
  const T* input = a.input.template data_ptr<T>();

  // Everything one step needs, as pointers; a pure function of s.
  auto step_at = [&](int64_t s) {
    const int64_t t = plan.time_of(s);
    RecurrentStep<T> spec{};
    spec.rows = plan.batch[t];
    // Inference projecting in the loop reuses one step's rows (ws_first_row stays 0 then).
    T* ws_t = ws + (in_loop && !a.keep_workspace ? 0 : plan.offset[t] - ws_first_row) * WH;
    spec.input = input + plan.offset[t] * I;
    spec.output = output + plan.offset[t] * P;
    spec.step.ws = ws_t;
    spec.step.ws_ld = WH;
    spec.step.hidden_gates = hidden;
    spec.step.b_hh = Cell::kHiddenGatesApart ? b_hh.template data_ptr<T>() : nullptr;
    spec.step.h_prev = h_state;
    spec.step.c_state = c_state;
    // The step writes h only to the step's output rows, never to h_state: on the CPU the
    // recurrent GEMM of other hidden units may still be reading h_state (the units are
    // split over threads). h_state is updated from the output after the step.
    spec.step.h_out = projected ? h_pre : spec.output;
    spec.step.h_out_ld = projected ? H : P;
    // GRU's recurrent product goes to its own buffer (r multiplies it); LSTM's and RNN's
    // accumulate onto the input projection in the workspace.
    spec.target = Cell::kHiddenGatesApart ? hidden : ws_t;
    spec.target_ld = Cell::kHiddenGatesApart ? GH : WH;
    spec.accumulate = !Cell::kHiddenGatesApart;
    return spec;
  };
  if (in_loop) {
    clock.lap(Phase::kForwardSetup);
    const bool ran = Backend::template run_recurrent_loop<Cell, T>(plan.steps(), w_hh, h_state, H, P, N, projected,
                                                                   step_at, &w_ih, bias_data);
    TORCH_INTERNAL_ASSERT(ran, "layer_forward: the loop that projects its input did not run");
  }
  // Chunks of whole steps, at most chunk_rows rows each (chunk_rows >= N, so every step
  // fits). A chunk's steps are one contiguous range of times, hence of packed rows, in
  // either direction.
  for (int64_t s0 = 0; s0 < plan.steps() && !in_loop;) {
    int64_t s1 = s0, rows = 0;
    while (s1 < plan.steps() && rows + plan.batch[plan.time_of(s1)] <= chunk_rows) {
      rows += plan.batch[plan.time_of(s1++)];
    }
    TORCH_INTERNAL_ASSERT(s1 > s0, "a step has more rows than a projection chunk");
    ws_first_row = plan.offset[std::min(plan.time_of(s0), plan.time_of(s1 - 1))];
    clock.lap(s0 == 0 ? Phase::kForwardSetup : Phase::kForwardLoop);
    // The input projection of the chunk, bias included.
    Backend::template gemm_weight<T>(rows, a.input.template data_ptr<T>() + ws_first_row * I, I, w_ih, 0, ws, WH,
                                     bias_data);
    clock.lap(Phase::kForwardProjection);
    auto chunk_step_at = [&, s0](int64_t s) { return step_at(s0 + s); };
    if (!Backend::template run_recurrent_loop<Cell, T>(s1 - s0, w_hh, h_state, H, P, N, projected, chunk_step_at)) {
      for (int64_t s = s0; s < s1; ++s) {
        const RecurrentStep<T> spec = step_at(s);
        if (spec.rows == 0) continue;
        Backend::template recurrent_step<Cell, T>(spec.rows, h_state, P, w_hh, spec.target, spec.target_ld,
                                                  spec.accumulate, spec.step, H);
        if (projected) Backend::template gemm_weight<T>(spec.rows, h_pre, H, w_hr, 0, spec.output, P);
        Backend::template copy_rows<T>(h_state, P, spec.output, P, spec.rows, P);
      }
    }
    s0 = s1;
  }
  clock.lap(Phase::kForwardLoop);
  if (clock.on()) ++phase_totals().forward_calls;
  return out;
}

// The gate gradients summed over all rows, i.e. the bias gradients: gates (G*H) for
// dgates and, for GRU, hidden_gates (G*H) for dgates_hidden. A backend's backward loop may
// compute them on the fly and set `filled`; otherwise layer_backward sums the gradients
// after the loop.
template <typename T>
struct GateGradientSums {
  T* gates;
  T* hidden_gates;
  bool filled = false;
};

// One backward time step as pointers: the pointwise `step` over `rows` rows, then
// dh_state(rows, P) (+)= dgates_hidden W_hh (accumulate: onto GRU's direct term).
template <typename T>
struct RecurrentBackwardStep {
  int64_t rows;
  BackwardStep<T> step;
  bool accumulate;
};

// For every row of the packed sequence, the state it started its step from: the same row
// of the previously processed step where that step had the row, else the initial state.
template <class Backend, typename T>
void gather_previous_states(const StepPlan& plan, const T* per_step, int64_t per_step_ld,
                            const T* initial, int64_t cols, T* prev) {
  for (int64_t s = 0; s < plan.steps(); ++s) {
    const int64_t t = plan.time_of(s);
    const int64_t b = plan.batch[t];
    T* dst = prev + plan.offset[t] * cols;
    int64_t carried = 0;
    if (s > 0) {
      const int64_t tp = plan.time_of(s - 1);
      carried = std::min(b, plan.batch[tp]);
      Backend::template copy_rows<T>(dst, cols, per_step + plan.offset[tp] * per_step_ld,
                                     per_step_ld, carried, cols);
    }
    Backend::template copy_rows<T>(dst + carried * cols, cols, initial + carried * cols, cols,
                                   b - carried, cols);
  }
}

template <class Backend, class Cell, typename T>
LayerBackwardResult layer_backward(const LayerArgs& a, const at::Tensor& grad_output,
                                   const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
                                   const at::Tensor& output, const at::Tensor& workspace) {
  const int64_t G = Cell::kGates;
  const int64_t H = a.w_ih.size(0) / G;
  const int64_t GH = G * H;
  const int64_t WH = Cell::kWorkspace * H;
  const int64_t P = a.h0.size(1);
  const int64_t R = a.input.size(0);
  const bool projected = a.w_hr.defined();
  const StepPlan plan(a.batch_sizes, a.reverse);
  const auto opts = a.input.options();

  // With the same batch at every step (no packed sequence), the states a step started from
  // are the previous step's, row for row (the initial ones at the first step), so they are
  // read in place: c from the workspace, h from the output. That saves gathering two
  // copies of the size of the output per call, which cost 3% of an LSTM (200, 16, 64, 64)
  // backward and add to its cache footprint. Packed sequences, whose steps lose rows,
  // gather them (gather_previous_states).
  PhaseClock clock;
  const bool same_batch = plan.steps() > 0 && std::all_of(plan.batch.begin(), plan.batch.end(),
                                                          [&](int64_t b) { return b == plan.batch[0]; });
  at::Tensor dgates = Backend::scratch({R, GH}, opts);
  at::Tensor dgates_hidden = Cell::kHiddenGatesApart ? Backend::scratch({R, GH}, opts) : dgates;
  at::Tensor h_prev_all = same_batch ? at::Tensor() : Backend::scratch({R, P}, opts);
  at::Tensor c_prev_all = Cell::kHasCellState && !same_batch ? Backend::scratch({R, H}, opts) : at::Tensor();
  at::Tensor dh_all = projected ? Backend::scratch({R, P}, opts) : at::Tensor();
  at::Tensor dh_unprojected = projected ? Backend::scratch({a.h0.size(0), H}, opts) : at::Tensor();
  const at::Tensor zero_row = projected ? at::zeros({H}, opts) : at::Tensor();

  const T* ws = workspace.template data_ptr<T>();
  const T* out = output.template data_ptr<T>();
  if (!same_batch) {
    gather_previous_states<Backend, T>(plan, out, P, a.h0.template data_ptr<T>(), P,
                                       h_prev_all.template data_ptr<T>());
    if (Cell::kHasCellState) {
      gather_previous_states<Backend, T>(plan, ws + 4 * H, WH, a.c0.template data_ptr<T>(), H,
                                         c_prev_all.template data_ptr<T>());
    }
  }

  LayerBackwardResult g;
  g.grad_h0 = copy_of<Backend, T>(grad_h_n);  // running dL/dh of the state, per row
  if (Cell::kHasCellState) g.grad_c0 = copy_of<Backend, T>(grad_c_n);
  T* dh_state = g.grad_h0.template data_ptr<T>();
  T* dc_state = Cell::kHasCellState ? g.grad_c0.template data_ptr<T>() : nullptr;
  const T* grad_out = grad_output.template data_ptr<T>();
  const WeightUse use{plan.steps(), R};
  const auto w_hh = Backend::template prepare_weight<T>(a.w_hh.template data_ptr<T>(), GH, P, false, use);
  const auto w_hr = Backend::template prepare_weight<T>(projected ? a.w_hr.template data_ptr<T>() : nullptr,
                                                        projected ? P : 0, H, false, use);

  // Everything one backward step needs, as pointers; a pure function of s (the projected
  // LSTM's dh rows are computed in the per-step loop below, not here).
  auto step_at = [&](int64_t s) {
    const int64_t t = plan.time_of(s);
    const int64_t off = plan.offset[t];
    RecurrentBackwardStep<T> spec{};
    spec.rows = plan.batch[t];
    spec.step.ws = ws + off * WH;
    spec.step.ws_ld = WH;
    if (same_batch) {
      const int64_t prev_off = s > 0 ? plan.offset[plan.time_of(s - 1)] : 0;
      spec.step.h_prev = s > 0 ? out + prev_off * P : a.h0.template data_ptr<T>();
      if (Cell::kHasCellState) {
        spec.step.c_prev = s > 0 ? ws + prev_off * WH + 4 * H : a.c0.template data_ptr<T>();
        spec.step.c_prev_ld = s > 0 ? WH : H;
      }
    } else {
      spec.step.h_prev = h_prev_all.template data_ptr<T>() + off * P;
      if (Cell::kHasCellState) {
        spec.step.c_prev = c_prev_all.template data_ptr<T>() + off * H;
        spec.step.c_prev_ld = H;
      }
    }
    spec.step.dh = projected ? dh_unprojected.template data_ptr<T>() : dh_state;
    spec.step.dh_ld = projected ? H : P;
    spec.step.dh_extra = projected ? zero_row.template data_ptr<T>() : grad_out + off * P;
    spec.step.dh_extra_ld = projected ? 0 : P;
    spec.step.dc = dc_state;
    spec.step.dgates = dgates.template data_ptr<T>() + off * GH;
    spec.step.dgates_ld = GH;
    spec.step.dgates_hidden = dgates_hidden.template data_ptr<T>() + off * GH;
    spec.step.dh_prev_direct = dh_state;  // GRU: written before the GEMM accumulates on it
    spec.accumulate = Cell::kHiddenGatesApart;
    return spec;
  };
  at::Tensor bias_grad = at::empty({GH}, opts);
  at::Tensor hidden_bias_grad = Cell::kHiddenGatesApart ? at::empty({GH}, opts) : at::Tensor();
  GateGradientSums<T> sums{bias_grad.template data_ptr<T>(),
                           Cell::kHiddenGatesApart ? hidden_bias_grad.template data_ptr<T>() : nullptr};
  clock.lap(Phase::kBackwardSetup);
  if (!Backend::template run_recurrent_backward_loop<Cell, T>(plan.steps(), w_hh, dh_state, H, P, a.h0.size(0),
                                                               projected, step_at, &sums)) {
    for (int64_t s = plan.steps() - 1; s >= 0; --s) {
      const RecurrentBackwardStep<T> spec = step_at(s);
      if (spec.rows == 0) continue;
      if (projected) {
        const int64_t off = plan.offset[plan.time_of(s)];
        T* dh_t = dh_all.template data_ptr<T>() + off * P;
        Backend::template add_rows<T>(dh_t, dh_state, P, grad_out + off * P, P, spec.rows, P);
        Backend::template gemm_weight<T>(spec.rows, dh_t, P, w_hr, 0, dh_unprojected.template data_ptr<T>(), H);
      }
      Backend::template backward_step<Cell, T>(spec.step, spec.rows, H);
      Backend::template gemm_weight<T>(spec.rows, spec.step.dgates_hidden, GH, w_hh, spec.accumulate ? 1 : 0,
                                       dh_state, P);
    }
  }

  clock.lap(Phase::kBackwardLoop);
  // Whole-sequence products, once per call.
  g.grad_input = Backend::mm(dgates, a.w_ih);
  clock.lap(Phase::kBackwardInputGrad);
  g.grad_w_ih = Backend::mm(dgates.t(), a.input);
  if (same_batch) {
    // Rows of the steps after the first times the output rows they started from (shifted
    // by one step), plus the first step's rows times the initial state.
    const int64_t N = plan.batch[0], later = R - N;
    g.grad_w_hh = Backend::mm(dgates_hidden.narrow(0, a.reverse ? 0 : N, later).t(),
                              output.narrow(0, a.reverse ? N : 0, later));
    Backend::mm_add(g.grad_w_hh, dgates_hidden.narrow(0, a.reverse ? later : 0, N).t(), a.h0);
  } else {
    g.grad_w_hh = Backend::mm(dgates_hidden.t(), h_prev_all);
  }
  clock.lap(Phase::kBackwardWeightGrads);
  g.grad_b_ih = sums.filled ? bias_grad : dgates.sum(0);
  if (Cell::kHiddenGatesApart) {
    g.grad_b_hh = sums.filled ? hidden_bias_grad : dgates_hidden.sum(0);
  } else {
    g.grad_b_hh = copy_of<Backend, T>(g.grad_b_ih);
  }
  clock.lap(Phase::kBackwardBiasGrads);
  if (projected) {
    const at::Tensor o = workspace.narrow(1, 3 * H, H);
    const at::Tensor c = workspace.narrow(1, 4 * H, H);
    g.grad_w_hr = Backend::mm(dh_all.t(), o * at::tanh(c));
    clock.lap(Phase::kBackwardWeightGrads);
  }
  if (clock.on()) ++phase_totals().backward_calls;
  return g;
}

}  // namespace fused_rnn
