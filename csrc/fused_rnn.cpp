// Every op schema of the library, and nothing else. Shapes: see shapes.h. Each op runs one
// layer in one direction over a packed sequence; the Python modules stack layers and
// directions. The *_backward ops are wired as the autograd formula of the *_forward ops
// in autograd.cpp.
// keep_workspace=False (no backward will follow) returns an empty (0, W*H) workspace and
// lets the forward keep only part of it at a time. mm is the matrix product of the
// whole-sequence products (input and weight gradients), exposed so that the benchmark
// can measure this machine's GEMM throughput with it as well as with torch.mm; phase_times
// is a profiling switch (phase_timer.cpp); cpu_isa names the CPU kernels' instruction set,
// cpu_sequence_products who computes the mm products on the CPU.
#include <Python.h>
#include <torch/library.h>

// `import fused_rnn._C` loads this library, which registers the ops below.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(fused_rnn, m) {
  m.def(
      "lstm_forward(Tensor input, Tensor batch_sizes, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, "
      "Tensor? b_ih, Tensor? b_hh, Tensor? w_hr, bool reverse, bool keep_workspace=True) "
      "-> (Tensor output, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "lstm_backward(Tensor grad_output, Tensor grad_h_n, Tensor grad_c_n, Tensor input, "
      "Tensor batch_sizes, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? w_hr, "
      "Tensor output, Tensor workspace, bool reverse) "
      "-> (Tensor grad_input, Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih, Tensor grad_w_hh, "
      "Tensor grad_b_ih, Tensor grad_b_hh, Tensor grad_w_hr)");
  m.def(
      "gru_forward(Tensor input, Tensor batch_sizes, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? b_ih, Tensor? b_hh, bool reverse, bool keep_workspace=True) "
      "-> (Tensor output, Tensor h_n, Tensor workspace)");
  m.def(
      "gru_backward(Tensor grad_output, Tensor grad_h_n, Tensor input, Tensor batch_sizes, Tensor h0, "
      "Tensor w_ih, Tensor w_hh, Tensor output, Tensor workspace, bool reverse) "
      "-> (Tensor grad_input, Tensor grad_h0, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_b_ih, "
      "Tensor grad_b_hh)");
  m.def(
      "rnn_forward(Tensor input, Tensor batch_sizes, Tensor h0, Tensor w_ih, Tensor w_hh, "
      "Tensor? b_ih, Tensor? b_hh, bool relu, bool reverse, bool keep_workspace=True) "
      "-> (Tensor output, Tensor h_n, Tensor workspace)");
  m.def(
      "rnn_backward(Tensor grad_output, Tensor grad_h_n, Tensor input, Tensor batch_sizes, Tensor h0, "
      "Tensor w_ih, Tensor w_hh, Tensor output, Tensor workspace, bool relu, bool reverse) "
      "-> (Tensor grad_input, Tensor grad_h0, Tensor grad_w_ih, Tensor grad_w_hh, Tensor grad_b_ih, "
      "Tensor grad_b_hh)");
  m.def("mm(Tensor self, Tensor mat2) -> Tensor");
  // Profiling (phase_timer.h): returns the per-phase microseconds summed since the previous
  // call, then the forward and backward calls counted, in a float64 tensor; resets them;
  // and turns the timing on or off.
  m.def("phase_times(bool enable) -> Tensor");
  // The CPU kernels' instruction set in use: "avx512", "avx2" or "generic" (cpu/cpu_isa.h).
  m.def("cpu_isa() -> str");
  // Who computes the CPU backward's whole-sequence products: "own" or "blas"
  // (cpu/sequence_products.h).
  m.def("cpu_sequence_products() -> str");
}
