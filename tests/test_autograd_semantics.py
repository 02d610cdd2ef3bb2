"""Autograd behaviour beyond plain gradients, against torch.nn on the same weights: a cell
or module applied several times in one graph, parameters tied within and across modules,
requires_grad on only some inputs or parameters, losses that use only some outputs,
retain_graph and a second backward (and the error without it), tensor hooks, jacobians.
(gradgradcheck for all six modules lives in test_gradcheck.py.)"""
import pytest
import torch
import torch.nn as nn

from helpers import CELLS, MODES, assert_close, make_pair, randn
from fused_rnn import reference


def grads_of(loss, tensors):
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, tensors)]


def both(make_loss, ref, fused, leaves):
    """For each of (torch.nn, fused): the loss `make_loss(module, *leaf copies)` and its
    gradients w.r.t. those leaves that require grad and every parameter that does; asserts
    the two agree."""
    results = []
    for module in (ref, fused):
        xs = [t.detach().clone().requires_grad_(t.requires_grad) for t in leaves]
        loss = make_loss(module, *xs)
        wrt = [x for x in xs if x.requires_grad] + [p for p in module.parameters() if p.requires_grad]
        results.append((loss, grads_of(loss, wrt) if loss.requires_grad else []))
    (ref_loss, ref_grads), (loss, grads) = results
    assert_close(loss, ref_loss, what="loss")
    assert len(grads) == len(ref_grads)
    for k, (a, e) in enumerate(zip(grads, ref_grads)):
        assert_close(a, e, what=f"gradient {k}")
    return results


# ---- one module used several times, tied parameters -------------------------------------------


@pytest.mark.parametrize("kind", CELLS)
def test_cell_unrolled_over_a_sequence(kind):
    """The same cell applied at every step (weights shared across 4 uses in one graph)."""
    ref, fused = make_pair(kind, 3, 5)

    def loss(cell, x, h):
        state = (h, h * 0.5) if kind == "LSTMCell" else h
        for t in range(x.shape[0]):
            state = cell(x[t], state)
        h_last = state[0] if kind == "LSTMCell" else state
        return h_last.pow(2).sum()

    both(loss, ref, fused, [randn(4, 2, 3, seed=1).requires_grad_(), randn(2, 5, seed=2).requires_grad_()])


@pytest.mark.parametrize("kind", MODES)
def test_module_applied_twice_and_to_its_own_output(kind):
    ref, fused = make_pair(kind, 4, 4, num_layers=2)

    def loss(module, x1, x2):
        y1, _ = module(x1)
        y2, _ = module(x2)
        y3, _ = module(y1)  # the module again, on its own output
        return y1.sum() + y2.pow(2).sum() + y3.mean()

    both(loss, ref, fused, [randn(5, 2, 4, seed=1).requires_grad_(), randn(3, 2, 4, seed=2).requires_grad_()])


@pytest.mark.parametrize("kind", MODES)
def test_parameter_tied_between_layers_and_modules(kind):
    """weight_hh_l1 is weight_hh_l0 (same Parameter) and a Linear head shares weight_ih_l1;
    gradients from every use add up in the one Parameter."""
    pairs = []
    for module in make_pair(kind, 4, 4, num_layers=2):
        module.weight_hh_l1 = module.weight_hh_l0
        torch.manual_seed(1)  # the same head bias on both sides
        head = nn.Linear(4, module.weight_ih_l1.shape[0]).double()
        head.weight = module.weight_ih_l1
        pairs.append(nn.ModuleDict({"rnn": module, "head": head}))
    ref, fused = pairs
    assert len(list(fused.parameters())) == len(list(ref.parameters()))

    def loss(model, x):
        y, _ = model["rnn"](x)
        return y.pow(2).sum() + model["head"](y).sum()

    both(loss, ref, fused, [randn(5, 3, 4, seed=3).requires_grad_()])


def test_state_dict_of_tied_module_loads_across():
    ref, fused = make_pair("LSTM", 3, 3, num_layers=2)
    for module in (ref, fused):
        module.weight_hh_l1 = module.weight_hh_l0
    fused.load_state_dict(ref.state_dict(), strict=True)
    assert fused.weight_hh_l1 is fused.weight_hh_l0


# ---- requires_grad on some inputs / parameters only ---------------------------------------------


@pytest.mark.parametrize("wants", ["input-only", "state-only", "nothing-but-weights", "weights-frozen",
                                   "some-weights-frozen"])
@pytest.mark.parametrize("kind", MODES)
def test_partial_requires_grad(kind, wants):
    ref, fused = make_pair(kind, 3, 4, num_layers=2, bidirectional=True)
    for module in (ref, fused):
        for name, p in module.named_parameters():
            frozen = wants == "weights-frozen" or (wants == "some-weights-frozen" and name.endswith("_l0"))
            p.requires_grad_(not frozen)
    x = randn(5, 2, 3, seed=1).requires_grad_(wants in ("input-only", "weights-frozen", "some-weights-frozen"))
    h = randn(4, 2, 4, seed=2).requires_grad_(wants in ("state-only", "weights-frozen"))
    c = randn(4, 2, 4, seed=3).requires_grad_(wants == "state-only")

    def loss(module, x, h, c):
        out, state = module(x, (h, c) if kind == "LSTM" else h)
        return out.pow(2).sum() + (state[0] if kind == "LSTM" else state).sum()

    both(loss, ref, fused, [x, h, c])


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_nothing_requires_grad_gives_a_constant(kind):
    ref, fused = make_pair(kind, 3, 4)
    x = randn(2, 3, seed=1) if kind in CELLS else randn(5, 2, 3, seed=1)
    for module in (ref, fused):
        module.requires_grad_(False)
    outs = [module(x) for module in (ref, fused)]
    flat = [[o for o in (out if isinstance(out, tuple) else (out,))] for out in outs]
    for ref_out, out in zip(*flat):
        ref_t = ref_out if isinstance(ref_out, torch.Tensor) else ref_out[0]
        t = out if isinstance(out, torch.Tensor) else out[0]
        assert t.requires_grad is ref_t.requires_grad is False and t.grad_fn is None


@pytest.mark.parametrize("kind,used", [(k, u) for k in MODES for u in ("output", "h_n", "c_n", "h_n-of-one-layer")
                                       if u != "c_n" or k == "LSTM"])
def test_loss_of_some_outputs_only(kind, used):
    """Outputs that the loss does not use reach backward as None (zero) gradients."""
    ref, fused = make_pair(kind, 3, 4, num_layers=2)

    def loss(module, x):
        out, state = module(x)
        h = state[0] if kind == "LSTM" else state
        pick = {"output": out, "h_n": h, "c_n": state[1] if kind == "LSTM" else None, "h_n-of-one-layer": h[1]}
        return pick[used].pow(2).sum()

    both(loss, ref, fused, [randn(5, 2, 3, seed=4).requires_grad_()])


# ---- retain_graph, second backward, hooks, jacobians -------------------------------------------


def pair_and_input(kind):
    """A torch.nn / fused_rnn pair of `kind` (I=3, H=4) and an input for it."""
    ref, fused = make_pair(kind, 3, 4)
    return ref, fused, randn(2, 3, seed=1) if kind in CELLS else randn(5, 2, 3, seed=1)


def first_output(out):
    """A cell's output, or a sequence module's output sequence."""
    return out if isinstance(out, torch.Tensor) else out[0]


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_retain_graph_then_backward_twice_accumulates(kind):
    ref, fused, x = pair_and_input(kind)
    grads = []
    for module in (ref, fused):
        xi = x.clone().requires_grad_()
        loss = first_output(module(xi)).pow(2).sum()
        loss.backward(retain_graph=True)
        once = [p.grad.clone() for p in module.parameters()] + [xi.grad.clone()]
        loss.backward()
        twice = [p.grad for p in module.parameters()] + [xi.grad]
        for a, b in zip(once, twice):
            assert_close(b, 2 * a, what="second backward adds the same gradient again")
        grads.append(twice)
    for a, e in zip(grads[1], grads[0]):
        assert_close(a, e)


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_second_backward_without_retain_graph_raises_like_torch_nn(kind):
    ref, fused, x = pair_and_input(kind)
    errors = []
    for module in (ref, fused):
        loss = first_output(module(x.clone().requires_grad_())).sum()
        loss.backward()
        with pytest.raises(Exception) as info:
            loss.backward()
        errors.append(info.value)
    ref_error, fused_error = errors
    assert type(fused_error) is type(ref_error) is RuntimeError
    assert "second time" in str(fused_error) and "second time" in str(ref_error)


@pytest.mark.parametrize("kind", MODES)
def test_tensor_hooks_see_and_change_the_same_gradients(kind):
    ref, fused = make_pair(kind, 3, 4)
    seen = {}

    def loss(module, x):
        out, _ = module(x)
        key = type(module).__module__.split(".")[0]  # "fused_rnn" or "torch"
        out.register_hook(lambda g: seen.setdefault(key, g.clone()) * torch.linspace(0, 2, g.shape[0],
                                                                                        dtype=g.dtype).view(-1, 1, 1))
        return out.pow(2).sum()

    both(loss, ref, fused, [randn(5, 2, 3, seed=1).requires_grad_()])
    assert_close(seen["fused_rnn"], seen["torch"], what="gradient seen by the hook")


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_jacobian_matches(kind):
    ref, fused = make_pair(kind, 2, 3)
    x = randn(3, 1, 2, seed=5)
    jacobians = [torch.autograd.functional.jacobian(lambda x, m=m: m(x)[0], x) for m in (ref, fused)]
    assert_close(jacobians[1], jacobians[0], what="jacobian")


# ---- forward-mode AD and torch.func transforms (served by the reference loops) ------------------


def test_forward_mode_jvp_matches_torch_nn():
    ref, fused = make_pair("GRU", 3, 4)
    x, v = randn(4, 2, 3, seed=1), randn(4, 2, 3, seed=2)
    tangents = [torch.func.jvp(lambda x, m=m: m(x)[0], (x,), (v,))[1] for m in (ref, fused)]
    assert_close(tangents[1], tangents[0], what="jvp")


def test_torch_func_grad_matches_torch_nn():
    ref, fused = make_pair("LSTM", 3, 4)
    x = randn(4, 2, 3, seed=1)
    grads = []
    for module in (ref, fused):
        params = dict(module.named_parameters())
        grads.append(torch.func.grad(
            lambda p: torch.func.functional_call(module, p, (x,))[0].pow(2).sum())(params))
    for name in grads[0]:
        assert_close(grads[1][name], grads[0][name], what=name)


def _layer_case(kind, bias, projected=False, seed=0):
    """Arguments of fused_rnn::{kind}_forward in float64 (T=4, N=3, I=5, H=6): the tensors
    that can take a gradient, by name (None where absent), and the flags."""
    T, N, I, H = 4, 3, 5, 6
    P = 4 if projected else H
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    gen = torch.Generator().manual_seed(seed)
    def make(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)
    tensors = {"input": make(T * N, I), "h0": make(N, P), "c0": make(N, H) if kind == "lstm" else None,
               "w_ih": make(gates * H, I), "w_hh": make(gates * H, P),
               "b_ih": make(gates * H) if bias else None, "b_hh": make(gates * H) if bias else None,
               "w_hr": make(P, H) if projected else None}
    return tensors, torch.full((T,), N, dtype=torch.long)


def _flags(kind, reverse):
    """The flags of a GRU (reverse) or vanilla RNN (relu, here on; reverse) layer op."""
    return [reverse] if kind == "gru" else [True, reverse]


def _call_op(kind, t, batch_sizes, reverse=False, keep_workspace=True):
    op = getattr(torch.ops.fused_rnn, f"{kind}_forward")
    if kind == "lstm":
        return op(t["input"], batch_sizes, t["h0"], t["c0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], t["w_hr"],
                  reverse, keep_workspace)
    return op(t["input"], batch_sizes, t["h0"], t["w_ih"], t["w_hh"], t["b_ih"], t["b_hh"], *_flags(kind, reverse),
              keep_workspace)


def _call_reference(kind, t, batch_sizes, reverse=False):
    if kind == "lstm":
        return reference.lstm_layer(t["input"], batch_sizes, t["h0"], t["c0"], t["w_ih"], t["w_hh"], t["b_ih"],
                                    t["b_hh"], t["w_hr"], reverse)
    return reference.stateless_layer(kind, t["input"], batch_sizes, t["h0"], t["w_ih"], t["w_hh"], t["b_ih"],
                                     t["b_hh"], *_flags(kind, reverse))


CASES = [("lstm", True, False), ("lstm", False, False), ("lstm", True, True), ("gru", True, False),
         ("gru", False, False), ("rnn", True, False), ("rnn", False, False)]


@pytest.mark.parametrize("kind,bias,projected", CASES)
@pytest.mark.parametrize("reverse", [False, True])
def test_op_autograd_formula_matches_reference(kind, bias, projected, reverse):
    """The ops' Autograd kernel (csrc/autograd.cpp) gives every present tensor the gradient
    of the reference loops, absent optional tensors none, whichever outputs the loss reads
    (the gradient of an unused output arrives undefined and counts as zeros)."""
    base, batch_sizes = _layer_case(kind, bias, projected)
    for used in ([0], [1], [0, 1], [0, 1, 2] if kind == "lstm" else [0, 1]):
        results = []
        for call in (_call_op, _call_reference):
            t = {k: v.clone().requires_grad_(True) if v is not None else None for k, v in base.items()}
            outs = call(kind, t, batch_sizes, reverse=reverse)
            loss = sum((outs[k] * (k + 1)).square().sum() for k in used)
            present = [v for v in t.values() if v is not None]
            results.append(torch.autograd.grad(loss, present))
        for name, a, e in zip([k for k, v in base.items() if v is not None], *results):
            assert_close(a, e, what=f"{name} (outputs {used})")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_op_computes_only_the_requested_gradients(kind):
    """torch.autograd.grad with respect to a subset of the inputs: the backward answers
    with those gradients (the weights' here) and autograd asks for no others."""
    base, batch_sizes = _layer_case(kind, bias=True)
    t = dict(base)
    for name in ("w_ih", "b_hh"):
        t[name] = base[name].clone().requires_grad_(True)
    out = _call_op(kind, t, batch_sizes)[0]
    g_w_ih, g_b_hh = torch.autograd.grad(out.square().sum(), [t["w_ih"], t["b_hh"]])
    r = {k: (v.clone().requires_grad_(True) if k in ("w_ih", "b_hh") else v) for k, v in base.items()}
    e_w_ih, e_b_hh = torch.autograd.grad(_call_reference(kind, r, batch_sizes)[0].square().sum(),
                                         [r["w_ih"], r["b_hh"]])
    assert_close(g_w_ih, e_w_ih, what="w_ih")
    assert_close(g_b_hh, e_b_hh, what="b_hh")


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_unrecorded_forward_builds_no_graph_and_agrees(kind):
    """Under no_grad, or with no input that requires a gradient, the Autograd kernel runs
    the op below autograd: no graph node, and the outputs the recorded call gives."""
    base, batch_sizes = _layer_case(kind, bias=True)
    leaves = {k: v.clone().requires_grad_(True) if v is not None else None for k, v in base.items()}
    recorded = _call_op(kind, leaves, batch_sizes, keep_workspace=False)
    assert recorded[0].grad_fn is not None
    with torch.no_grad():
        under_no_grad = _call_op(kind, leaves, batch_sizes, keep_workspace=False)
    plain = _call_op(kind, base, batch_sizes, keep_workspace=False)
    for outs in (under_no_grad, plain):
        assert all(o.grad_fn is None and not o.requires_grad for o in outs)
        for a, e in zip(outs, recorded):
            assert torch.equal(a, e.detach())


def test_workspace_output_is_not_differentiable():
    """The workspace output carries no gradient (marked non-differentiable), so a loss on
    it cannot be backpropagated, as for any integer-like side output."""
    base, batch_sizes = _layer_case("lstm", bias=True)
    t = {k: v.clone().requires_grad_(True) if v is not None else None for k, v in base.items()}
    outs = _call_op("lstm", t, batch_sizes)
    assert outs[0].requires_grad and not outs[3].requires_grad
