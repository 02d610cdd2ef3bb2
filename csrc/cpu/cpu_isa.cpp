// See cpu_isa.h; also the op fused_rnn::cpu_isa (schema in fused_rnn.cpp), which names the
// level in use, for `python -m fused_rnn` and the tests.
#include "cpu_isa.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>

namespace fused_rnn {
namespace {

CpuIsa detected() {
#if defined(__x86_64__) || defined(_M_X64)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
    return CpuIsa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kGeneric;
}

CpuIsa chosen() {
  const CpuIsa cpu = detected();
  const char* cap = std::getenv("FUSED_RNN_CPU_ISA");
  if (cap == nullptr || *cap == '\0') return cpu;
  const std::string name(cap);
  for (CpuIsa isa : {CpuIsa::kGeneric, CpuIsa::kAvx2, CpuIsa::kAvx512}) {
    if (name == cpu_isa_name(isa)) return static_cast<int>(isa) < static_cast<int>(cpu) ? isa : cpu;
  }
  TORCH_CHECK_VALUE(false, "FUSED_RNN_CPU_ISA must be one of avx512, avx2, generic, got '", name, "'");
  return cpu;  // not reached
}

std::string cpu_isa_op() { return cpu_isa_name(cpu_isa()); }

}  // namespace

CpuIsa cpu_isa() {
  static const CpuIsa isa = chosen();
  return isa;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace fused_rnn

// No tensor argument selects no backend: one kernel for every dispatch key.
TORCH_LIBRARY_IMPL(fused_rnn, CompositeImplicitAutograd, m) { m.impl("cpu_isa", &fused_rnn::cpu_isa_op); }
