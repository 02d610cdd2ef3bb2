#pragma once
// Per-element math of each cell, forward and backward, shared by the CPU loops and the
// CUDA kernels. Element (r, j) is batch row r, hidden unit j; arithmetic runs in acc_t
// (float for half/bfloat16 storage). Derivatives are written from saved outputs:
// dsigmoid = s(1 - s), dtanh = 1 - t^2, drelu = [h > 0].
//
// Workspace row layout (W*H columns, see shapes.h); on entry to the forward step the first
// G*H columns hold the input-side pre-activations, on exit the activated gates:
//   LSTM  [ i | f | g | o | c ]       c: the new cell state, kept for backward
//   GRU   [ r | z | n | hn ]          hn = h W_hn^T + b_hn, kept because r multiplies it
//   RNN   [ h ]                       the activated output
#include <c10/macros/Macros.h>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FR_HD __host__ __device__ __forceinline__
#else
#define FR_HD inline
#endif

namespace fused_rnn {

// exp for float on the CPU: Cody-Waite range reduction and a degree-6 polynomial (the
// classic Cephes expf coefficients), about 1 ulp. Unlike std::exp it has no libm call,
// so the pointwise loops vectorise. NaN propagates through the polynomial.
inline float host_expf(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float k = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

FR_HD float exp_acc(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return host_expf(x);
#endif
}
FR_HD double exp_acc(double x) { return ::exp(x); }

template <typename acc_t>
FR_HD acc_t sigmoid_acc(acc_t x) {
  return acc_t(1) / (acc_t(1) + exp_acc(-x));
}
// tanh(x) = 1 - 2 / (1 + e^{2x}): saturates cleanly to +-1 and needs only exp.
FR_HD float tanh_acc(float x) { return 1.0f - 2.0f / (1.0f + exp_acc(2.0f * x)); }
FR_HD double tanh_acc(double x) { return ::tanh(x); }

// Pointers of one time step of the forward pass; rows are the active batch rows. Every
// pointer a cell reads is valid (zeros stand in for what is absent): a branch per element
// would stop the CPU loops from vectorising.
template <typename T>
struct ForwardStep {
  T* ws;                   // (b, W*H), leading dimension ws_ld
  int64_t ws_ld;
  const T* hidden_gates;   // GRU: (b, 3H) h_prev W_hh^T without bias, leading dim 3H
  const T* b_hh;           // GRU: (3H,), zeros when the module has no bias
  const T* h_prev;         // GRU: (b, H) state before the step, leading dim H
  T* c_state;              // LSTM: (b, H) in: c_prev, out: c_next (same element, so in place)
  T* h_out;                // (b, H) h of the step (before projection), leading dim h_out_ld
  int64_t h_out_ld;
};

// Pointers of one time step of the backward pass.
template <typename T>
struct BackwardStep {
  const T* ws;             // (b, W*H) saved by the forward step, leading dim ws_ld
  int64_t ws_ld;
  const T* c_prev;         // LSTM: (b, H) cell state before the step, leading dim c_prev_ld
  int64_t c_prev_ld;
  const T* h_prev;         // GRU: (b, H) state before the step, leading dim H
  const T* dh;             // (b, H) gradient of h (before projection), leading dim dh_ld
  int64_t dh_ld;
  const T* dh_extra;       // (b, H) second term of that gradient, leading dim dh_extra_ld (0: one zero row)
  int64_t dh_extra_ld;
  T* dc;                   // LSTM: (b, H) in: dL/dc_next, out: dL/dc_prev (in place)
  T* dgates;               // (b, G*H) gradient of the input-side pre-activations, leading dim dgates_ld
  int64_t dgates_ld;
  T* dgates_hidden;        // GRU: (b, 3H) gradient of h W_hh^T + b_hh, leading dim 3H
  T* dh_prev_direct;       // GRU: (b, H) the part of dL/dh_prev that bypasses W_hh
};

template <typename acc_t, typename T>
FR_HD acc_t total_dh(const BackwardStep<T>& s, int64_t r, int64_t j) {
  acc_t dh = static_cast<acc_t>(s.dh[r * s.dh_ld + j]);
  dh += static_cast<acc_t>(s.dh_extra[r * s.dh_extra_ld + j]);
  return dh;
}

template <typename acc_t, typename T>
FR_HD void store_h(const ForwardStep<T>& s, int64_t r, int64_t j, int64_t H, acc_t h) {
  s.h_out[r * s.h_out_ld + j] = static_cast<T>(h);
}

struct LstmCell {
  static constexpr int kGates = 4;
  static constexpr int kWorkspace = 5;
  static constexpr bool kHasCellState = true;
  // false: the recurrent GEMM accumulates straight into the workspace pre-activations.
  static constexpr bool kHiddenGatesApart = false;

  template <typename acc_t, typename T>
  static FR_HD void forward(const ForwardStep<T>& s, int64_t r, int64_t j, int64_t H) {
    T* g = s.ws + r * s.ws_ld;
    const acc_t i = sigmoid_acc(static_cast<acc_t>(g[j]));
    const acc_t f = sigmoid_acc(static_cast<acc_t>(g[H + j]));
    const acc_t c_in = tanh_acc(static_cast<acc_t>(g[2 * H + j]));
    const acc_t o = sigmoid_acc(static_cast<acc_t>(g[3 * H + j]));
    const acc_t c = f * static_cast<acc_t>(s.c_state[r * H + j]) + i * c_in;
    const acc_t h = o * tanh_acc(c);
    g[j] = static_cast<T>(i);
    g[H + j] = static_cast<T>(f);
    g[2 * H + j] = static_cast<T>(c_in);
    g[3 * H + j] = static_cast<T>(o);
    g[4 * H + j] = static_cast<T>(c);
    s.c_state[r * H + j] = static_cast<T>(c);
    store_h(s, r, j, H, h);
  }

  template <typename acc_t, typename T>
  static FR_HD void backward(const BackwardStep<T>& s, int64_t r, int64_t j, int64_t H) {
    const T* g = s.ws + r * s.ws_ld;
    const acc_t i = static_cast<acc_t>(g[j]);
    const acc_t f = static_cast<acc_t>(g[H + j]);
    const acc_t c_in = static_cast<acc_t>(g[2 * H + j]);
    const acc_t o = static_cast<acc_t>(g[3 * H + j]);
    const acc_t tc = tanh_acc(static_cast<acc_t>(g[4 * H + j]));
    const acc_t dh = total_dh<acc_t>(s, r, j);
    const acc_t dc = static_cast<acc_t>(s.dc[r * H + j]) + dh * o * (acc_t(1) - tc * tc);
    T* dg = s.dgates + r * s.dgates_ld;
    dg[j] = static_cast<T>(dc * c_in * i * (acc_t(1) - i));
    dg[H + j] = static_cast<T>(dc * static_cast<acc_t>(s.c_prev[r * s.c_prev_ld + j]) * f * (acc_t(1) - f));
    dg[2 * H + j] = static_cast<T>(dc * i * (acc_t(1) - c_in * c_in));
    dg[3 * H + j] = static_cast<T>(dh * tc * o * (acc_t(1) - o));
    s.dc[r * H + j] = static_cast<T>(dc * f);
  }
};

struct GruCell {
  static constexpr int kGates = 3;
  static constexpr int kWorkspace = 4;
  static constexpr bool kHasCellState = false;
  // true: n needs r * (h W_hn^T + b_hn), so the recurrent GEMM goes to its own buffer.
  static constexpr bool kHiddenGatesApart = true;

  template <typename acc_t, typename T>
  static FR_HD void forward(const ForwardStep<T>& s, int64_t r, int64_t j, int64_t H) {
    T* g = s.ws + r * s.ws_ld;
    const T* hg = s.hidden_gates + r * 3 * H;
    const acc_t hr = static_cast<acc_t>(hg[j]) + static_cast<acc_t>(s.b_hh[j]);
    const acc_t hz = static_cast<acc_t>(hg[H + j]) + static_cast<acc_t>(s.b_hh[H + j]);
    const acc_t hn = static_cast<acc_t>(hg[2 * H + j]) + static_cast<acc_t>(s.b_hh[2 * H + j]);
    const acc_t reset = sigmoid_acc(static_cast<acc_t>(g[j]) + hr);
    const acc_t update = sigmoid_acc(static_cast<acc_t>(g[H + j]) + hz);
    const acc_t n = tanh_acc(static_cast<acc_t>(g[2 * H + j]) + reset * hn);
    const acc_t h = (acc_t(1) - update) * n + update * static_cast<acc_t>(s.h_prev[r * H + j]);
    g[j] = static_cast<T>(reset);
    g[H + j] = static_cast<T>(update);
    g[2 * H + j] = static_cast<T>(n);
    g[3 * H + j] = static_cast<T>(hn);
    store_h(s, r, j, H, h);
  }

  template <typename acc_t, typename T>
  static FR_HD void backward(const BackwardStep<T>& s, int64_t r, int64_t j, int64_t H) {
    const T* g = s.ws + r * s.ws_ld;
    const acc_t reset = static_cast<acc_t>(g[j]);
    const acc_t update = static_cast<acc_t>(g[H + j]);
    const acc_t n = static_cast<acc_t>(g[2 * H + j]);
    const acc_t hn = static_cast<acc_t>(g[3 * H + j]);
    const acc_t dh = total_dh<acc_t>(s, r, j);
    const acc_t dn_pre = dh * (acc_t(1) - update) * (acc_t(1) - n * n);
    const acc_t dz_pre =
        dh * (static_cast<acc_t>(s.h_prev[r * H + j]) - n) * update * (acc_t(1) - update);
    const acc_t dr_pre = dn_pre * hn * reset * (acc_t(1) - reset);
    T* dg = s.dgates + r * s.dgates_ld;
    T* dhg = s.dgates_hidden + r * 3 * H;
    dg[j] = dhg[j] = static_cast<T>(dr_pre);
    dg[H + j] = dhg[H + j] = static_cast<T>(dz_pre);
    dg[2 * H + j] = static_cast<T>(dn_pre);
    dhg[2 * H + j] = static_cast<T>(dn_pre * reset);
    s.dh_prev_direct[r * H + j] = static_cast<T>(dh * update);
  }
};

enum class Activation : int64_t { kTanh = 0, kRelu = 1 };

template <Activation kAct>
struct SimpleCell {
  static constexpr int kGates = 1;
  static constexpr int kWorkspace = 1;
  static constexpr bool kHasCellState = false;
  static constexpr bool kHiddenGatesApart = false;

  template <typename acc_t, typename T>
  static FR_HD void forward(const ForwardStep<T>& s, int64_t r, int64_t j, int64_t H) {
    T* g = s.ws + r * s.ws_ld;
    const acc_t pre = static_cast<acc_t>(g[j]);
    // `pre < 0 ? 0 : pre` keeps NaN, as torch.relu does.
    const acc_t h = kAct == Activation::kTanh ? tanh_acc(pre) : (pre < acc_t(0) ? acc_t(0) : pre);
    g[j] = static_cast<T>(h);
    store_h(s, r, j, H, h);
  }

  template <typename acc_t, typename T>
  static FR_HD void backward(const BackwardStep<T>& s, int64_t r, int64_t j, int64_t H) {
    const acc_t h = static_cast<acc_t>(s.ws[r * s.ws_ld + j]);
    const acc_t dh = total_dh<acc_t>(s, r, j);
    // relu: torch passes the gradient wherever h <= 0 is false, NaN included.
    const acc_t slope = kAct == Activation::kTanh ? acc_t(1) - h * h : acc_t(h <= acc_t(0) ? 0 : 1);
    s.dgates[r * s.dgates_ld + j] = static_cast<T>(dh * slope);
  }
};

}  // namespace fused_rnn
