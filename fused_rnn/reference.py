"""Readable pure-PyTorch step loops over a packed sequence: the executable specification of
the fused ops (same arguments, same math as torch.nn, see ../shared DESIGN notes), used by
the tests and as the differentiable backward when a caller asks for double backward
(create_graph=True): these loops are built from differentiable torch ops only.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _steps(batch_sizes: Tensor, reverse: bool) -> List[Tuple[int, int, int]]:
    """(t, row offset, active rows) of every step, in processing order."""
    sizes = [int(b) for b in batch_sizes.tolist()]
    offsets = [sum(sizes[:t]) for t in range(len(sizes))]
    order = range(len(sizes) - 1, -1, -1) if reverse else range(len(sizes))
    return [(t, offsets[t], sizes[t]) for t in order]


def _replace_rows(state: Tensor, rows: Tensor) -> Tensor:
    """The state with its first rows replaced (sequences still running), out of place."""
    return torch.cat([rows, state[rows.shape[0]:]], 0)


def lstm_cell_step(x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr=None):
    i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, 1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_next = torch.sigmoid(o) * torch.tanh(c_next)
    if w_hr is not None:
        h_next = F.linear(h_next, w_hr)
    return h_next, c_next


def gru_cell_step(x, h, w_ih, w_hh, b_ih, b_hh):
    x_r, x_z, x_n = F.linear(x, w_ih, b_ih).chunk(3, 1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, 1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def rnn_cell_step(x, h, w_ih, w_hh, b_ih, b_hh, relu=False):
    pre = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    return torch.relu(pre) if relu else torch.tanh(pre)


def lstm_layer(input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse):
    """Same contract as torch.ops.fused_rnn.lstm_forward, without the workspace."""
    outputs: List[Optional[Tensor]] = [None] * batch_sizes.numel()
    h, c = h0, c0
    for t, off, b in _steps(batch_sizes, reverse):
        h_next, c_next = lstm_cell_step(input[off:off + b], h[:b], c[:b], w_ih, w_hh, b_ih, b_hh, w_hr)
        outputs[t] = h_next
        h, c = _replace_rows(h, h_next), _replace_rows(c, c_next)
    return _concat(outputs, input, h0.shape[1]), h, c


def stateless_layer(kind, input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, *flags):
    """GRU (flags: reverse) or vanilla RNN (flags: relu, reverse), like the fused ops."""
    reverse = flags[-1]
    outputs: List[Optional[Tensor]] = [None] * batch_sizes.numel()
    h = h0
    for t, off, b in _steps(batch_sizes, reverse):
        x = input[off:off + b]
        if kind == "gru":
            h_next = gru_cell_step(x, h[:b], w_ih, w_hh, b_ih, b_hh)
        else:
            h_next = rnn_cell_step(x, h[:b], w_ih, w_hh, b_ih, b_hh, relu=flags[0])
        outputs[t] = h_next
        h = _replace_rows(h, h_next)
    return _concat(outputs, input, h0.shape[1]), h


def _concat(outputs: Sequence[Optional[Tensor]], like: Tensor, width: int) -> Tensor:
    parts = [o for o in outputs if o is not None]
    return torch.cat(parts, 0) if parts else like.new_zeros(0, width)


def _differentiable_grads(outputs, grad_outputs, inputs, needs_grad):
    """Gradients of `outputs` w.r.t. `inputs` as a graph (create_graph=True); None where
    an input needs no gradient."""
    wanted = [x for x, need in zip(inputs, needs_grad) if need and x is not None and x.requires_grad]
    grads = iter(torch.autograd.grad(outputs, wanted, grad_outputs, create_graph=True, allow_unused=True)
                 if wanted else [])
    result = []
    for x, need in zip(inputs, needs_grad):
        if need and x is not None and x.requires_grad:
            g = next(grads)
            result.append(torch.zeros_like(x) if g is None else g)
        else:
            result.append(None)
    return result


def layer_grads(kind, tensors, flags, needs, grads):
    """Gradients of one fused layer as a differentiable graph: the backward that
    csrc/autograd.cpp runs under create_graph=True. tensors = (input, batch_sizes, h0, c0,
    w_ih, w_hh, b_ih, b_hh, w_hr), None where absent; flags = (relu, reverse); needs: which
    of (input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr) want a gradient; grads: the gradients
    of the op's outputs (None where unused; the workspace's last). Returns the gradients of
    those eight, None where not wanted."""
    input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = tensors
    relu, reverse = flags
    with torch.enable_grad():
        if kind == "lstm":
            outs = lstm_layer(input, batch_sizes, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, reverse)
        elif kind == "gru":
            outs = stateless_layer("gru", input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse)
        else:
            outs = stateless_layer("rnn", input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse)
    grads_in = [g if g is not None else torch.zeros_like(o) for g, o in zip(grads, outs)]
    return _differentiable_grads(outs, grads_in, (input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr), needs)
