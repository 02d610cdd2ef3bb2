#pragma once
// Marks a function to be compiled for AVX-512 whatever the build's baseline ISA; call it
// only where avx512::available() (sgemm_avx512.h) is true.
#define FUSED_RNN_AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,fma")))
