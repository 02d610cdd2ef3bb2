#pragma once
// Who computes the backward's whole-sequence products on the CPU (CpuBackend::mm: the
// input gradient and the weight gradients, a few large GEMMs per call): our packed-weight
// GEMM (sgemm.h, where CpuBackend::own_product_takes a product) or ATen's BLAS. Chosen
// once per process: the BLAS where it is MKL on an Intel CPU, which runs MKL's own
// AVX-512 kernels (on AMD CPUs MKL takes its AVX2 path, about half of a Zen 5's
// throughput, so there our GEMM takes them); the environment variable
// FUSED_RNN_CPU_SEQUENCE_PRODUCTS ("own" or "blas") overrides, so that the tests run both
// on any machine. bench/README.md, "What we learned on an Intel Xeon", item 1.
namespace fused_rnn {

enum class SequenceProducts : int { kOwn = 0, kBlas = 1 };

SequenceProducts sequence_products();
const char* sequence_products_name(SequenceProducts choice);

}  // namespace fused_rnn
