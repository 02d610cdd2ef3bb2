#pragma once
// The forward time loop of one layer in one kernel launch, for small batches. Per step the
// stepwise path costs a cuBLAS launch plus a pointwise launch (about 10-20 us of host and
// launch time each step, whatever the size); here one cooperative launch runs every step:
//
//   block b owns hidden units [b*U, b*U + U) of every gate: its rows of W_hh stay in shared
//   memory for the whole sequence. Step s: load h_{s-1} (all rows, all units) into shared
//   memory, multiply by the block's W_hh rows, run the cell's pointwise step for its own
//   units, then one grid-wide barrier, after which every block reads the new h.
//
// Only the block that owns unit j ever touches column j of the workspace, of GRU's hidden
// gates and of the cell state, so the only cross-block data is h (the step's output rows),
// read after the barrier. The state buffer h_state is read only where a row has no
// previous output (step 0, or rows that join late in a reverse packed pass) and written
// only after the last step, so no block can read a row that another is overwriting.
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <cooperative_groups.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../cell_math.h"

namespace fused_rnn {
namespace persistent {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxRows = 16;  // batch rows per launch: one accumulator each per thread
constexpr int kVec = 4;       // k-values per inner iteration: one vector read of W_hh, of each h row
constexpr int kLoadsInFlight = 8;  // 16-byte loads of h a thread issues before it waits for the first

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// kVec consecutive values, aligned so that shared-memory reads of them are single vector
// instructions (LDS.128 for float; a broadcast to all lanes when they read the same h).
template <typename T>
struct alignas(sizeof(T) * kVec) Vec {
  T v[kVec];
};

// How one launch splits the work, and the shared memory it needs.
struct Layout {
  int units;           // U: hidden units per block
  int blocks;          // ceil(H / U)
  int rows_padded;     // G*U rounded up to the warp size: lanes = weight rows
  int k_padded;        // H rounded up to kVec (zero weights and zero h beyond H)
  int k_per_warp;      // split of k over the warps, a multiple of kVec
  size_t weight_bytes, h_bytes, partial_bytes;
  size_t smem() const { return weight_bytes + h_bytes + partial_bytes; }
};

template <typename T>
Layout make_layout(int64_t G, int64_t H, int64_t N, int sms) {
  using acc_t = at::opmath_type<T>;
  Layout l{};
  l.units = static_cast<int>((H + sms - 1) / sms);
  l.blocks = static_cast<int>((H + l.units - 1) / l.units);
  l.rows_padded = static_cast<int>(round_up(G * l.units, 32));
  l.k_padded = static_cast<int>(round_up(H, kVec));
  l.k_per_warp = static_cast<int>(round_up((l.k_padded + kWarps - 1) / kWarps, kVec));
  // 32-byte boundaries: h_s holds Vec<double> (32 bytes) for double.
  l.weight_bytes = round_up(int64_t(l.k_padded) * l.rows_padded * sizeof(T), 32);
  l.h_bytes = round_up(N * int64_t(l.k_padded) * sizeof(acc_t), 32);
  l.partial_bytes = size_t(kWarps) * N * l.rows_padded * sizeof(acc_t);
  return l;
}

// A load that skips the (non-coherent) L1 cache: h rows are written by other blocks.
template <typename T>
__device__ __forceinline__ T load_global(const T* p) {
  if constexpr (sizeof(T) == 2) {
    const unsigned short bits = __ldcg(reinterpret_cast<const unsigned short*>(p));
    T value;
    memcpy(&value, &bits, sizeof(bits));
    return value;
  } else {
    return __ldcg(p);
  }
}

// The values of T in one 16-byte load, widened to the accumulation type.
template <typename T, typename acc_t>
__device__ __forceinline__ void unpack16(const uint4& raw, acc_t* out) {
  const unsigned int words[4] = {raw.x, raw.y, raw.z, raw.w};
  if constexpr (sizeof(T) == 8) {
#pragma unroll
    for (int e = 0; e < 2; ++e) out[e] = __hiloint2double(static_cast<int>(words[2 * e + 1]), static_cast<int>(words[2 * e]));
  } else if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int e = 0; e < 4; ++e) out[e] = __uint_as_float(words[e]);
  } else {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const auto bits = static_cast<uint16_t>(words[e / 2] >> (16 * (e % 2)));
      out[e] = static_cast<acc_t>(T(bits, T::from_bits()));
    }
  }
}

template <typename T>
__device__ __forceinline__ bool aligned16(const T* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15) == 0;
}

// acc[r] += w . h_r[k .. k + kVec) for the rows r < rows (rows <= kRows); h_k = &h_s[0][k].
// Every row's read is issued before the FMAs, whose kRows chains then interleave.
template <int kRows, typename acc_t>
__device__ __forceinline__ void accumulate_rows(acc_t (&acc)[kMaxRows], const acc_t (&w)[kVec], const acc_t* h_k,
                                                int k_padded, int rows) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    if (r < rows) {
      const Vec<acc_t> hr = *reinterpret_cast<const Vec<acc_t>*>(h_k + r * k_padded);
#pragma unroll
      for (int v = 0; v < kVec; ++v) acc[r] += w[v] * hr.v[v];
    }
  }
}

// Spec: the sequence loop's RecurrentStep<T> (rows, step, target, target_ld, accumulate,
// output). last_step[r]: the last step at which row r is active (its h_n), -1 if none.
template <class Cell, typename T, class Spec>
__global__ void __launch_bounds__(kThreads, 1)
forward_kernel(const Spec* __restrict__ specs, const int64_t* __restrict__ last_step, int64_t steps,
               const T* __restrict__ w_hh, T* h_state, int H, int N, Layout l) {
  using acc_t = at::opmath_type<T>;
  constexpr int G = Cell::kGates;
  extern __shared__ __align__(32) unsigned char smem[];
  T* w_s = reinterpret_cast<T*>(smem);                                 // (k_padded / kVec, rows_padded, kVec)
  acc_t* h_s = reinterpret_cast<acc_t*>(smem + l.weight_bytes);                // (N, k_padded)
  acc_t* partial = reinterpret_cast<acc_t*>(smem + l.weight_bytes + l.h_bytes);  // (warps, N, rows_padded)

  const int j0 = blockIdx.x * l.units;
  const int units = min(l.units, H - j0);
  const int GU = G * l.units;  // local weight row lr = g * U + u is W_hh row g * H + j0 + u
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  // The block's rows of W_hh in groups of kVec k-values per row, groups of consecutive rows
  // next to each other: lane lr reads its row's kVec values at k in one vector read, and
  // the lanes of a warp read consecutive vectors.
  for (int idx = threadIdx.x; idx < l.rows_padded * l.k_padded; idx += kThreads) {
    const int lr = idx / l.k_padded, k = idx % l.k_padded;
    const int g = lr / l.units, u = lr % l.units;
    const bool real = lr < GU && u < units && k < H;
    w_s[(k / kVec * l.rows_padded + lr) * kVec + k % kVec] =
        real ? w_hh[(int64_t(g) * H + j0 + u) * H + k] : static_cast<T>(0.0f);
  }
  // h rows can be read 16 bytes at a time where a row is a whole number of 16-byte pieces
  // and no padding follows it (k_padded == H); the pointers are checked every step.
  constexpr int kChunk = 16 / sizeof(T);
  const bool chunked_rows = H % kChunk == 0 && H == l.k_padded;
  const int chunks_per_row = H / kChunk;

  cooperative_groups::grid_group grid = cooperative_groups::this_grid();
  const int k_begin = warp * l.k_per_warp, k_end = min(l.k_padded, k_begin + l.k_per_warp);
  for (int64_t s = 0; s < steps; ++s) {
    const Spec spec = specs[s];
    const int rows = static_cast<int>(spec.rows);
    const int prev_rows = s > 0 ? static_cast<int>(specs[s - 1].rows) : 0;
    const T* prev_out = s > 0 ? specs[s - 1].output : nullptr;

    // h_{s-1} of every active row: the previous step's output, or the state for rows that
    // had no previous step. In 16-byte pieces where the rows allow, kLoadsInFlight of them
    // issued before the first is used (one L2 round trip per batch, not per element).
    if (chunked_rows && aligned16(h_state) && (prev_rows == 0 || aligned16(prev_out))) {
      const int total = rows * chunks_per_row;
      for (int base = threadIdx.x; base < total; base += kThreads * kLoadsInFlight) {
        uint4 raw[kLoadsInFlight];
        int dst[kLoadsInFlight];
#pragma unroll
        for (int b = 0; b < kLoadsInFlight; ++b) {
          const int i = base + b * kThreads;
          dst[b] = -1;
          if (i < total) {
            const int r = i / chunks_per_row, c = i - r * chunks_per_row;
            const T* src = (r < prev_rows ? prev_out : h_state) + int64_t(r) * H + c * kChunk;
            raw[b] = __ldcg(reinterpret_cast<const uint4*>(src));
            dst[b] = r * l.k_padded + c * kChunk;
          }
        }
#pragma unroll
        for (int b = 0; b < kLoadsInFlight; ++b) {
          if (dst[b] >= 0) unpack16<T>(raw[b], h_s + dst[b]);
        }
      }
    } else {
      for (int idx = threadIdx.x; idx < rows * l.k_padded; idx += kThreads) {
        const int r = idx / l.k_padded, k = idx % l.k_padded;
        acc_t v = 0;
        if (k < H) v = static_cast<acc_t>(load_global((r < prev_rows ? prev_out : h_state) + int64_t(r) * H + k));
        h_s[r * l.k_padded + k] = v;
      }
    }
    __syncthreads();

    // Lane = weight row, warp = slice of k: partial sums for every active row.
    acc_t acc[kMaxRows];
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r) acc[r] = 0;
    for (int lr0 = 0; lr0 < l.rows_padded; lr0 += 32) {
      const int lr = lr0 + lane;
      for (int k = k_begin; k < k_end; k += kVec) {
        const Vec<T> w_raw = *reinterpret_cast<const Vec<T>*>(w_s + (k / kVec * l.rows_padded + lr) * kVec);
        acc_t w[kVec];
#pragma unroll
        for (int v = 0; v < kVec; ++v) w[v] = static_cast<acc_t>(w_raw.v[v]);
        // The smallest unrolled row count that covers `rows` (a uniform branch): a small
        // batch does not issue 16 rows' predicated-off reads and FMAs.
        const acc_t* h_k = h_s + k;
        if (rows > 8) {
          accumulate_rows<16>(acc, w, h_k, l.k_padded, rows);
        } else if (rows > 4) {
          accumulate_rows<8>(acc, w, h_k, l.k_padded, rows);
        } else if (rows > 2) {
          accumulate_rows<4>(acc, w, h_k, l.k_padded, rows);
        } else {
          accumulate_rows<2>(acc, w, h_k, l.k_padded, rows);
        }
      }
#pragma unroll
      for (int r = 0; r < kMaxRows; ++r) {
        if (r < rows) partial[(warp * N + r) * l.rows_padded + lr] = acc[r];
        acc[r] = 0;
      }
    }
    __syncthreads();

    // Sum over the warps; add to (LSTM, RNN) or write (GRU) the step's gate pre-activations.
    for (int idx = threadIdx.x; idx < rows * GU; idx += kThreads) {
      const int r = idx / GU, lr = idx % GU;
      const int g = lr / l.units, u = lr % l.units;
      if (u >= units) continue;
      acc_t sum = 0;
      for (int w = 0; w < kWarps; ++w) sum += partial[(w * N + r) * l.rows_padded + lr];
      T* out = spec.target + int64_t(r) * spec.target_ld + int64_t(g) * H + j0 + u;
      *out = static_cast<T>(spec.accumulate ? static_cast<acc_t>(*out) + sum : sum);
    }
    __syncthreads();

    // The cell's pointwise step for the block's own units.
    for (int idx = threadIdx.x; idx < rows * units; idx += kThreads) {
      const int r = idx / units, j = j0 + idx % units;
      ForwardStep<T> step = spec.step;
      step.h_prev = r < prev_rows ? prev_out : h_state;  // GRU reads h_{s-1} of its own unit
      Cell::template forward<acc_t>(step, r, j, H);
    }
    grid.sync();
  }

  // h_n: each row's output at its last active step.
  for (int idx = threadIdx.x; idx < N * units; idx += kThreads) {
    const int r = idx / units, j = j0 + idx % units;
    const int64_t last = last_step[r];
    if (last >= 0) h_state[int64_t(r) * H + j] = specs[last].output[int64_t(r) * H + j];
  }
}

// Which loop runs: FUSED_RNN_CUDA_LOOP=stepwise forces the per-step path (to compare the
// two, or to rule the persistent kernel out); unset or "auto": the persistent kernel where
// it applies.
inline bool allowed() {
  const char* choice = std::getenv("FUSED_RNN_CUDA_LOOP");
  return choice == nullptr || std::strcmp(choice, "stepwise") != 0;
}

// Runs the whole forward loop in one launch and returns true, or returns false (nothing
// done) where the persistent kernel does not apply: a projection, more than kMaxRows rows,
// or W_hh's share per block not fitting in shared memory with one block per multiprocessor.
template <class Cell, typename T, class StepAt>
bool run_forward(int64_t steps, const T* w_hh, T* h_state, int64_t H, int64_t P, int64_t N, bool projected,
                 StepAt&& step_at) {
  if (projected || P != H || N < 1 || N > kMaxRows || steps < 1 || !allowed()) return false;
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const Layout l = make_layout<T>(Cell::kGates, H, N, prop->multiProcessorCount);
  if (l.smem() > prop->sharedMemPerBlockOptin) return false;

  using Spec = std::decay_t<decltype(step_at(int64_t(0)))>;
  auto kernel = forward_kernel<Cell, T, Spec>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(l.smem())));
  int per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, l.smem()));
  if (per_sm * prop->multiProcessorCount < l.blocks) return false;

  // Every step's pointers, and each row's last active step, in one host buffer copied to the
  // device with the launch (pinned, so the copy is asynchronous on the stream).
  std::vector<Spec> specs(steps);
  std::vector<int64_t> last(N, -1);
  for (int64_t s = 0; s < steps; ++s) {
    specs[s] = step_at(s);
    for (int64_t r = 0; r < specs[s].rows; ++r) last[r] = s;
  }
  const size_t spec_bytes = round_up(steps * sizeof(Spec), 16), bytes = spec_bytes + N * sizeof(int64_t);
  at::Tensor host = at::empty({int64_t(bytes)}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
  std::memcpy(host.data_ptr(), specs.data(), steps * sizeof(Spec));
  std::memcpy(static_cast<unsigned char*>(host.data_ptr()) + spec_bytes, last.data(), N * sizeof(int64_t));
  const at::Tensor device = host.to(at::Device(at::kCUDA, at::cuda::current_device()), /*non_blocking=*/true);
  const auto* specs_d = reinterpret_cast<const Spec*>(device.data_ptr());
  const auto* last_d = reinterpret_cast<const int64_t*>(static_cast<const unsigned char*>(device.data_ptr()) + spec_bytes);

  int H_i = static_cast<int>(H), N_i = static_cast<int>(N);
  Layout layout = l;
  void* args[] = {&specs_d, &last_d, &steps, &w_hh, &h_state, &H_i, &N_i, &layout};
  C10_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(l.blocks), dim3(kThreads),
                                             args, l.smem(), at::cuda::getCurrentCUDAStream()));
  return true;
}

}  // namespace persistent
}  // namespace fused_rnn
