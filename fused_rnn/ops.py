"""Typed wrappers over torch.ops.fused_rnn.*, with a fake kernel for every op (so that
torch.compile and torch.export trace them). The autograd formula that wires each
*_forward op to its *_backward op is the ops' Autograd kernel, in csrc/autograd.cpp.

Shapes follow csrc/shapes.h: one layer, one direction, packed rows (R, I) with a
batch_sizes (T,) int64 CPU tensor; an unpacked (T, N, I) input is batch_sizes = [N] * T.
"""
import functools
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from torch.autograd import forward_ad

from . import _C  # noqa: F401  (loading the library registers the ops)
from . import reference

_ops = torch.ops.fused_rnn
_GATES = {"lstm": 4, "gru": 3, "rnn": 1}
_WORKSPACE = {"lstm": 5, "gru": 4, "rnn": 1}


# ---- fake kernels: output shapes only ---------------------------------------------


def _fake_forward(kind, input, h0, w_ih, keep_workspace):
    rows, hidden = input.shape[0], w_ih.shape[0] // _GATES[kind]
    output = input.new_empty(rows, h0.shape[1])
    workspace = input.new_empty(rows if keep_workspace else 0, _WORKSPACE[kind] * hidden)
    return output, h0.new_empty(h0.shape), workspace


@torch.library.register_fake("fused_rnn::lstm_forward")
def _lstm_forward_fake(input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, keep_workspace=True):
    output, h_n, workspace = _fake_forward("lstm", input, h0, w_ih, keep_workspace)
    return output, h_n, c0.new_empty(c0.shape), workspace


@torch.library.register_fake("fused_rnn::gru_forward")
def _gru_forward_fake(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse, keep_workspace=True):
    return _fake_forward("gru", input, h0, w_ih, keep_workspace)


@torch.library.register_fake("fused_rnn::rnn_forward")
def _rnn_forward_fake(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, keep_workspace=True):
    return _fake_forward("rnn", input, h0, w_ih, keep_workspace)


def _fake_weight_grads(input, h0, w_ih, w_hh):
    return (input.new_empty(input.shape), h0.new_empty(h0.shape), w_ih.new_empty(w_ih.shape),
            w_hh.new_empty(w_hh.shape), w_ih.new_empty(w_ih.shape[0]), w_ih.new_empty(w_ih.shape[0]))


@torch.library.register_fake("fused_rnn::lstm_backward")
def _lstm_backward_fake(grad_output, grad_h_n, grad_c_n, input, batch_sizes, h0, c0, w_ih, w_hh,
                        w_hr, output, workspace, reverse):
    g_input, g_h0, g_w_ih, g_w_hh, g_b_ih, g_b_hh = _fake_weight_grads(input, h0, w_ih, w_hh)
    g_w_hr = w_hr.new_empty(w_hr.shape) if w_hr is not None else input.new_empty(0)
    return g_input, g_h0, c0.new_empty(c0.shape), g_w_ih, g_w_hh, g_b_ih, g_b_hh, g_w_hr


@torch.library.register_fake("fused_rnn::gru_backward")
def _gru_backward_fake(grad_output, grad_h_n, input, batch_sizes, h0, w_ih, w_hh, output,
                       workspace, reverse):
    return _fake_weight_grads(input, h0, w_ih, w_hh)


@torch.library.register_fake("fused_rnn::rnn_backward")
def _rnn_backward_fake(grad_output, grad_h_n, input, batch_sizes, h0, w_ih, w_hh, output,
                       workspace, relu, reverse):
    return _fake_weight_grads(input, h0, w_ih, w_hh)


@torch.library.register_fake("fused_rnn::mm")
def _mm_fake(self, mat2):
    return self.new_empty(self.shape[0], mat2.shape[1])


# ---- typed entry points used by the modules ---------------------------------------

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def kernel_dtype(x: Tensor) -> torch.dtype:
    """The dtype the fused kernels run in for an input like x. The CPU has no float16 /
    bfloat16 kernels: the modules run such inputs in float32 end to end (inputs, state and
    weights cast once per call) and round only the results back."""
    # dtype first: the device test builds a torch.device object, and most inputs are not half
    return torch.float32 if x.dtype in _HALF_DTYPES and x.device.type == "cpu" else x.dtype


def cast(tensors: Sequence[Optional[Tensor]], dtype: torch.dtype) -> List[Optional[Tensor]]:
    """The tensors in dtype (None stays None); differentiable, a no-op when already so."""
    return [t if t is None or t.dtype == dtype else t.to(dtype) for t in tensors]



# An unpacked (T, N, I) input runs as batch_sizes = [N] * T. torch.full costs about 1.5 us,
# a tenth of a module's own time around a short sequence, so each (T, N) is built once;
# the ops only read it. Created outside inference mode, so that a first call under
# torch.inference_mode() does not cache a tensor that autograd may not save later.
_CACHED_MAX_STEPS = 1 << 14  # at most 128 KB a tensor, 64 of them


@functools.lru_cache(maxsize=64)
def _cached_uniform_batch_sizes(steps: int, batch: int) -> Tensor:
    with torch.inference_mode(False):
        return torch.full((steps,), batch, dtype=torch.long)


def uniform_batch_sizes(steps: int, batch: int) -> Tensor:
    """The batch_sizes (T,) int64 CPU tensor of an unpacked input: [batch] * steps."""
    if torch.compiler.is_compiling() or steps > _CACHED_MAX_STEPS:
        return torch.full((steps,), batch, dtype=torch.long)
    return _cached_uniform_batch_sizes(steps, batch)


# The zero initial states of a call without hx, per layer and direction: torch.zeros and
# unbind cost 13-18 us a module call back to back on the Zen 3 and 50-85 us right after a
# long call, whose megabytes leave the interpreter cold (bench/profiling/module_python.py),
# so on the CPU each (count, batch, width, dtype) is built once: the ops only read h0 and
# c0 (they return new tensors). Bounded like the batch sizes; created outside inference
# mode for the same reason. Not on the GPU: there a cached buffer read on another stream
# could be reused by the allocator once evicted.
_CACHED_MAX_STATE_ELEMENTS = 1 << 16  # at most 256 KB of float32 a state, 64 of them


@functools.lru_cache(maxsize=64)
def _cached_zero_states(count: int, batch: int, width: int, dtype: torch.dtype) -> Tuple[Tensor, ...]:
    with torch.inference_mode(False):
        return torch.zeros(count, batch, width, dtype=dtype).unbind(0)


def zero_states(count: int, batch: int, width: int, like: Tensor) -> Sequence[Tensor]:
    """`count` zero states (batch, width) with like's dtype and device, as views of one
    buffer."""
    if (not like.is_cpu or count * batch * width > _CACHED_MAX_STATE_ELEMENTS
            or torch.compiler.is_compiling()):
        return torch.zeros(count, batch, width, dtype=like.dtype, device=like.device).unbind(0)
    return _cached_zero_states(count, batch, width, like.dtype)


def _needs_reference(*tensors: Optional[Tensor]) -> bool:
    """True under forward-mode AD or a torch.func transform (grad, jvp, vmap), which the
    fused ops do not implement: the layer then runs the reference loops of reference.py
    (plain differentiable torch ops, slower) instead of silently losing tangents."""
    if torch.compiler.is_compiling():
        return False
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return True
    if forward_ad._current_level < 0:  # no dual_level is active: no tensor can carry a tangent
        return False
    return any(t is not None and forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def _backward_may_follow(*tensors: Optional[Tensor]) -> bool:
    """Whether autograd will record the forward op: only then must it keep its workspace
    (without it, the CPU forward holds one chunk of pre-activations at a time)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def lstm_layer(input: Tensor, batch_sizes: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
               b_ih: Optional[Tensor], b_hh: Optional[Tensor], w_hr: Optional[Tensor],
               reverse: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer in one direction: returns (output (R, P), h_n (N, P), c_n (N, H))."""
    if _needs_reference(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
        return reference.lstm_layer(input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse)
    keep = _backward_may_follow(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    output, h_n, c_n, _ = _ops.lstm_forward(input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, keep)
    return output, h_n, c_n


def gru_layer(input: Tensor, batch_sizes: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Optional[Tensor], b_hh: Optional[Tensor], reverse: bool) -> Tuple[Tensor, Tensor]:
    """One GRU layer in one direction: returns (output (R, H), h_n (N, H))."""
    if _needs_reference(input, h0, w_ih, w_hh, b_ih, b_hh):
        return reference.stateless_layer("gru", input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse)
    keep = _backward_may_follow(input, h0, w_ih, w_hh, b_ih, b_hh)
    output, h_n, _ = _ops.gru_forward(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse, keep)
    return output, h_n


def rnn_layer(input: Tensor, batch_sizes: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Optional[Tensor], b_hh: Optional[Tensor], relu: bool,
              reverse: bool) -> Tuple[Tensor, Tensor]:
    """One vanilla RNN layer (tanh, or relu) in one direction: returns (output (R, H), h_n (N, H))."""
    if _needs_reference(input, h0, w_ih, w_hh, b_ih, b_hh):
        return reference.stateless_layer("rnn", input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse)
    keep = _backward_may_follow(input, h0, w_ih, w_hh, b_ih, b_hh)
    output, h_n, _ = _ops.rnn_forward(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, keep)
    return output, h_n
