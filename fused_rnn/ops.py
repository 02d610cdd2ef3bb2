"""Typed wrappers over torch.ops.fused_rnn.*, with a fake kernel for every op (so that
torch.compile and torch.export trace them) and the autograd formulas that wire each
*_forward op to its *_backward op.

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


# ---- autograd ------------------------------------------------------------------------


def _or_zeros(grad: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros_like(like) if grad is None else grad


def _output_to_keep(batch_sizes: Tensor, out: Tensor, h_n: Tensor) -> Tensor:
    """The output for backward. With one full time step (a Cell) it equals h_n, which the
    caller keeps anyway, whereas a Cell drops `out`: saving h_n keeps one copy alive, not two."""
    return h_n if batch_sizes.shape[0] == 1 and out.shape[0] == h_n.shape[0] else out


def _mark_workspace(ctx, workspace: Tensor) -> None:
    """The workspace has no gradient. Unused output gradients reach backward as None (see
    _or_zeros), not as zeros: autograd would otherwise allocate and fill a zero gradient
    the size of the whole workspace (R, 5H) on every backward."""
    ctx.mark_non_differentiable(workspace)
    ctx.set_materialize_grads(False)


def _lstm_setup_context(ctx, inputs, output):
    input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, _keep_workspace = inputs
    out, h_n, c_n, workspace = output
    _mark_workspace(ctx, workspace)
    ctx.save_for_backward(input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr,
                          _output_to_keep(batch_sizes, out, h_n), workspace)
    ctx.reverse = reverse


def _lstm_backward(ctx, grad_out, grad_h_n, grad_c_n, _grad_workspace):
    input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, out, workspace = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: a backward that is itself differentiable
        from .reference import lstm_layer_grads
        return lstm_layer_grads(ctx, grad_out, grad_h_n, grad_c_n)
    g = _ops.lstm_backward(_or_zeros(grad_out, out), _or_zeros(grad_h_n, h0), _or_zeros(grad_c_n, c0),
                           input, batch_sizes, h0, c0, w_ih, w_hh, w_hr, out, workspace, ctx.reverse)
    g_input, g_h0, g_c0, g_w_ih, g_w_hh, g_b_ih, g_b_hh, g_w_hr = g
    return (g_input, None, g_h0, g_c0, g_w_ih, g_w_hh,
            g_b_ih if b_ih is not None else None, g_b_hh if b_hh is not None else None,
            g_w_hr if w_hr is not None else None, None, None)


def _below_autograd(kind: str):
    """fused_rnn::{kind}_forward called below autograd. The eager autograd.Function of
    _register_autograd runs the kernel this way, and so do eager calls that autograd does
    not record: through the registered op, even under no_grad, they would pass the Python
    kernel that torch.library.register_autograd installs (about 4 us of an LSTM (1, 1, 128)
    forward's 25)."""
    name = f"{kind}_forward"

    def run(*args):
        with torch._C._AutoDispatchBelowAutograd():
            return getattr(_ops, name)(*args)  # looked up per call: tests stand in for _ops

    return run


_BELOW_AUTOGRAD = {kind: _below_autograd(kind) for kind in ("lstm", "gru", "rnn")}


def _register_autograd(kind, backward, setup_context):
    """Registers the autograd formula of fused_rnn::{kind}_forward (what torch.compile,
    torch.export and opcheck use) and returns an eager autograd.Function with the same
    formula, which the layers call directly when autograd records them.

    Why two entry points: the registered formula runs through torch.library's Python
    wrapper, which rebuilds the op's arguments from its schema on every call (about 19 us,
    as much as a whole LSTM (1, 1, 128) forward); the Function calls the kernel below
    autograd itself and then the very same setup_context and backward."""
    name = f"{kind}_forward"
    torch.library.register_autograd(f"fused_rnn::{name}", backward, setup_context=setup_context)

    below_autograd = _BELOW_AUTOGRAD[kind]

    def forward(ctx, *args):
        output = below_autograd(*args)
        setup_context(ctx, args, output)
        return output

    function = type(f"{kind.upper()}Forward", (torch.autograd.Function,),
                    {"forward": staticmethod(forward), "backward": staticmethod(backward)})
    return function.apply


_EAGER_FORWARD = {"lstm": _register_autograd("lstm", _lstm_backward, _lstm_setup_context)}


def _stateless_setup_context(kind, ctx, inputs, output):
    input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh = inputs[:7]
    out, h_n, workspace = output
    _mark_workspace(ctx, workspace)
    ctx.flags = inputs[7:-1]  # (reverse,) for GRU, (relu, reverse) for RNN; then keep_workspace
    # A vanilla RNN's workspace holds exactly its output (the activated h): keep one copy.
    kept_workspace = None if kind == "rnn" else workspace
    ctx.save_for_backward(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, _output_to_keep(batch_sizes, out, h_n),
                          kept_workspace)


def _make_stateless_backward(kind):
    backward_op = getattr(_ops, f"{kind}_backward")

    def backward(ctx, grad_out, grad_h_n, _grad_workspace):
        input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, out, workspace = ctx.saved_tensors
        workspace = out if workspace is None else workspace
        if torch.is_grad_enabled():
            from .reference import stateless_layer_grads
            return stateless_layer_grads(kind, ctx, grad_out, grad_h_n)
        g_input, g_h0, g_w_ih, g_w_hh, g_b_ih, g_b_hh = backward_op(
            _or_zeros(grad_out, out), _or_zeros(grad_h_n, h0), input, batch_sizes, h0, w_ih, w_hh, out,
            workspace, *ctx.flags)
        return (g_input, None, g_h0, g_w_ih, g_w_hh, g_b_ih if b_ih is not None else None,
                g_b_hh if b_hh is not None else None) + (None,) * (len(ctx.flags) + 1)

    return backward


for _kind in ("gru", "rnn"):
    _EAGER_FORWARD[_kind] = _register_autograd(_kind, _make_stateless_backward(_kind),
                                               functools.partial(_stateless_setup_context, _kind))


# ---- typed entry points used by the modules ---------------------------------------

_HALF_DTYPES = (torch.float16, torch.bfloat16)


def kernel_dtype(x: Tensor) -> torch.dtype:
    """The dtype the fused kernels run in for an input like x. The CPU has no float16 /
    bfloat16 kernels: the modules run such inputs in float32 end to end (inputs, state and
    weights cast once per call) and round only the results back."""
    return torch.float32 if x.device.type == "cpu" and x.dtype in _HALF_DTYPES else x.dtype


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


def _forward_op(kind: str, recorded: bool):
    """The callable that runs fused_rnn::{kind}_forward. Eager calls on real tensors run the
    eager autograd.Function where autograd records them, else the op below autograd; calls
    traced by torch.compile / torch.export / a dispatch mode get the registered op, which
    they need (with its registered autograd formula)."""
    if not torch.compiler.is_compiling() and torch._C._len_torch_dispatch_stack() == 0:
        return _EAGER_FORWARD[kind] if recorded else _BELOW_AUTOGRAD[kind]
    return getattr(_ops, f"{kind}_forward")


def lstm_layer(input: Tensor, batch_sizes: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
               b_ih: Optional[Tensor], b_hh: Optional[Tensor], w_hr: Optional[Tensor],
               reverse: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer in one direction: returns (output (R, P), h_n (N, P), c_n (N, H))."""
    if _needs_reference(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
        return reference.lstm_layer(input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse)
    keep = _backward_may_follow(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    output, h_n, c_n, _ = _forward_op("lstm", keep)(input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse, keep)
    return output, h_n, c_n


def gru_layer(input: Tensor, batch_sizes: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Optional[Tensor], b_hh: Optional[Tensor], reverse: bool) -> Tuple[Tensor, Tensor]:
    """One GRU layer in one direction: returns (output (R, H), h_n (N, H))."""
    if _needs_reference(input, h0, w_ih, w_hh, b_ih, b_hh):
        return reference.stateless_layer("gru", input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse)
    keep = _backward_may_follow(input, h0, w_ih, w_hh, b_ih, b_hh)
    output, h_n, _ = _forward_op("gru", keep)(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse, keep)
    return output, h_n


def rnn_layer(input: Tensor, batch_sizes: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
              b_ih: Optional[Tensor], b_hh: Optional[Tensor], relu: bool,
              reverse: bool) -> Tuple[Tensor, Tensor]:
    """One vanilla RNN layer (tanh, or relu) in one direction: returns (output (R, H), h_n (N, H))."""
    if _needs_reference(input, h0, w_ih, w_hh, b_ih, b_hh):
        return reference.stateless_layer("rnn", input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse)
    keep = _backward_may_follow(input, h0, w_ih, w_hh, b_ih, b_hh)
    output, h_n, _ = _forward_op("rnn", keep)(input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, keep)
    return output, h_n
