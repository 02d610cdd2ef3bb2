#pragma once
// Buffers that outlive the op call that used them, for the CPU kernels' internal
// temporaries whose size repeats from call to call: the packed weights of sgemm.h, the
// backward's gate gradients, the inference projection's chunk (CpuBackend::scratch).
//
// Why: glibc serves a block above its mmap threshold (128 KB at first) with fresh pages
// and trims freed memory at the top of its heap back to the kernel, so a buffer of a
// megabyte allocated and freed on every call pays a page fault and a page clearing per
// 4 KB every call. On the Zen 3 VM, packing an LSTM (50, 1, 256, 256) layer's W_ih and W_hh
// (1 MB each) took 0.9-1.3 ms of its 2.2-2.9 ms forward that way, 0.45 ms with glibc's
// mmap and trim thresholds raised for the whole process (bench/README.md).
#include <ATen/ATen.h>

#include <cstdint>

namespace fused_rnn {

// A contiguous CPU tensor of these sizes and dtype (contents undefined), taken from the pool
// where a free buffer of the dtype is large enough. A pooled buffer is free again once
// every tensor sharing its storage is gone, so never hand one out of the op. The pool keeps
// at most kBufferPoolBytes; requests below kBufferPoolMinBytes, which glibc serves from its
// heap bins, bypass it.
at::Tensor pooled_buffer(at::IntArrayRef sizes, at::ScalarType dtype);

constexpr int64_t kBufferPoolBytes = int64_t(64) << 20;
constexpr int64_t kBufferPoolMinBytes = int64_t(64) << 10;

}  // namespace fused_rnn
