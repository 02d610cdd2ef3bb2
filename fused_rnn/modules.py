"""Drop-in replacements for torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell and RNNCell.

The sequence modules subclass torch.nn.RNNBase (not nn.LSTM/GRU/RNN): they inherit the
constructor checks, parameter names, initialisation, repr and state_dict layout of
torch.nn, and torch.compile traces them (it refuses instances of nn.LSTM/GRU/RNN).
Only forward differs: it stacks the fused one-layer, one-direction ops of ops.py.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from . import ops

_State = Union[Tensor, Tuple[Tensor, Tensor]]


class _FusedRNNBase(nn.RNNBase):
    """Shared forward of LSTM, GRU and RNN: input layouts, hidden-state checks, packed
    sequences, layer/direction stacking and inter-layer dropout. Subclasses supply the
    number of state tensors, how hx is checked, and one layer in one direction."""

    _state_count = 1

    def flatten_parameters(self) -> None:
        """No-op: the fused kernels read the parameters as they are; cuDNN's packed weight
        buffer is not used."""

    def _weights_of(self, index: int) -> List[Tensor]:
        # Read by name every call, so that reassigned or functional_call weights are used.
        # Straight from _parameters where the name is there (nn.Module.__getattr__ costs
        # ~0.5 us a weight); getattr where it is not: a parametrization's property, or a
        # plain tensor attribute (old-style weight_norm) after the parameter was removed.
        params = self._parameters
        return [params[name] if params.get(name) is not None else getattr(self, name)
                for name in self._all_weights[index]]

    def _split_weights(self, weights: Sequence[Tensor]):
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of one layer and direction, None where absent."""
        w_ih, w_hh, rest = weights[0], weights[1], list(weights[2:])
        b_ih = b_hh = w_hr = None
        if self.bias:
            b_ih, b_hh, rest = rest[0], rest[1], rest[2:]
        if self.proj_size > 0:
            w_hr = rest[0]
        return w_ih, w_hh, b_ih, b_hh, w_hr

    def _zero_states(self, x: Tensor, batch: int) -> List[Sequence[Tensor]]:
        """Zero h_0 (and c_0) per layer and direction, with x's dtype and device."""
        layers = self.num_layers * (2 if self.bidirectional else 1)
        out = self.proj_size if self.proj_size > 0 else self.hidden_size
        h = ops.zero_states(layers, batch, out, x)
        if self._state_count == 1:
            return [h]
        return [h, ops.zero_states(layers, batch, self.hidden_size, x)]

    def _check_state_consistency(self, states: Sequence[Tensor], input: Tensor) -> None:
        # torch.nn's C++ kernels refuse these with RuntimeError; so do we, before the ops.
        for k, s in enumerate(states):
            name = "hx" if len(states) == 1 else f"hx[{k}]"
            if s.dtype != input.dtype:
                raise RuntimeError(f"{self.mode}: {name} must have dtype {input.dtype} like input, got {s.dtype}")
            if s.device != input.device:
                raise RuntimeError(f"{self.mode}: {name} must be on {input.device} like input, got {s.device}")

    def _check_packed_input(self, data: Tensor, batch_sizes: Tensor) -> None:
        self.check_input(data, batch_sizes)

    def _prepare_state(self, input: Tensor, hx, is_batched: bool, packed: bool,
                       batch_sizes: Optional[Tensor]) -> Tuple[Tensor, ...]:
        """Checks a given hx against input (torch.nn's exceptions) and returns its tensors
        batched, (L*D, N, *) each."""
        raise NotImplementedError

    def _run_layer(self, x: Tensor, batch_sizes: Tensor, states: Sequence[Tensor],
                   weights: Sequence[Tensor], reverse: bool) -> Tuple[Tensor, Tuple[Tensor, ...]]:
        raise NotImplementedError

    def _pack_state(self, states: Sequence[Tensor]) -> _State:
        return states[0] if self._state_count == 1 else (states[0], states[1])

    def forward(self, input: Union[Tensor, PackedSequence],
                hx: Optional[_State] = None) -> Tuple[Union[Tensor, PackedSequence], _State]:
        """torch.nn's forward: `out, h_n = gru(input, h_0)`; `out, (h_n, c_n) = lstm(input, (h_0, c_0))`."""
        name = type(self).__name__
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, sorted_indices, unsorted_indices = input
            is_batched = True
            self._check_packed_input(data, batch_sizes)
            x, run_sizes, seq = data, batch_sizes, None
        else:
            if not isinstance(input, Tensor):
                raise TypeError(f"{name}: input must be a Tensor or PackedSequence, got {type(input).__name__}")
            if input.dim() not in (2, 3):
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D instead")
            is_batched = input.dim() == 3
            if not is_batched:
                input = input.unsqueeze(0 if self.batch_first else 1)
            batch_sizes = sorted_indices = unsorted_indices = None
            self.check_input(input, None)
            seq = input.transpose(0, 1) if self.batch_first else input
            if seq.size(0) == 0:
                raise RuntimeError(f"{name}: Expected sequence length to be larger than 0 in RNN, got input of shape {tuple(input.shape)}")
            steps, batch = seq.size(0), seq.size(1)
            x = seq.reshape(steps * batch, seq.size(2))
            run_sizes = ops.uniform_batch_sizes(steps, batch)
        result_dtype, run_dtype = x.dtype, ops.kernel_dtype(x)
        if hx is None:  # made in the run dtype, on x's device: nothing to check, cast or permute
            x = x if x.dtype == run_dtype else x.to(run_dtype)
            per_layer = self._zero_states(x, int(batch_sizes[0]) if packed else seq.size(1))
        else:
            states = self._prepare_state(data if packed else input, hx, is_batched, packed, batch_sizes)
            self._check_state_consistency(states, x)
            if packed:
                states = tuple(s.index_select(1, sorted_indices) if sorted_indices is not None else s
                               for s in states)
            x, *states = ops.cast([x, *states], run_dtype)
            per_layer = [s.unbind(0) for s in states]  # one call for every layer's view, not one each

        directions = 2 if self.bidirectional else 1
        finals: List[List[Tensor]] = [[] for _ in range(self._state_count)]
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for d in range(directions):
                index = layer * directions + d
                out, new_states = self._run_layer(layer_input, run_sizes, [s[index] for s in per_layer],
                                                  ops.cast(self._weights_of(index), run_dtype), reverse=d == 1)
                outputs.append(out)
                for k, s in enumerate(new_states):
                    finals[k].append(s)
            layer_input = outputs[0] if directions == 1 else torch.cat(outputs, 1)
            if self.dropout > 0 and self.training and layer + 1 < self.num_layers:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        final_states = ops.cast([f[0].unsqueeze(0) if len(f) == 1 else torch.stack(f, 0) for f in finals],
                                result_dtype)
        if layer_input.dtype != result_dtype:
            layer_input = layer_input.to(result_dtype)

        if packed:
            if unsorted_indices is not None:
                final_states = [s.index_select(1, unsorted_indices) for s in final_states]
            return PackedSequence(layer_input, batch_sizes, sorted_indices, unsorted_indices), self._pack_state(final_states)
        output = layer_input.view(seq.size(0), seq.size(1), layer_input.size(1))
        if self.batch_first:
            output = output.transpose(0, 1)
        if not is_batched:
            output = output.squeeze(0 if self.batch_first else 1)
            final_states = [s.squeeze(1) for s in final_states]
        return output, self._pack_state(final_states)


class LSTM(_FusedRNNBase):
    """torch.nn.LSTM on fused kernels; same arguments, parameters, inputs and outputs."""

    _state_count = 2
    check_forward_args = nn.LSTM.check_forward_args
    get_expected_cell_size = nn.LSTM.get_expected_cell_size

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)

    def _check_packed_input(self, data, batch_sizes):
        # torch.nn.LSTM runs no check_input on a PackedSequence (GRU and RNN do): data of
        # another dtype than the weights fails in its first matmul with RuntimeError, not
        # with check_input's ValueError.
        weight = self._flat_weights[0]
        if data.dtype != weight.dtype and not torch._C._is_any_autocast_enabled():
            raise RuntimeError(f"LSTM: PackedSequence data has dtype {data.dtype}, the weights {weight.dtype}")
        super()._check_packed_input(data, batch_sizes)

    def _prepare_state(self, input, hx, is_batched, packed, batch_sizes):
        if not isinstance(hx, (tuple, list)) or len(hx) != 2 or not all(isinstance(h, Tensor) for h in hx):
            raise RuntimeError(f"LSTM: hx must be a tuple (h_0, c_0) of two tensors, got {type(hx).__name__}")
        if not packed:
            want = 3 if is_batched else 2
            if hx[0].dim() != want or hx[1].dim() != want:
                kind = "batched 3-D" if is_batched else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                                   f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
            if not is_batched:
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        self.check_forward_args(input, hx, batch_sizes)
        return tuple(hx)

    def _run_layer(self, x, batch_sizes, states, weights, reverse):
        w_ih, w_hh, b_ih, b_hh, w_hr = self._split_weights(weights)
        out, h_n, c_n = ops.lstm_layer(x, batch_sizes, states[0], states[1], w_ih, w_hh, b_ih, b_hh, w_hr, reverse)
        return out, (h_n, c_n)


class _SingleStateRNN(_FusedRNNBase):
    """GRU and RNN: one state tensor h."""

    def _prepare_state(self, input, hx, is_batched, packed, batch_sizes):
        if not isinstance(hx, Tensor):
            raise TypeError(f"{type(self).__name__}: hx must be a Tensor, got {type(hx).__name__}")
        if not packed:
            want = 3 if is_batched else 2
            if hx.dim() != want:
                kind = "batched 3-D" if is_batched else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got {hx.dim()}-D tensor")
            if not is_batched:
                hx = hx.unsqueeze(1)
        self.check_forward_args(input, hx, batch_sizes)
        return (hx,)


class GRU(_SingleStateRNN):
    """torch.nn.GRU on fused kernels; same arguments, parameters, inputs and outputs."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)

    def _run_layer(self, x, batch_sizes, states, weights, reverse):
        w_ih, w_hh, b_ih, b_hh, _ = self._split_weights(weights)
        out, h_n = ops.gru_layer(x, batch_sizes, states[0], w_ih, w_hh, b_ih, b_hh, reverse)
        return out, (h_n,)


class RNN(_SingleStateRNN):
    """torch.nn.RNN (nonlinearity 'tanh' or 'relu') on fused kernels."""

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        # torch.nn.RNN takes nonlinearity as the fourth positional argument.
        if len(args) > 3:
            self.nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            self.nonlinearity = kwargs.pop("nonlinearity", "tanh")
        modes = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}
        if self.nonlinearity not in modes:
            raise ValueError(f"Unknown nonlinearity '{self.nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(modes[self.nonlinearity], *args, **kwargs)

    def _run_layer(self, x, batch_sizes, states, weights, reverse):
        w_ih, w_hh, b_ih, b_hh, _ = self._split_weights(weights)
        out, h_n = ops.rnn_layer(x, batch_sizes, states[0], w_ih, w_hh, b_ih, b_hh, self.mode == "RNN_RELU", reverse)
        return out, (h_n,)
