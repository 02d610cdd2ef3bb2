// See sequence_products.h; also the op fused_rnn::cpu_sequence_products (schema in
// fused_rnn.cpp), which names the choice in use, for `python -m fused_rnn` and the tests.
#include "sequence_products.h"

#include <ATen/Context.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>

namespace fused_rnn {
namespace {

bool intel_cpu() {
#if defined(__x86_64__) || defined(_M_X64)
  return __builtin_cpu_is("intel");
#else
  return false;
#endif
}

SequenceProducts chosen() {
  const char* name = std::getenv("FUSED_RNN_CPU_SEQUENCE_PRODUCTS");
  if (name == nullptr || *name == '\0') {
    return at::hasMKL() && intel_cpu() ? SequenceProducts::kBlas : SequenceProducts::kOwn;
  }
  for (SequenceProducts choice : {SequenceProducts::kOwn, SequenceProducts::kBlas}) {
    if (std::string(name) == sequence_products_name(choice)) return choice;
  }
  TORCH_CHECK_VALUE(false, "FUSED_RNN_CPU_SEQUENCE_PRODUCTS must be one of own, blas, got '", name, "'");
  return SequenceProducts::kOwn;  // not reached
}

std::string sequence_products_op() { return sequence_products_name(sequence_products()); }

}  // namespace

SequenceProducts sequence_products() {
  static const SequenceProducts choice = chosen();
  return choice;
}

const char* sequence_products_name(SequenceProducts choice) {
  return choice == SequenceProducts::kBlas ? "blas" : "own";
}

}  // namespace fused_rnn

// No tensor argument selects no backend: one kernel for every dispatch key.
TORCH_LIBRARY_IMPL(fused_rnn, CompositeImplicitAutograd, m) {
  m.impl("cpu_sequence_products", &fused_rnn::sequence_products_op);
}
