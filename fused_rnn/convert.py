"""Swap torch.nn recurrent modules for their fused_rnn twins in a model, and back.

    model = fused_rnn.convert(model)     # nn.LSTM -> fused_rnn.LSTM, nn.GRUCell -> ..., in place
    model = fused_rnn.to_torch(model)    # and back

Like torch.nn.SyncBatchNorm.convert_sync_batchnorm, the swap happens in place inside
containers, and the (possibly new) root is returned: use the return value. The new modules
hold the SAME Parameter objects as the old ones, so values, device, dtype, requires_grad,
and an optimizer built before the swap all carry over; only the class changes.

Only modules whose type is exactly one of the six torch.nn classes (or, for to_torch,
exactly one of the six fused_rnn classes) are swapped: a user subclass may override forward,
and swapping its class would silently drop that code.
"""
import warnings
from typing import Dict, Type

import torch.nn as nn

from .cells import GRUCell, LSTMCell, RNNCell
from .modules import GRU, LSTM, RNN

__all__ = ["convert", "to_torch"]

_TO_FUSED: Dict[Type[nn.Module], Type[nn.Module]] = {
    nn.LSTM: LSTM, nn.GRU: GRU, nn.RNN: RNN,
    nn.LSTMCell: LSTMCell, nn.GRUCell: GRUCell, nn.RNNCell: RNNCell,
}
_TO_TORCH: Dict[Type[nn.Module], Type[nn.Module]] = {v: k for k, v in _TO_FUSED.items()}

# Module attributes holding hook tables; copied so that registered hooks keep running.
_HOOK_TABLES = (
    "_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_backward_hooks",
    "_backward_pre_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)

def _constructor_kwargs(module: nn.Module) -> dict:
    """Every constructor setting of a sequence module or a cell, by keyword."""
    if isinstance(module, nn.RNNBase):
        kwargs = dict(input_size=module.input_size, hidden_size=module.hidden_size,
                      num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                      dropout=module.dropout, bidirectional=module.bidirectional)
        if module.mode == "LSTM":
            kwargs["proj_size"] = module.proj_size
        elif module.mode in ("RNN_TANH", "RNN_RELU"):
            kwargs["nonlinearity"] = module.nonlinearity
        return kwargs
    kwargs = dict(input_size=module.input_size, hidden_size=module.hidden_size, bias=module.bias)
    if hasattr(module, "nonlinearity"):  # RNNCell
        kwargs["nonlinearity"] = module.nonlinearity
    return kwargs


def _swap(module: nn.Module, target: Type[nn.Module]) -> nn.Module:
    """A `target` instance with the settings, Parameters, buffers, hooks and mode of `module`."""
    with warnings.catch_warnings():  # e.g. "dropout with num_layers=1": torch.nn warned already
        warnings.simplefilter("ignore")
        # Built on the meta device: nothing is allocated or initialised, the real tensors follow.
        new = target(**_constructor_kwargs(module), device="meta")
    missing = [name for name in new._parameters if name not in module._parameters]
    if missing:  # e.g. a weight moved out of _parameters by a reparametrisation
        raise RuntimeError(f"fused_rnn: cannot swap {type(module).__name__} for {target.__name__}: "
                           f"it holds no parameter {', '.join(missing)}")
    new._parameters.clear()
    for name, param in module._parameters.items():  # in the old order: same state_dict order
        new.register_parameter(name, param)  # the same Parameter object (None for a disabled bias)
    for name, buffer in module._buffers.items():
        new.register_buffer(name, buffer, persistent=name not in module._non_persistent_buffers_set)
    for name, child in module._modules.items():
        new._modules[name] = child
    for table in _HOOK_TABLES:
        if table in module.__dict__:
            new.__dict__[table] = module.__dict__[table].copy()
    if isinstance(new, nn.RNNBase):
        new._init_flat_weights()  # point _flat_weights at the real Parameters (and let cuDNN pack them)
    new.train(module.training)
    return new


def _replace(model: nn.Module, mapping: Dict[Type[nn.Module], Type[nn.Module]],
             done: Dict[int, nn.Module]) -> nn.Module:
    if id(model) in done:  # a module that appears in several places stays one module
        return done[id(model)]
    target = mapping.get(type(model))
    if target is not None:
        result = _swap(model, target)
    else:
        result = model
        for name, child in list(model._modules.items()):
            if child is not None:
                model._modules[name] = _replace(child, mapping, done)
    done[id(model)] = result
    return result


def convert(model: nn.Module) -> nn.Module:
    """Replaces every torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell and RNNCell in `model`
    (including `model` itself) with the fused_rnn module of the same name and settings,
    sharing its Parameters. Containers are changed in place; returns the new root."""
    return _replace(model, _TO_FUSED, {})


def to_torch(model: nn.Module) -> nn.Module:
    """The inverse of convert: every fused_rnn module in `model` (including `model` itself)
    becomes the torch.nn module of the same name and settings, sharing its Parameters."""
    return _replace(model, _TO_TORCH, {})
