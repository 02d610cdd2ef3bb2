"""The three implementations compared on each problem, built from identical weights, their
inputs, and the callables that run one forward or one forward+backward:

- fused:     fused_rnn.LSTM / GRU / RNN
- torch_nn:  torch.nn.LSTM / GRU / RNN (oneDNN or the native loop on CPU, cuDNN on GPU)
- cell_loop: a Python loop over torch.nn.LSTMCell / GRUCell / RNNCell, one call per time step
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fused_rnn
from configs import Config

IMPLS = ("fused", "torch_nn", "cell_loop")
DISPLAY = {"fused": "fused_rnn", "torch_nn": "torch.nn", "cell_loop": "cell loop"}

_MODULES = {
    "lstm": (nn.LSTM, fused_rnn.LSTM, {}),
    "gru": (nn.GRU, fused_rnn.GRU, {}),
    "rnn_tanh": (nn.RNN, fused_rnn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, fused_rnn.RNN, {"nonlinearity": "relu"}),
}

Input = Union[Tensor, PackedSequence]


class CellLoop(nn.Module):
    """What a user writes without a sequence module: one torch.nn cell per layer and
    direction, called once per time step from Python. Handles packed input the way the
    sequence modules do: at step t only the first batch_sizes[t] rows are active."""

    def __init__(self, reference: nn.RNNBase):
        super().__init__()
        self.is_lstm = reference.mode == "LSTM"
        self.layers, self.directions = reference.num_layers, 2 if reference.bidirectional else 1
        self.cells = nn.ModuleList()
        for layer in range(self.layers):
            for d in range(self.directions):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                w_ih = getattr(reference, "weight_ih" + suffix)
                cell = self._make_cell(reference, w_ih.shape[1], w_ih)
                with torch.no_grad():
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                        getattr(cell, name).copy_(getattr(reference, name + suffix))
                self.cells.append(cell)

    @staticmethod
    def _make_cell(reference: nn.RNNBase, input_size: int, like: Tensor) -> nn.Module:
        kw = {"bias": True, "device": like.device, "dtype": like.dtype}
        if reference.mode == "LSTM":
            return nn.LSTMCell(input_size, reference.hidden_size, **kw)
        if reference.mode == "GRU":
            return nn.GRUCell(input_size, reference.hidden_size, **kw)
        return nn.RNNCell(input_size, reference.hidden_size,
                          nonlinearity="relu" if reference.mode == "RNN_RELU" else "tanh", **kw)

    def _direction(self, cell: nn.Module, x: Tensor, sizes: List[int], offsets: List[int],
                   reverse: bool) -> Tensor:
        batch, hidden = sizes[0], cell.hidden_size
        h = x.new_zeros(batch, hidden)
        c = x.new_zeros(batch, hidden) if self.is_lstm else None
        outputs: List[Optional[Tensor]] = [None] * len(sizes)
        for t in (reversed(range(len(sizes))) if reverse else range(len(sizes))):
            b, x_t = sizes[t], x[offsets[t]:offsets[t] + sizes[t]]
            full = b == h.shape[0]
            if self.is_lstm:
                h_t, c_t = cell(x_t, (h, c) if full else (h[:b], c[:b]))
                c = c_t if full else torch.cat([c_t, c[b:]])
            else:
                h_t = cell(x_t, h if full else h[:b])
            h = h_t if full else torch.cat([h_t, h[b:]])
            outputs[t] = h_t
        return torch.cat(outputs)

    def forward(self, input: Input) -> Tuple[Input, None]:
        if isinstance(input, PackedSequence):
            x, sizes = input.data, input.batch_sizes.tolist()
        else:
            x, sizes = input.reshape(-1, input.shape[2]), [input.shape[1]] * input.shape[0]
        offsets = [0] * len(sizes)
        for t in range(1, len(sizes)):
            offsets[t] = offsets[t - 1] + sizes[t - 1]
        for layer in range(self.layers):
            outs = [self._direction(self.cells[layer * self.directions + d], x, sizes, offsets, d == 1)
                    for d in range(self.directions)]
            x = outs[0] if self.directions == 1 else torch.cat(outs, 1)
        if isinstance(input, PackedSequence):
            return PackedSequence(x, input.batch_sizes, input.sorted_indices, input.unsorted_indices), None
        return x.view(input.shape[0], input.shape[1], -1), None


def build_modules(cfg: Config, dtype: torch.dtype, device: torch.device, seed: int) -> Dict[str, nn.Module]:
    """torch.nn's module with its default initialisation under `seed`, and the other two
    loaded from its weights (load_state_dict strict for the fused module)."""
    nn_cls, fused_cls, kw = _MODULES[cfg.cell]
    args = dict(input_size=cfg.I, hidden_size=cfg.H, num_layers=cfg.layers,
                bidirectional=cfg.bidirectional, **kw)
    torch.manual_seed(seed)
    reference = nn_cls(**args).to(device=device, dtype=dtype)
    fused = fused_cls(**args).to(device=device, dtype=dtype)
    fused.load_state_dict(reference.state_dict(), strict=True)
    return {"fused": fused, "torch_nn": reference, "cell_loop": CellLoop(reference)}


@dataclass
class Inputs:
    plain: Input          # for forward-only calls
    leaf: Input           # the same values, its data a leaf that requires grad
    leaf_data: Tensor
    grad_output: Tensor   # the random gradient of the output (of its .data when packed)
    tokens: int           # time steps times sequences actually processed


def make_inputs(cfg: Config, dtype: torch.dtype, device: torch.device, seed: int) -> Inputs:
    """Random (T, N, I) input; packed: lengths uniform in [1, T] from a fixed seed."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(cfg.T, cfg.N, cfg.I, generator=gen).to(device=device, dtype=dtype)
    out_features = cfg.H * cfg.directions
    if cfg.packed:
        lengths = torch.randint(1, cfg.T + 1, (cfg.N,), generator=gen)
        plain = pack_padded_sequence(x, lengths, enforce_sorted=False)
        data = plain.data.detach().requires_grad_(True)
        leaf = PackedSequence(data, plain.batch_sizes, plain.sorted_indices, plain.unsorted_indices)
        tokens = int(lengths.sum())
        grad = torch.randn(tokens, out_features, generator=gen)
    else:
        plain, data = x, x.detach().clone().requires_grad_(True)
        leaf, tokens = data, cfg.T * cfg.N
        grad = torch.randn(cfg.T, cfg.N, out_features, generator=gen)
    return Inputs(plain, leaf, data, grad.to(device=device, dtype=dtype), tokens)


def _output_data(output: Input) -> Tensor:
    return output.data if isinstance(output, PackedSequence) else output


def forward_runner(module: nn.Module, inputs: Inputs) -> Callable[[], None]:
    """One forward pass under torch.no_grad()."""
    def run() -> None:
        with torch.no_grad():
            module(inputs.plain)
    return run


def fwdbwd_runner(module: nn.Module, inputs: Inputs) -> Callable[[], None]:
    """One forward pass and the backward of a fixed random output gradient, to every
    parameter and the input; torch.autograd.grad, so no .grad accumulates between calls."""
    wrt = list(module.parameters()) + [inputs.leaf_data]

    def run() -> None:
        output, _ = module(inputs.leaf)
        torch.autograd.grad(_output_data(output), wrt, inputs.grad_output)
    return run


def first_outputs(modules: Dict[str, nn.Module], inputs: Inputs) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """One forward of each implementation (also a warm-up): its output, or why it failed
    (e.g. a dtype that an implementation does not support on this device)."""
    outputs: Dict[str, Tensor] = {}
    errors: Dict[str, str] = {}
    for name, module in modules.items():
        try:
            with torch.no_grad():
                outputs[name] = _output_data(module(inputs.plain)[0]).float()
        except (RuntimeError, TypeError, NotImplementedError) as error:
            errors[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return outputs, errors


def max_abs_diff(outputs: Dict[str, Tensor], against: str = "torch_nn") -> Dict[str, float]:
    """Largest |output - torch.nn output| of each other implementation."""
    if against not in outputs:
        return {}
    ref = outputs[against]
    return {name: float((out - ref).abs().max()) for name, out in outputs.items() if name != against}
