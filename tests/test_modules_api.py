"""The module API that users rely on beyond forward: state_dict interchange, save/load,
deepcopy, repr, all_weights, flatten_parameters, dropout, initialisation."""
import copy
import io
import math
import warnings

import pytest
import torch
import torch.nn as nn

from helpers import CELLS, MODES, assert_close, assert_parity, classes, make_pair, output_tensors, randn
from fused_rnn import ops

CONSTRUCTIONS = [
    dict(),
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=3, bias=False, batch_first=True, dropout=0.25),
]
LSTM_CONSTRUCTIONS = [dict(proj_size=2, num_layers=2, bidirectional=True), dict(proj_size=3, bias=False)]


def constructions():
    return ([pytest.param(kind, kw, id=f"{kind}-{k}") for kind in MODES for k, kw in enumerate(CONSTRUCTIONS)]
            + [pytest.param("LSTM", kw, id=f"LSTM-proj-{k}") for k, kw in enumerate(LSTM_CONSTRUCTIONS)])


def outputs(module, x):
    with torch.no_grad():
        return output_tensors(module.eval()(x))


def assert_same_outputs(a, b, x):
    for k, (u, v) in enumerate(zip(outputs(a, x), outputs(b, x))):
        assert_close(u, v, what=f"output {k}")


# ---- state_dict, save/load, deepcopy -----------------------------------------------


@pytest.mark.parametrize("kind, kwargs", constructions())
def test_state_dict_interchange_both_ways(kind, kwargs):
    nn_cls, fused_cls, extra = classes(kind)
    torch.manual_seed(1)
    fused = fused_cls(4, 5, **extra, **kwargs).double()
    ref = nn_cls(4, 5, **extra, **kwargs).double()
    assert list(fused.state_dict()) == list(ref.state_dict())
    for name, value in fused.state_dict().items():
        assert value.shape == ref.state_dict()[name].shape, name
    ref.load_state_dict(fused.state_dict(), strict=True)  # fused -> torch.nn
    x = randn(3, 2, 4) if not kwargs.get("batch_first") else randn(2, 3, 4)
    assert_same_outputs(fused, ref, x)
    torch.manual_seed(2)
    other = fused_cls(4, 5, **extra, **kwargs).double()
    other.load_state_dict(ref.state_dict(), strict=True)  # torch.nn -> fused
    assert_same_outputs(other, ref, x)


@pytest.mark.parametrize("kind", CELLS)
def test_cell_state_dict_interchange_both_ways(kind):
    nn_cls, fused_cls, extra = classes(kind)
    fused, ref = fused_cls(4, 5, **extra).double(), nn_cls(4, 5, **extra).double()
    ref.load_state_dict(fused.state_dict(), strict=True)
    assert_same_outputs(fused, ref, randn(2, 4))
    other = fused_cls(4, 5, **extra).double()
    other.load_state_dict(ref.state_dict(), strict=True)
    assert_same_outputs(other, ref, randn(2, 4))


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_save_load_round_trip(kind):
    _, fused_cls, extra = classes(kind)
    module = fused_cls(4, 5, **extra).double()
    x = randn(3, 2, 4) if kind in MODES else randn(2, 4)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)  # weights_only default
    restored = fused_cls(4, 5, **extra).double()
    restored.load_state_dict(state, strict=True)
    assert_same_outputs(restored, module, x)
    # the whole module pickles too
    buffer = io.BytesIO()
    torch.save(module, buffer)
    buffer.seek(0)
    whole = torch.load(buffer, weights_only=False)
    assert type(whole) is fused_cls
    assert_same_outputs(whole, module, x)


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_deepcopy(kind):
    _, fused_cls, extra = classes(kind)
    module = fused_cls(4, 5, **extra).double()
    clone = copy.deepcopy(module)
    assert type(clone) is fused_cls and repr(clone) == repr(module)
    x = randn(3, 2, 4) if kind in MODES else randn(2, 4)
    assert_same_outputs(clone, module, x)
    for (name, p), q in zip(module.named_parameters(), clone.parameters()):
        assert p.data_ptr() != q.data_ptr(), f"{name} is shared with the copy"
    with torch.no_grad():
        next(clone.parameters()).add_(1.0)
    assert not torch.equal(outputs(clone, x)[0], outputs(module, x)[0]), "copy still tied to the original"


# ---- repr, all_weights, flatten_parameters, reassignment ---------------------------


@pytest.mark.parametrize("kind, kwargs", constructions())
def test_repr_matches_torch_nn(kind, kwargs):
    nn_cls, fused_cls, extra = classes(kind)
    assert repr(fused_cls(4, 5, **extra, **kwargs)) == repr(nn_cls(4, 5, **extra, **kwargs))


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("bias", [True, False])
def test_cell_repr_matches_torch_nn(kind, bias):
    nn_cls, fused_cls, extra = classes(kind)
    assert repr(fused_cls(4, 5, bias=bias, **extra)) == repr(nn_cls(4, 5, bias=bias, **extra))


@pytest.mark.parametrize("kind, kwargs", constructions())
def test_all_weights_shapes(kind, kwargs):
    nn_cls, fused_cls, extra = classes(kind)
    fused, ref = fused_cls(4, 5, **extra, **kwargs), nn_cls(4, 5, **extra, **kwargs)
    shapes = [[tuple(w.shape) for w in layer] for layer in fused.all_weights]
    assert shapes == [[tuple(w.shape) for w in layer] for layer in ref.all_weights]
    # all_weights are the module's own parameters, in order
    flat = [w for layer in fused.all_weights for w in layer]
    assert all(a is b for a, b in zip(flat, fused.parameters())) and len(flat) == len(list(fused.parameters()))


@pytest.mark.parametrize("kind", MODES)
def test_flatten_parameters(kind):
    ref, fused = make_pair(kind, 4, 5, num_layers=2)
    x = randn(3, 2, 4)
    before = outputs(fused, x)
    fused.flatten_parameters()
    after = outputs(fused, x)
    for a, b in zip(after, before):
        assert torch.equal(a, b)
    assert_same_outputs(fused, ref, x)


@pytest.mark.parametrize("kind", MODES)
def test_reassigned_weight_is_used(kind):
    """A parameter replaced after construction (here by a non-contiguous one) is used by
    the next forward and gets its gradient, as in torch.nn."""
    ref, fused = make_pair(kind, 4, 5, num_layers=2, bidirectional=True)
    for module in (ref, fused):
        transposed = randn(*module.weight_ih_l1.shape[::-1], seed=3).t()
        module.weight_ih_l1 = nn.Parameter(transposed)
        assert not module.weight_ih_l1.is_contiguous()
    assert_parity(ref, fused, [randn(3, 2, 4)])


@pytest.mark.parametrize("kind", MODES)
def test_functional_call(kind):
    ref, fused = make_pair(kind, 4, 5, num_layers=2)
    weights = {name: randn(*p.shape, seed=k) * 0.3 for k, (name, p) in enumerate(ref.named_parameters())}
    x = randn(3, 2, 4)
    with torch.no_grad():
        got = output_tensors(torch.func.functional_call(fused, weights, (x,)))
        want = output_tensors(torch.func.functional_call(ref, weights, (x,)))
    for k, (a, b) in enumerate(zip(got, want)):
        assert_close(a, b, what=f"output {k}")


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_to_float32_and_back(kind):
    """dtype conversion of the module keeps parity in the new dtype."""
    ref, fused = make_pair(kind, 4, 5)
    ref, fused = ref.float(), fused.float()
    x = randn(3, 2, 4, dtype=torch.float32) if kind in MODES else randn(2, 4, dtype=torch.float32)
    assert_parity(ref, fused, [x])


# ---- dropout -------------------------------------------------------------------------


def capture_warnings(build):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    return [(w.category, str(w.message)) for w in caught]


@pytest.mark.parametrize("kind", MODES)
def test_dropout_warning_for_one_layer_matches_torch_nn(kind):
    nn_cls, fused_cls, extra = classes(kind)
    with pytest.warns(UserWarning, match="dropout"):
        fused_cls(4, 5, dropout=0.3, **extra)
    assert capture_warnings(lambda: fused_cls(4, 5, dropout=0.3, **extra)) == \
        capture_warnings(lambda: nn_cls(4, 5, dropout=0.3, **extra))
    assert capture_warnings(lambda: fused_cls(4, 5, num_layers=2, dropout=0.3, **extra)) == []


@pytest.mark.parametrize("kind", MODES)
def test_dropout_in_eval_is_identity_like_torch_nn(kind):
    ref, fused = make_pair(kind, 4, 5, num_layers=3, dropout=0.5, bidirectional=True)
    ref.eval(), fused.eval()
    assert_parity(ref, fused, [randn(6, 2, 4)])


@pytest.mark.parametrize("kind", MODES)
def test_dropout_on_one_layer_model_does_nothing_in_training(kind):
    """Dropout acts between layers only: a one-layer model in training is unaffected."""
    with pytest.warns(UserWarning):
        ref, fused = make_pair(kind, 4, 5, dropout=0.5)
    assert fused.training and ref.training
    assert_parity(ref, fused, [randn(6, 2, 4)])


def _layer(kind, fused, layer, input_size, **kwargs):
    """A one-layer fused module holding layer `layer` of `fused` (both directions)."""
    _, fused_cls, extra = classes(kind)
    single = fused_cls(input_size, fused.hidden_size, **extra, **kwargs).double()
    suffix = f"_l{layer}"
    weights = {name.replace(suffix, "_l0"): value for name, value in fused.state_dict().items() if suffix in name}
    single.load_state_dict(weights, strict=True)
    return single


def _expected_with_dead_first_layer(kind, fused, x, bidirectional):
    """Two-layer model whose inter-layer dropout zeroes everything: layer 1 runs on
    zeros; h_n of layer 0 is unaffected."""
    directions = 2 if bidirectional else 1
    first = _layer(kind, fused, 0, x.shape[-1], bidirectional=bidirectional)
    second = _layer(kind, fused, 1, directions * fused.hidden_size, bidirectional=bidirectional)
    with torch.no_grad():
        out0, state0 = first(x)
        out1, state1 = second(torch.zeros_like(out0))
    if kind == "LSTM":
        return out1, tuple(torch.cat([a, b]) for a, b in zip(state0, state1))
    return out1, torch.cat([state0, state1])


@pytest.mark.parametrize("kind", MODES)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_dropout_one_zeroes_every_inner_layer_output(kind, bidirectional):
    ref, fused = make_pair(kind, 4, 5, num_layers=2, dropout=1.0, bidirectional=bidirectional)
    x = randn(6, 3, 4)
    with torch.no_grad():
        out, state = fused.train()(x)
        ref_out, ref_state = ref.train()(x)
    want_out, want_state = _expected_with_dead_first_layer(kind, fused, x, bidirectional)
    for k, (a, b, c) in enumerate(zip(output_tensors((out, state)), output_tensors((want_out, want_state)),
                                      output_tensors((ref_out, ref_state)))):
        assert_close(a, b, what=f"tensor {k} vs stacked single layers")
        assert_close(a, c, what=f"tensor {k} vs torch.nn")


@pytest.mark.parametrize("kind", MODES)
def test_changing_dropout_after_construction_takes_effect(kind):
    ref, fused = make_pair(kind, 4, 5, num_layers=2)
    x = randn(6, 3, 4)
    fused.dropout = 1.0
    with torch.no_grad():
        out, _ = fused.train()(x)
    want, _ = _expected_with_dead_first_layer(kind, fused, x, False)
    assert_close(out, want, what="output with dropout=1 set after construction")
    fused.dropout = 0.0
    assert_parity(ref, fused, [x])


@pytest.mark.parametrize("kind", MODES)
def test_dropout_half_is_random_in_training_and_reproducible(kind):
    ref, fused = make_pair(kind, 4, 8, num_layers=2, dropout=0.5)
    x = randn(5, 4, 4)
    with torch.no_grad():
        eval_out, _ = fused.eval()(x)
        fused.train()
        torch.manual_seed(5)
        a, _ = fused(x)
        torch.manual_seed(5)
        b, _ = fused(x)
        c, _ = fused(x)
        ref_eval, _ = ref.eval()(x)
    assert torch.equal(a, b), "same seed, different dropout masks"
    assert not torch.equal(a, c), "dropout masks do not change between calls"
    assert (a - eval_out).abs().max() > 1e-3, "dropout 0.5 had no effect in training"
    assert_close(eval_out, ref_eval, what="eval output")


@pytest.mark.parametrize("kind", MODES)
def test_dropout_gradients_flow_through_kept_units(kind):
    """Training with dropout: backward works and x gets a gradient (dropout sits between
    layers, never on the input)."""
    _, fused = make_pair(kind, 4, 5, num_layers=3, dropout=0.3)
    x = randn(5, 2, 4).requires_grad_()
    out, _ = fused.train()(x)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in fused.parameters())


# ---- initialisation ------------------------------------------------------------------


@pytest.mark.parametrize("kind, kwargs", constructions())
def test_same_seed_same_parameters_as_torch_nn(kind, kwargs):
    nn_cls, fused_cls, extra = classes(kind)
    torch.manual_seed(42)
    ref = nn_cls(4, 5, **extra, **kwargs)
    torch.manual_seed(42)
    fused = fused_cls(4, 5, **extra, **kwargs)
    for (name, a), (ref_name, b) in zip(fused.named_parameters(), ref.named_parameters(), strict=True):
        assert name == ref_name
        assert a.dtype == b.dtype and torch.equal(a, b), name


@pytest.mark.parametrize("kind", CELLS)
def test_cell_same_seed_same_parameters_as_torch_nn(kind):
    nn_cls, fused_cls, extra = classes(kind)
    torch.manual_seed(42)
    ref = nn_cls(4, 5, **extra)
    torch.manual_seed(42)
    fused = fused_cls(4, 5, **extra)
    for (name, a), (ref_name, b) in zip(fused.named_parameters(), ref.named_parameters(), strict=True):
        assert name == ref_name and torch.equal(a, b), name


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_initialisation_distribution(kind):
    """U(-1/sqrt(H), 1/sqrt(H)) for every parameter, as torch.nn."""
    _, fused_cls, extra = classes(kind)
    H = 64
    module = fused_cls(16, H, **extra)
    bound = 1 / math.sqrt(H)
    values = torch.cat([p.detach().flatten() for p in module.parameters()])
    assert values.abs().max() <= bound
    # spread over the whole interval, mean near zero, variance of a uniform: bound^2 / 3
    assert values.max() > 0.95 * bound and values.min() < -0.95 * bound
    assert abs(values.mean().item()) < 0.05 * bound
    assert abs(values.var().item() / (bound ** 2 / 3) - 1) < 0.05
    for p in module.parameters():
        assert p.dtype == torch.float32 and p.requires_grad


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_inference_mode(kind):
    ref, fused = make_pair(kind, 4, 5)
    x = randn(3, 2, 4) if kind in MODES else randn(2, 4)
    with torch.inference_mode():
        assert_parity(ref, fused, [x], grads=False)


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_training_after_first_call_in_inference_mode(kind):
    """The batch_sizes of an unpacked input are cached per (T, N), and the zero initial
    states per shape and dtype: ones first built under torch.inference_mode() must still be
    savable for backward in a later training call."""
    ops._cached_uniform_batch_sizes.cache_clear()
    ops._cached_zero_states.cache_clear()
    ref, fused = make_pair(kind, 4, 5)
    x = randn(3, 2, 4) if kind in MODES else randn(2, 4)
    with torch.inference_mode():
        fused(x)
    assert_parity(ref, fused, [x])


@pytest.mark.parametrize("kind", MODES)
def test_cached_zero_states_stay_zero_and_shared_calls_agree(kind):
    """Calls without hx share cached zero states (ops.zero_states): every call, forward and
    backward, plain and packed, must only read them, and two modules of one shape (one
    cache entry) must each match torch.nn."""
    ops._cached_zero_states.cache_clear()
    # 2 layers x 2 directions, batch 2, width 5 (h, and c for LSTM): the entry every call reads
    states = ops.zero_states(4, 2, 5, randn(1))
    hits = ops._cached_zero_states.cache_info().hits
    x = randn(3, 2, 4)
    packed = nn.utils.rnn.pack_padded_sequence(randn(3, 2, 4), torch.tensor([2, 3]), enforce_sorted=False)
    for seed in (1, 2):
        ref, fused = make_pair(kind, 4, 5, num_layers=2, bidirectional=True, seed=seed)
        assert_parity(ref, fused, [x])
        out, _ = fused(packed)
        out.data.sum().backward()
    assert ops._cached_zero_states.cache_info().hits > hits, "the modules did not use the cached states"
    assert ops.zero_states(4, 2, 5, randn(1)) is states
    assert all(torch.count_nonzero(s).item() == 0 for s in states)


@pytest.mark.parametrize("kind", MODES + CELLS)
def test_factory_kwargs(kind):
    _, fused_cls, extra = classes(kind)
    module = fused_cls(4, 5, **extra, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in module.parameters())


@pytest.mark.parametrize("kind", MODES)
def test_is_rnnbase_but_not_torch_nn_class(kind):
    """fused modules are RNNBase (isinstance checks in user code keep working) but not
    nn.LSTM/GRU/RNN, which torch.compile refuses to trace."""
    nn_cls, fused_cls, extra = classes(kind)
    module = fused_cls(4, 5, **extra)
    assert isinstance(module, nn.RNNBase)
    assert not isinstance(module, nn_cls)
    assert module.mode == nn_cls(4, 5, **extra).mode
