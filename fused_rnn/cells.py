"""Drop-in replacements for torch.nn.LSTMCell, GRUCell and RNNCell: one time step of the
same fused ops the sequence modules use (batch_sizes = [N], T = 1)."""
from typing import Optional, Sequence, Tuple

import torch.nn as nn
from torch import Tensor

from . import ops


class _FusedCellBase(nn.RNNCellBase):
    """Input and state checks shared by the three cells, with torch.nn's exceptions."""

    def _batched(self, input: Tensor, hx: Sequence[Optional[Tensor]]) -> Tuple[Tensor, bool]:
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        for k, h in enumerate(hx):
            label = "hidden" if len(hx) == 1 else f"hx[{k}]"
            if h is not None and h.dim() not in (1, 2):
                raise ValueError(f"{name}: Expected {label} to be 1D or 2D, got {h.dim()}D instead")
        is_batched = input.dim() == 2
        if input.size(-1) != self.input_size:
            raise RuntimeError(f"{name}: input has inconsistent input_size: got {input.size(-1)} expected {self.input_size}")
        if input.dtype != self.weight_ih.dtype:
            raise RuntimeError(f"{name}: input dtype ({input.dtype}) does not match weight dtype ({self.weight_ih.dtype})")
        return (input if is_batched else input.unsqueeze(0)), is_batched

    def _state(self, input: Tensor, h: Optional[Tensor], is_batched: bool, label: str) -> Tensor:
        if h is None:  # cached on the CPU, as the sequence modules' (ops.zero_states)
            return ops.zero_states(1, input.size(0), self.hidden_size, input)[0]
        name = type(self).__name__
        if h.dim() != (2 if is_batched else 1):
            kind = "batched 2-D" if is_batched else "unbatched 1-D"
            raise RuntimeError(f"{name}: for {kind} input, {label} must be {'2' if is_batched else '1'}-D too, "
                               f"got {h.dim()}-D of shape {tuple(h.shape)}")
        h = h if is_batched else h.unsqueeze(0)
        if h.size(0) != input.size(0):
            raise RuntimeError(f"{name}: Input batch size {input.size(0)} doesn't match {label} batch size {h.size(0)}")
        if h.size(1) != self.hidden_size:
            raise RuntimeError(f"{name}: {label} has inconsistent hidden_size: got {h.size(1)}, expected {self.hidden_size}")
        if h.dtype != input.dtype or h.device != input.device:
            raise RuntimeError(f"{name}: {label} must have the dtype and device of input ({input.dtype}, "
                               f"{input.device}), got ({h.dtype}, {h.device})")
        return h

    def _kernel_args(self, x: Tensor, *states: Tensor):
        """x, the states and (w_ih, w_hh, b_ih, b_hh) in the dtype the kernels run in."""
        dtype = ops.kernel_dtype(x)
        return ops.cast([x, *states, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh], dtype)

    def _step_sizes(self, input: Tensor) -> Tensor:
        return ops.uniform_batch_sizes(1, input.size(0))


class LSTMCell(_FusedCellBase):
    """torch.nn.LSTMCell on the fused LSTM op."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=4, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Tensor, Tensor]:
        # torch.nn: TypeError for a non-sequence hx, RuntimeError for the wrong count.
        if hx is not None and not isinstance(hx, (tuple, list)):
            raise TypeError(f"LSTMCell: hx must be a tuple (h_0, c_0) of two tensors, got {type(hx).__name__}")
        if hx is not None and len(hx) != 2:
            raise RuntimeError(f"LSTMCell: hx must be a tuple (h_0, c_0) of two tensors, got {len(hx)} items")
        if hx is not None and not all(isinstance(h, Tensor) for h in hx):
            # torch.nn fails on .dim() of the non-Tensor (AttributeError); (h, None) must not
            # pass as "c_0 omitted".
            raise TypeError(f"LSTMCell: hx must be a tuple (h_0, c_0) of two tensors, got "
                            f"({', '.join(type(h).__name__ for h in hx)})")
        hx = hx if hx is not None else (None, None)
        x, is_batched = self._batched(input, hx)
        h0 = self._state(x, hx[0], is_batched, "hidden0")
        c0 = self._state(x, hx[1], is_batched, "hidden1")
        xk, h0, c0, w_ih, w_hh, b_ih, b_hh = self._kernel_args(x, h0, c0)
        _, h, c = ops.lstm_layer(xk, self._step_sizes(x), h0, c0, w_ih, w_hh, b_ih, b_hh, None, False)
        h, c = h.to(x.dtype), c.to(x.dtype)
        return (h, c) if is_batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(_FusedCellBase):
    """torch.nn.GRUCell on the fused GRU op."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=3, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        x, is_batched = self._batched(input, [hx])
        h0 = self._state(x, hx, is_batched, "hidden")
        xk, h0, w_ih, w_hh, b_ih, b_hh = self._kernel_args(x, h0)
        _, h = ops.gru_layer(xk, self._step_sizes(x), h0, w_ih, w_hh, b_ih, b_hh, False)
        h = h.to(x.dtype)
        return h if is_batched else h.squeeze(0)


class RNNCell(_FusedCellBase):
    """torch.nn.RNNCell (nonlinearity 'tanh' or 'relu') on the fused RNN op."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None) -> None:
        super().__init__(input_size, hidden_size, bias, num_chunks=1, device=device, dtype=dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        x, is_batched = self._batched(input, [hx])
        h0 = self._state(x, hx, is_batched, "hidden")
        if self.nonlinearity not in ("tanh", "relu"):
            # torch.nn.RNNCell accepts any value at construction and refuses it here.
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        xk, h0, w_ih, w_hh, b_ih, b_hh = self._kernel_args(x, h0)
        _, h = ops.rnn_layer(xk, self._step_sizes(x), h0, w_ih, w_hh, b_ih, b_hh, self.nonlinearity == "relu", False)
        h = h.to(x.dtype)
        return h if is_batched else h.squeeze(0)
