#pragma once
// Which vector instruction set the CPU kernels use, chosen once per process from what the
// CPU reports, at most the level the environment variable FUSED_RNN_CPU_ISA names
// ("avx512", "avx2" or "generic"): so one build runs on any x86-64 CPU, and the tests can
// run the AVX2 and the plain C++ paths on an AVX-512 machine too.
//   kAvx512  the packed-weight GEMM in zmm registers and the AVX-512 LSTM pointwise step
//   kAvx2    the same GEMM in ymm registers (AVX2 + FMA), the pointwise steps compiled for AVX2
//   kGeneric the BLAS that libtorch exports, the pointwise steps for the build's baseline ISA
#include <cstdint>

// Marks a function to be compiled for that ISA whatever the build's baseline; call it only
// where cpu_isa() is at least that level.
#define FUSED_RNN_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,fma")))
#define FUSED_RNN_AVX2 __attribute__((target("avx2,fma")))

namespace fused_rnn {

enum class CpuIsa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

CpuIsa cpu_isa();
const char* cpu_isa_name(CpuIsa isa);

}  // namespace fused_rnn
