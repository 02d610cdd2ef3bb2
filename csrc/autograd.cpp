// The autograd formula of the three *_forward ops, registered as their Autograd kernel:
// a torch::autograd::Function whose backward calls the matching *_backward op. The one
// formula serves eager calls, torch.compile and torch.export (AOTAutograd traces through
// this kernel; the ops below it have fake kernels in fused_rnn/ops.py) and opcheck.
//
// Why in C++: a Python autograd.Function costs its own Python frames in the forward (the
// ctx, save_for_backward) and in the backward (unpacking the saved tensors, calling the
// backward op through torch.ops, which parses its 13 arguments against the schema), and
// all of it runs cold when the ops in between have filled the caches (bench/README.md,
// items 35 and 37). Here that is a few C++ calls.
//
// A backward that must itself be differentiable (create_graph=True) cannot use the fused
// backward ops, which have no derivative: it calls fused_rnn.reference.layer_grads, which
// recomputes the layer with differentiable torch ops and differentiates that.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/utils/pybind.h>
#include <torch/library.h>

#include <array>
#include <tuple>

namespace fused_rnn {
namespace {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

enum class Kind : int64_t { kLstm = 0, kGru = 1, kRnn = 2 };
constexpr std::array<const char*, 3> kKindNames = {"lstm", "gru", "rnn"};

// The typed handle of op fused_rnn::`name` (looked up once per signature and name).
template <class Signature>
c10::TypedOperatorHandle<Signature> op_handle(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

using LstmForwardOp = std::tuple<Tensor, Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                                  const Tensor&, const Tensor&, const Tensor&,
                                                                  const OptTensor&, const OptTensor&,
                                                                  const OptTensor&, bool, bool);
using GruForwardOp = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                                         const Tensor&, const OptTensor&, const OptTensor&, bool, bool);
using RnnForwardOp = std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                                         const Tensor&, const OptTensor&, const OptTensor&, bool, bool,
                                                         bool);
using LstmBackwardOp = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const Tensor&, const Tensor&, const OptTensor&, const Tensor&, const Tensor&, bool);
using GruBackwardOp = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const Tensor&, const Tensor&, bool);
using RnnBackwardOp = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>(
    const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
    const Tensor&, const Tensor&, bool, bool);

Tensor or_undefined(const OptTensor& t) { return t.has_value() ? *t : Tensor(); }
OptTensor or_nullopt(const Tensor& t) { return t.defined() ? OptTensor(t) : OptTensor(); }
// Unused output gradients arrive undefined (materialize_grads is off, so that autograd
// does not fill a zero gradient of the workspace's size on every backward); the backward
// ops take zeros.
Tensor or_zeros(const Tensor& grad, const Tensor& like) { return grad.defined() ? grad : at::zeros_like(like); }

// Positions of LayerFunction::forward's arguments after ctx; backward returns one gradient
// per argument in this order (undefined where there is none).
enum Arg { kKind, kInput, kBatchSizes, kH0, kC0, kWih, kWhh, kBih, kBhh, kWhr, kRelu, kReverse, kKeep, kArgs };
constexpr std::array<Arg, 8> kDifferentiable = {kInput, kH0, kC0, kWih, kWhh, kBih, kBhh, kWhr};

// The op of `kind` below autograd: (output, h_n, [c_n,] workspace).
variable_list forward_below_autograd(Kind kind, const Tensor& input, const Tensor& batch_sizes, const Tensor& h0,
                                     const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                                     const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr, bool relu,
                                     bool reverse, bool keep_workspace) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  if (kind == Kind::kLstm) {
    static const auto op = op_handle<LstmForwardOp>("fused_rnn::lstm_forward");
    auto [output, h_n, c_n, workspace] =
        op.call(input, batch_sizes, h0, *c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, keep_workspace);
    return {output, h_n, c_n, workspace};
  }
  if (kind == Kind::kGru) {
    static const auto op = op_handle<GruForwardOp>("fused_rnn::gru_forward");
    auto [output, h_n, workspace] = op.call(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse, keep_workspace);
    return {output, h_n, workspace};
  }
  static const auto op = op_handle<RnnForwardOp>("fused_rnn::rnn_forward");
  auto [output, h_n, workspace] =
      op.call(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, keep_workspace);
  return {output, h_n, workspace};
}

// One layer of any kind, in one direction. Absent tensors (c0 and w_hr outside LSTM, the
// biases of a module without them) are nullopt; relu is read by RNN only.
struct LayerFunction : torch::autograd::Function<LayerFunction> {
  static variable_list forward(AutogradContext* ctx, int64_t kind, const Tensor& input, const Tensor& batch_sizes,
                               const Tensor& h0, const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                               const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr, bool relu,
                               bool reverse, bool keep_workspace) {
    const variable_list outputs = forward_below_autograd(static_cast<Kind>(kind), input, batch_sizes, h0, c0, w_ih,
                                                         w_hh, b_ih, b_hh, w_hr, relu, reverse, keep_workspace);
    const Tensor &output = outputs[0], &h_n = outputs[1], &workspace = outputs.back();
    ctx->mark_non_differentiable({workspace});
    ctx->set_materialize_grads(false);
    // With one full step (a Cell) the output equals h_n, which the caller keeps anyway
    // while it drops the output: saving h_n keeps one copy alive, not two. Decided on
    // concrete sizes only: comparing the symbolic sizes of a torch.export / torch.compile
    // trace would specialise the trace to them.
    const bool one_step = !input.unsafeGetTensorImpl()->has_symbolic_sizes_strides() &&
                          batch_sizes.size(0) == 1 && output.size(0) == h_n.size(0);
    // A vanilla RNN's workspace is exactly its output (the activated h): keep one copy.
    const bool workspace_is_output = static_cast<Kind>(kind) == Kind::kRnn;
    ctx->save_for_backward({input, batch_sizes, h0, or_undefined(c0), w_ih, w_hh, or_undefined(b_ih),
                            or_undefined(b_hh), or_undefined(w_hr), one_step ? h_n : output,
                            workspace_is_output ? Tensor() : workspace});
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["reverse"] = reverse;
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Kind kind = static_cast<Kind>(ctx->saved_data["kind"].toInt());
    const bool relu = ctx->saved_data["relu"].toBool(), reverse = ctx->saved_data["reverse"].toBool();
    const variable_list saved = ctx->get_saved_variables();
    if (at::GradMode::is_enabled()) return differentiable_backward(ctx, kind, saved, grads, relu, reverse);
    const Tensor &input = saved[0], &batch_sizes = saved[1], &h0 = saved[2], &c0 = saved[3], &w_ih = saved[4];
    const Tensor &w_hh = saved[5], &w_hr = saved[8], &output = saved[9];
    const Tensor& workspace = saved[10].defined() ? saved[10] : output;
    const Tensor grad_output = or_zeros(grads[0], output), grad_h_n = or_zeros(grads[1], h0);
    variable_list result(kArgs);
    if (kind == Kind::kLstm) {
      static const auto op = op_handle<LstmBackwardOp>("fused_rnn::lstm_backward");
      std::tie(result[kInput], result[kH0], result[kC0], result[kWih], result[kWhh], result[kBih], result[kBhh],
               result[kWhr]) = op.call(grad_output, grad_h_n, or_zeros(grads[2], c0), input, batch_sizes, h0, c0, w_ih,
                                       w_hh, or_nullopt(w_hr), output, workspace, reverse);
    } else if (kind == Kind::kGru) {
      static const auto op = op_handle<GruBackwardOp>("fused_rnn::gru_backward");
      std::tie(result[kInput], result[kH0], result[kWih], result[kWhh], result[kBih], result[kBhh]) =
          op.call(grad_output, grad_h_n, input, batch_sizes, h0, w_ih, w_hh, output, workspace, reverse);
    } else {
      static const auto op = op_handle<RnnBackwardOp>("fused_rnn::rnn_backward");
      std::tie(result[kInput], result[kH0], result[kWih], result[kWhh], result[kBih], result[kBhh]) =
          op.call(grad_output, grad_h_n, input, batch_sizes, h0, w_ih, w_hh, output, workspace, relu, reverse);
    }
    // The ops return a gradient for every parameter slot; absent tensors get none.
    for (Arg arg : {kC0, kBih, kBhh, kWhr}) {
      if (!saved[arg - kInput].defined()) result[arg] = Tensor();
    }
    return result;
  }

 private:
  // Whether autograd wants the gradient of argument `arg`. needs_input_grad counts only the
  // tensor arguments that were given (absent optional ones have no edge).
  static bool needs_grad(AutogradContext* ctx, const variable_list& saved, Arg arg) {
    size_t edge = 0;
    for (int a = kInput; a <= kWhr; ++a) {
      if (!saved[a - kInput].defined()) continue;
      if (a == arg) return ctx->needs_input_grad(edge);
      ++edge;
    }
    return false;
  }

  // create_graph=True: fused_rnn.reference.layer_grads(kind, tensors, flags, needs, grads)
  // with tensors = (input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr) (None where
  // absent) returns the gradients of (input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr).
  static variable_list differentiable_backward(AutogradContext* ctx, Kind kind, const variable_list& saved,
                                               const variable_list& grads, bool relu, bool reverse) {
    pybind11::gil_scoped_acquire gil;
    auto as_object = [](const Tensor& t) { return t.defined() ? pybind11::cast(t) : pybind11::none(); };
    pybind11::tuple tensors(9), needs(kDifferentiable.size()), grad_objects(grads.size());
    for (size_t k = 0; k < 9; ++k) tensors[k] = as_object(saved[k]);
    for (size_t k = 0; k < kDifferentiable.size(); ++k) needs[k] = needs_grad(ctx, saved, kDifferentiable[k]);
    for (size_t k = 0; k < grads.size(); ++k) grad_objects[k] = as_object(grads[k]);
    const pybind11::object layer_grads = pybind11::module_::import("fused_rnn.reference").attr("layer_grads");
    const pybind11::list result = layer_grads(kKindNames[static_cast<int64_t>(kind)], tensors,
                                              pybind11::make_tuple(relu, reverse), needs, grad_objects);
    variable_list out(kArgs);
    for (size_t k = 0; k < kDifferentiable.size(); ++k) {
      if (!result[k].is_none()) out[kDifferentiable[k]] = result[k].cast<Tensor>();
    }
    return out;
  }
};

bool requires_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }
bool requires_grad(const OptTensor& t) { return t.has_value() && requires_grad(*t); }

// The Autograd kernel of every kind: straight below autograd where autograd records
// nothing (no_grad, or no input requires a gradient), without building a graph node; else
// through LayerFunction. Returns (output, h_n, [c_n,] workspace).
variable_list forward_autograd(Kind kind, const Tensor& input, const Tensor& batch_sizes, const Tensor& h0,
                               const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih,
                               const OptTensor& b_hh, const OptTensor& w_hr, bool relu, bool reverse,
                               bool keep_workspace) {
  const bool recorded = at::GradMode::is_enabled() &&
                        (requires_grad(input) || requires_grad(h0) || requires_grad(c0) || requires_grad(w_ih) ||
                         requires_grad(w_hh) || requires_grad(b_ih) || requires_grad(b_hh) || requires_grad(w_hr));
  if (!recorded) {
    return forward_below_autograd(kind, input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, relu, reverse,
                                  keep_workspace);
  }
  return LayerFunction::apply(static_cast<int64_t>(kind), input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                              relu, reverse, keep_workspace);
}

// The ops' signatures over forward_autograd.
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward_autograd(const Tensor& input, const Tensor& batch_sizes,
                                                                 const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                                                                 const Tensor& w_hh, const OptTensor& b_ih,
                                                                 const OptTensor& b_hh, const OptTensor& w_hr,
                                                                 bool reverse, bool keep_workspace) {
  const variable_list r = forward_autograd(Kind::kLstm, input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                                           false, reverse, keep_workspace);
  return {r[0], r[1], r[2], r[3]};
}

std::tuple<Tensor, Tensor, Tensor> gru_forward_autograd(const Tensor& input, const Tensor& batch_sizes,
                                                        const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                                        const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                                                        bool keep_workspace) {
  const variable_list r = forward_autograd(Kind::kGru, input, batch_sizes, h0, {}, w_ih, w_hh, b_ih, b_hh, {}, false,
                                           reverse, keep_workspace);
  return {r[0], r[1], r[2]};
}

std::tuple<Tensor, Tensor, Tensor> rnn_forward_autograd(const Tensor& input, const Tensor& batch_sizes,
                                                        const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                                        const OptTensor& b_ih, const OptTensor& b_hh, bool relu,
                                                        bool reverse, bool keep_workspace) {
  const variable_list r = forward_autograd(Kind::kRnn, input, batch_sizes, h0, {}, w_ih, w_hh, b_ih, b_hh, {}, relu,
                                           reverse, keep_workspace);
  return {r[0], r[1], r[2]};
}

}  // namespace
}  // namespace fused_rnn

TORCH_LIBRARY_IMPL(fused_rnn, Autograd, m) {
  m.impl("lstm_forward", &fused_rnn::lstm_forward_autograd);
  m.impl("gru_forward", &fused_rnn::gru_forward_autograd);
  m.impl("rnn_forward", &fused_rnn::rnn_forward_autograd);
}
