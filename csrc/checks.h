#pragma once
// Argument checks whose messages name the argument and what was expected.
#include <ATen/ATen.h>
#include <sstream>
#include <vector>

namespace fused_rnn {

inline std::string shape_string(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
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
  TORCH_CHECK_VALUE(t.dim() == dim, name, " must be ", dim, "-D with shape ", legend, ", got ",
                    t.dim(), "-D ", shape_string(t.sizes()));
}

}  // namespace fused_rnn
