// See buffer_pool.h.
#include "buffer_pool.h"

#include <algorithm>
#include <mutex>
#include <vector>

namespace fused_rnn {
namespace {

// The pool's buffers; one is in use while anything besides this list holds its tensor or
// its storage. Use counts only rise by copying a tensor handed out under the mutex, so a
// count of 1 seen under it stays 1 until this code hands the buffer out again.
struct BufferPool {
  std::mutex mutex;
  std::vector<at::Tensor> buffers;
  int64_t bytes = 0;
};

BufferPool& pool() {
  static auto* instance = new BufferPool();  // never destroyed: ops may run during exit
  return *instance;
}

bool is_free(const at::Tensor& buffer) { return buffer.use_count() == 1 && buffer.storage().use_count() == 1; }

int64_t bytes_of(const at::Tensor& buffer) { return buffer.numel() * static_cast<int64_t>(buffer.element_size()); }

}  // namespace

at::Tensor pooled_buffer(at::IntArrayRef sizes, at::ScalarType dtype) {
  const int64_t want = c10::multiply_integers(sizes);
  const int64_t want_bytes = want * static_cast<int64_t>(c10::elementSize(dtype));
  if (want_bytes < kBufferPoolMinBytes || want_bytes > kBufferPoolBytes) return at::empty(sizes, dtype);
  BufferPool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  // The smallest free buffer that fits, so that large ones stay for large requests.
  const at::Tensor* best = nullptr;
  for (const at::Tensor& buffer : p.buffers) {
    if (buffer.scalar_type() == dtype && buffer.numel() >= want && is_free(buffer) &&
        (!best || buffer.numel() < best->numel())) {
      best = &buffer;
    }
  }
  if (best) return best->narrow(0, 0, want).view(sizes);
  // None fits: free buffers make room, smallest first, until the new one fits the budget.
  std::sort(p.buffers.begin(), p.buffers.end(),
            [](const at::Tensor& a, const at::Tensor& b) { return bytes_of(a) < bytes_of(b); });
  for (auto it = p.buffers.begin(); it != p.buffers.end() && p.bytes + want_bytes > kBufferPoolBytes;) {
    if (is_free(*it)) {
      p.bytes -= bytes_of(*it);
      it = p.buffers.erase(it);
    } else {
      ++it;
    }
  }
  at::Tensor buffer = at::empty({want}, dtype);
  if (p.bytes + want_bytes <= kBufferPoolBytes) {
    p.buffers.push_back(buffer);
    p.bytes += want_bytes;
  }
  return buffer.view(sizes);
}

}  // namespace fused_rnn
