#pragma once
// Argument checks whose messages name the argument and what was expected.
//
// Integers reach messages as std::to_string text, never through std::ostream (also not
// through TORCH_CHECK's own formatting): on the GPU machines' image (torch 2.11 wheel, the
// extension built there by Ubuntu's GCC 13.3) the extension's own insertion of an integer
// into a stream crashed the process (segfault in this file's former ostringstream, seen
// under cuda-gdb; messages of strings only were fine), so a bad argument there killed the
// interpreter instead of raising.
#include <ATen/ATen.h>
#include <string>
#include <vector>

namespace fused_rnn {

inline std::string shape_string(at::IntArrayRef shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + (shape.size() == 1 ? ",)" : ")");
}

// "h0 must have shape (N, P) = (3, 16), got (2, 16)"
inline void check_shape(const at::Tensor& t, const char* name, const char* legend,
                        std::vector<int64_t> expected) {
  TORCH_CHECK_VALUE(t.sizes().vec() == expected, name, " must have shape ", legend, " = ",
                    shape_string(expected), ", got ", shape_string(t.sizes()));
}

inline void check_same_dtype_device(const at::Tensor& t, const char* name,
                                    const at::Tensor& like, const char* like_name) {
  TORCH_CHECK_TYPE(t.scalar_type() == like.scalar_type(), name, " must have the dtype of ",
                   like_name, " (", like.scalar_type(), "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == like.device(), name, " must be on the device of ", like_name, " (",
              like.device(), "), got ", t.device());
}

inline void check_dim(const at::Tensor& t, const char* name, int64_t dim, const char* legend) {
  TORCH_CHECK_VALUE(t.dim() == dim, name, " must be ", std::to_string(dim), "-D with shape ", legend, ", got ",
                    std::to_string(t.dim()), "-D ", shape_string(t.sizes()));
}

}  // namespace fused_rnn
