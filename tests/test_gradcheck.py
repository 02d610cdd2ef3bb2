"""torch.autograd.gradcheck (fused backward ops) and gradgradcheck (double backward, which
runs through fused_rnn.reference) in float64, with respect to input, states and weights."""
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from helpers import CELLS, MODES, assert_close, cell_case, output_tensors, randn, sequence_case

SMALL = dict(T=3, N=2, I=3, H=3)
TINY = dict(T=2, N=2, I=2, H=2)


def as_function(module, leaves, make_args):
    """f(*leaves, *parameters) -> the module's output tensors, and the tensors to check."""
    names = [name for name, _ in module.named_parameters()]
    count = len(leaves)

    def f(*tensors):
        weights = dict(zip(names, tensors[count:]))
        out = torch.func.functional_call(module, weights, make_args(*tensors[:count]))
        return tuple(output_tensors(out))

    inputs = [t.detach().clone().requires_grad_() for t in leaves]
    inputs += [p.detach().clone().requires_grad_() for p in module.parameters()]
    return f, tuple(inputs)


def fused_function(case):
    _, fused, leaves, make_args = case
    return as_function(fused, leaves, make_args)


SEQUENCE_CONFIGS = [
    dict(layers=2, bidirectional=True, **SMALL),
    dict(lengths=[3, 1, 2], N=3, enforce_sorted=False, bidirectional=True, T=3, I=3, H=3),
    dict(unbatched=True, batch_first=True, bias=False, hx=False, **SMALL),
]


@pytest.mark.parametrize("config", SEQUENCE_CONFIGS, ids=["stacked-bidirectional", "packed-bidirectional",
                                                          "unbatched-nobias"])
@pytest.mark.parametrize("kind", MODES)
def test_gradcheck_sequence(kind, config):
    f, inputs = fused_function(sequence_case(kind, **config))
    assert gradcheck(f, inputs)


@pytest.mark.parametrize("config", [
    dict(proj_size=2, layers=2, bidirectional=True, **SMALL),
    dict(proj_size=1, lengths=[2, 3], N=2, enforce_sorted=False, batch_first=True, T=3, I=2, H=3),
], ids=["stacked-bidirectional", "packed"])
def test_gradcheck_projected_lstm(config):
    f, inputs = fused_function(sequence_case("LSTM", **config))
    assert gradcheck(f, inputs)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("batched", [True, False])
def test_gradcheck_cell(kind, batched):
    f, inputs = fused_function(cell_case(kind, batched=batched, N=2, I=3, H=3))
    assert gradcheck(f, inputs)


@pytest.mark.parametrize("kind", MODES)
def test_gradgradcheck_sequence(kind):
    f, inputs = fused_function(sequence_case(kind, layers=2, bidirectional=True, **TINY))
    assert gradgradcheck(f, inputs)


def test_gradgradcheck_packed_projected_lstm():
    f, inputs = fused_function(sequence_case("LSTM", proj_size=1, lengths=[2, 1], enforce_sorted=False, **TINY))
    assert gradgradcheck(f, inputs)


@pytest.mark.parametrize("kind", CELLS)
def test_gradgradcheck_cell(kind):
    f, inputs = fused_function(cell_case(kind, N=2, I=2, H=2))
    assert gradgradcheck(f, inputs)


@pytest.mark.parametrize("kind", MODES)
def test_create_graph_gradients_match_fused_backward(kind):
    """The differentiable backward used under create_graph=True (fused_rnn.reference) gives
    the same first-order gradients as the fused backward ops, and those match torch.nn's
    second-order gradients too."""
    ref, fused, leaves, make_args = sequence_case(kind, layers=2, bidirectional=True,
                                                  lengths=[4, 2, 3], enforce_sorted=False, T=4)
    results = []
    for module, create_graph in ((fused, False), (fused, True), (ref, True)):
        f, inputs = as_function(module, leaves, make_args)
        outs = f(*inputs)
        cotangents = [randn(*o.shape, seed=7 + k) for k, o in enumerate(outs)]
        grads = torch.autograd.grad(outs, inputs, cotangents, create_graph=create_graph)
        second = None
        if create_graph:  # d/d(inputs) of sum(grad_input^2): a double-backward product
            second = torch.autograd.grad(grads[0].pow(2).sum(), inputs, allow_unused=True)
            second = [torch.zeros_like(x) if g is None else g for g, x in zip(second, inputs)]
        results.append((grads, second))
    (plain, _), (graphed, fused_second), (ref_grads, ref_second) = results
    for k, (a, b, c) in enumerate(zip(plain, graphed, ref_grads)):
        assert_close(b, a, what=f"create_graph grad {k}")
        assert_close(a, c, what=f"fused grad {k}")
    for k, (a, b) in enumerate(zip(fused_second, ref_second)):
        assert_close(a, b, what=f"second-order grad {k}")
