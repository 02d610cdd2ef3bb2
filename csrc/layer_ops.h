#pragma once
// The op entry points (schemas in fused_rnn.cpp), written once for every device: argument
// checks, dtype dispatch, then the sequence loop of sequence_loop.h. A device file
// registers these with its Backend (cpu/register_cpu.cpp, cuda/register_cuda.cu).
#include <ATen/ATen.h>
#include <tuple>

#include "checks.h"
#include "sequence_loop.h"

namespace fused_rnn {

using at::Tensor;
using OptTensor = c10::optional<Tensor>;

inline Tensor contiguous_or_undefined(const OptTensor& t) {
  return (t.has_value() && t->defined()) ? t->contiguous() : Tensor();
}

// Checks every tensor of one layer against the shapes of shapes.h and returns them
// contiguous, with batch_sizes copied to the host.
template <class Cell>
LayerArgs make_layer_args(const Tensor& input, const Tensor& batch_sizes, const Tensor& h0,
                          const OptTensor& c0, const Tensor& w_ih, const Tensor& w_hh,
                          const OptTensor& b_ih, const OptTensor& b_hh, const OptTensor& w_hr,
                          bool reverse) {
  const int64_t G = Cell::kGates;
  check_dim(input, "input", 2, "(R, I)");
  check_dim(h0, "h0", 2, "(N, P)");
  check_dim(w_ih, "w_ih", 2, "(G*H, I)");
  TORCH_CHECK_VALUE(w_ih.size(0) % G == 0, "w_ih must have G*H rows with G = ", std::to_string(G), " gates, got ",
                    std::to_string(w_ih.size(0)), " rows");
  const int64_t H = w_ih.size(0) / G;
  const int64_t I = input.size(1);
  const int64_t R = input.size(0);
  const int64_t N = h0.size(0);
  LayerArgs a;
  a.w_hr = contiguous_or_undefined(w_hr);
  const int64_t P = a.w_hr.defined() ? a.w_hr.size(0) : H;
  TORCH_CHECK_VALUE(Cell::kHasCellState || !a.w_hr.defined(), "w_hr (projection) is only defined for LSTM");
  if (a.w_hr.defined()) check_shape(a.w_hr, "w_hr", "(P, H)", {P, H});
  check_shape(w_ih, "w_ih", "(G*H, I)", {G * H, I});
  check_shape(w_hh, "w_hh", "(G*H, P)", {G * H, P});
  check_shape(h0, "h0", "(N, P)", {N, P});

  TORCH_CHECK_VALUE(batch_sizes.dim() == 1 && batch_sizes.scalar_type() == at::kLong &&
                        batch_sizes.device().is_cpu(),
                    "batch_sizes must be a 1-D int64 CPU tensor (T,), got ", std::to_string(batch_sizes.dim()), "-D ",
                    batch_sizes.scalar_type(), " on ", batch_sizes.device());
  const Tensor bs = batch_sizes.contiguous();
  const int64_t* bs_data = bs.data_ptr<int64_t>();
  a.batch_sizes.assign(bs_data, bs_data + bs.numel());
  int64_t rows = 0;
  for (size_t t = 0; t < a.batch_sizes.size(); ++t) {
    const int64_t b = a.batch_sizes[t];
    const int64_t limit = t == 0 ? N : a.batch_sizes[t - 1];
    TORCH_CHECK_VALUE(b >= 0 && b <= limit, "batch_sizes must be non-increasing within [0, N = ", std::to_string(N),
                      "], got batch_sizes[", std::to_string(t), "] = ", std::to_string(b), " after ",
                      std::to_string(limit));
    rows += b;
  }
  TORCH_CHECK_VALUE(rows == R, "input must have sum(batch_sizes) = ", std::to_string(rows), " rows, got ",
                    std::to_string(R));

  const char* dtype_ref = "input";
  for (auto [t, name] : {std::pair<const Tensor*, const char*>{&h0, "h0"}, {&w_ih, "w_ih"}, {&w_hh, "w_hh"}}) {
    check_same_dtype_device(*t, name, input, dtype_ref);
  }
  a.b_ih = contiguous_or_undefined(b_ih);
  a.b_hh = contiguous_or_undefined(b_hh);
  if (a.b_ih.defined()) check_shape(a.b_ih, "b_ih", "(G*H,)", {G * H});
  if (a.b_hh.defined()) check_shape(a.b_hh, "b_hh", "(G*H,)", {G * H});
  for (auto [t, name] : {std::pair<const Tensor*, const char*>{&a.b_ih, "b_ih"}, {&a.b_hh, "b_hh"}, {&a.w_hr, "w_hr"}}) {
    if (t->defined()) check_same_dtype_device(*t, name, input, dtype_ref);
  }
  if (Cell::kHasCellState) {
    TORCH_CHECK_VALUE(c0.has_value() && c0->defined(), "c0 is required for LSTM");
    check_dim(*c0, "c0", 2, "(N, H)");
    check_shape(*c0, "c0", "(N, H)", {N, H});
    check_same_dtype_device(*c0, "c0", input, dtype_ref);
    a.c0 = c0->contiguous();
  }
  a.input = input.contiguous();
  a.h0 = h0.contiguous();
  a.w_ih = w_ih.contiguous();
  a.w_hh = w_hh.contiguous();
  a.reverse = reverse;
  return a;
}

inline Tensor or_empty(const Tensor& t, const Tensor& like) {
  return t.defined() ? t : at::empty({0}, like.options());
}

// ---- forward ops -----------------------------------------------------------------

template <class Backend, class Cell>
LayerForwardResult run_forward(const LayerArgs& a) {
  typename Backend::Guard guard(a.input);
  LayerForwardResult r;
  Backend::dispatch(a.input.scalar_type(), "fused_rnn forward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    r = layer_forward<Backend, Cell, T>(a);
  });
  return r;
}

template <class Backend, class Cell>
LayerBackwardResult run_backward(const LayerArgs& a, const Tensor& grad_output, const Tensor& grad_h_n,
                                 const Tensor& grad_c_n, const Tensor& output, const Tensor& workspace) {
  const int64_t R = a.input.size(0);
  const int64_t H = a.w_ih.size(0) / Cell::kGates;
  check_shape(output, "output", "(R, P)", {R, a.h0.size(1)});
  check_shape(workspace, "workspace", "(R, W*H)", {R, Cell::kWorkspace * H});
  check_shape(grad_output, "grad_output", "(R, P)", {R, a.h0.size(1)});
  check_shape(grad_h_n, "grad_h_n", "(N, P)", a.h0.sizes().vec());
  for (auto [t, name] : {std::pair<const Tensor*, const char*>{&grad_output, "grad_output"},
                         {&grad_h_n, "grad_h_n"}, {&output, "output"}, {&workspace, "workspace"}}) {
    check_same_dtype_device(*t, name, a.input, "input");
  }
  if (Cell::kHasCellState) {
    check_shape(grad_c_n, "grad_c_n", "(N, H)", a.c0.sizes().vec());
    check_same_dtype_device(grad_c_n, "grad_c_n", a.input, "input");
  }
  typename Backend::Guard guard(a.input);
  LayerBackwardResult r;
  Backend::dispatch(a.input.scalar_type(), "fused_rnn backward", [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    r = layer_backward<Backend, Cell, T>(a, grad_output.contiguous(), grad_h_n.contiguous(),
                                         Cell::kHasCellState ? grad_c_n.contiguous() : Tensor(),
                                         output.contiguous(), workspace.contiguous());
  });
  return r;
}

template <class Backend>
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_forward(
    const Tensor& input, const Tensor& batch_sizes, const Tensor& h0, const Tensor& c0,
    const Tensor& w_ih, const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
    const OptTensor& w_hr, bool reverse, bool keep_workspace) {
  LayerArgs a = make_layer_args<LstmCell>(input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse);
  a.keep_workspace = keep_workspace;
  LayerForwardResult r = run_forward<Backend, LstmCell>(a);
  return {r.output, r.h_n, r.c_n, r.workspace};
}

template <class Backend>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lstm_backward(
    const Tensor& grad_output, const Tensor& grad_h_n, const Tensor& grad_c_n, const Tensor& input,
    const Tensor& batch_sizes, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
    const Tensor& w_hh, const OptTensor& w_hr, const Tensor& output, const Tensor& workspace,
    bool reverse) {
  const LayerArgs a = make_layer_args<LstmCell>(input, batch_sizes, h0, c0, w_ih, w_hh, {}, {}, w_hr, reverse);
  LayerBackwardResult g = run_backward<Backend, LstmCell>(a, grad_output, grad_h_n, grad_c_n, output, workspace);
  return {g.grad_input, g.grad_h0, g.grad_c0, g.grad_w_ih, g.grad_w_hh, g.grad_b_ih, g.grad_b_hh,
          or_empty(g.grad_w_hr, input)};
}

// GRU and the two vanilla RNNs share one signature; the template argument picks the cell.
template <class Backend, class Cell>
std::tuple<Tensor, Tensor, Tensor> stateless_cell_forward(
    const Tensor& input, const Tensor& batch_sizes, const Tensor& h0, const Tensor& w_ih,
    const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh, bool reverse, bool keep_workspace) {
  LayerArgs a = make_layer_args<Cell>(input, batch_sizes, h0, {}, w_ih, w_hh, b_ih, b_hh, {}, reverse);
  a.keep_workspace = keep_workspace;
  LayerForwardResult r = run_forward<Backend, Cell>(a);
  return {r.output, r.h_n, r.workspace};
}

template <class Backend, class Cell>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> stateless_cell_backward(
    const Tensor& grad_output, const Tensor& grad_h_n, const Tensor& input, const Tensor& batch_sizes,
    const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& output,
    const Tensor& workspace, bool reverse) {
  const LayerArgs a = make_layer_args<Cell>(input, batch_sizes, h0, {}, w_ih, w_hh, {}, {}, {}, reverse);
  LayerBackwardResult g = run_backward<Backend, Cell>(a, grad_output, grad_h_n, Tensor(), output, workspace);
  return {g.grad_input, g.grad_h0, g.grad_w_ih, g.grad_w_hh, g.grad_b_ih, g.grad_b_hh};
}

template <class Backend>
std::tuple<Tensor, Tensor, Tensor> gru_forward(const Tensor& input, const Tensor& batch_sizes,
                                               const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                               const OptTensor& b_ih, const OptTensor& b_hh, bool reverse,
                                               bool keep_workspace) {
  return stateless_cell_forward<Backend, GruCell>(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse,
                                                  keep_workspace);
}

template <class Backend>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> gru_backward(
    const Tensor& grad_output, const Tensor& grad_h_n, const Tensor& input, const Tensor& batch_sizes,
    const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& output,
    const Tensor& workspace, bool reverse) {
  return stateless_cell_backward<Backend, GruCell>(grad_output, grad_h_n, input, batch_sizes, h0, w_ih,
                                                   w_hh, output, workspace, reverse);
}

template <class Backend>
std::tuple<Tensor, Tensor, Tensor> rnn_forward(const Tensor& input, const Tensor& batch_sizes,
                                               const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
                                               const OptTensor& b_ih, const OptTensor& b_hh, bool relu,
                                               bool reverse, bool keep_workspace) {
  if (relu) {
    return stateless_cell_forward<Backend, SimpleCell<Activation::kRelu>>(input, batch_sizes, h0, w_ih, w_hh,
                                                                           b_ih, b_hh, reverse, keep_workspace);
  }
  return stateless_cell_forward<Backend, SimpleCell<Activation::kTanh>>(input, batch_sizes, h0, w_ih, w_hh,
                                                                         b_ih, b_hh, reverse, keep_workspace);
}

template <class Backend>
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> rnn_backward(
    const Tensor& grad_output, const Tensor& grad_h_n, const Tensor& input, const Tensor& batch_sizes,
    const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh, const Tensor& output,
    const Tensor& workspace, bool relu, bool reverse) {
  if (relu) {
    return stateless_cell_backward<Backend, SimpleCell<Activation::kRelu>>(
        grad_output, grad_h_n, input, batch_sizes, h0, w_ih, w_hh, output, workspace, reverse);
  }
  return stateless_cell_backward<Backend, SimpleCell<Activation::kTanh>>(
      grad_output, grad_h_n, input, batch_sizes, h0, w_ih, w_hh, output, workspace, reverse);
}

// self (M, K) @ mat2 (K, N) with the backend's whole-sequence product.
template <class Backend>
Tensor mm(const Tensor& self, const Tensor& mat2) {
  check_dim(self, "self", 2, "(M, K)");
  check_dim(mat2, "mat2", 2, "(K, N)");
  check_same_dtype_device(mat2, "mat2", self, "self");
  check_shape(mat2, "mat2", "(K, N)", {self.size(1), mat2.size(1)});
  typename Backend::Guard guard(self);
  Tensor product;
  Backend::dispatch(self.scalar_type(), "mm", [&](auto*) { product = Backend::mm(self.contiguous(), mat2.contiguous()); });
  return product;
}

// Registers every op of this file for one dispatch key.
#define FUSED_RNN_REGISTER_BACKEND(m, Backend)                  \
  do {                                                          \
    m.impl("lstm_forward", &::fused_rnn::lstm_forward<Backend>);   \
    m.impl("lstm_backward", &::fused_rnn::lstm_backward<Backend>); \
    m.impl("gru_forward", &::fused_rnn::gru_forward<Backend>);     \
    m.impl("gru_backward", &::fused_rnn::gru_backward<Backend>);   \
    m.impl("rnn_forward", &::fused_rnn::rnn_forward<Backend>);     \
    m.impl("rnn_backward", &::fused_rnn::rnn_backward<Backend>);   \
    m.impl("mm", &::fused_rnn::mm<Backend>);                       \
  } while (0)

}  // namespace fused_rnn
