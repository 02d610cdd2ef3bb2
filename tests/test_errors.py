"""Bad arguments raise the exception type torch.nn raises, with a message that names the
argument; edge inputs that torch.nn accepts give the same results."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from helpers import (CELLS, MODES, assert_parity, cell_case, classes, expect_same_error, make_pair, randn,
                     sequence_case)

# ---- construction ------------------------------------------------------------------

BAD_CONSTRUCTIONS = [
    # (kwargs, a word the message must contain)
    (dict(hidden_size=0), "hidden"),
    (dict(hidden_size=-3), "hidden"),
    (dict(input_size=0), "input"),
    (dict(num_layers=0), "num_layers"),
    (dict(num_layers=-1), "num_layers"),
    (dict(dropout=-0.1), "dropout"),
    (dict(dropout=1.5), "dropout"),
    (dict(dropout=True), "dropout"),
    (dict(dropout="0.5"), "dropout"),
    (dict(bias=1), "bias"),
    (dict(batch_first="yes"), "batch_first"),
    (dict(hidden_size=5.0), "hidden_size"),
]


def construct(cls, extra, **overrides):
    kwargs = dict(input_size=4, hidden_size=5, **extra)
    kwargs.update(overrides)
    return lambda: cls(**kwargs)


@pytest.mark.parametrize("kind", MODES)
@pytest.mark.parametrize("overrides, word", BAD_CONSTRUCTIONS, ids=[str(c[0]) for c in BAD_CONSTRUCTIONS])
def test_bad_construction(kind, overrides, word):
    nn_cls, fused_cls, extra = classes(kind)
    expect_same_error(construct(nn_cls, extra, **overrides), construct(fused_cls, extra, **overrides), word)


@pytest.mark.parametrize("proj_size", [5, 6, -1])
def test_bad_proj_size(proj_size):
    nn_cls, fused_cls, _ = classes("LSTM")
    expect_same_error(construct(nn_cls, {}, proj_size=proj_size), construct(fused_cls, {}, proj_size=proj_size),
                      "proj_size")


@pytest.mark.parametrize("kind", ["GRU", "RNN_TANH"])
def test_proj_size_only_for_lstm(kind):
    nn_cls, fused_cls, extra = classes(kind)
    expect_same_error(construct(nn_cls, extra, proj_size=2), construct(fused_cls, extra, proj_size=2), "proj_size")


@pytest.mark.parametrize("nonlinearity", ["gelu", "Tanh", None])
def test_rnn_unknown_nonlinearity_at_construction(nonlinearity):
    nn_cls, fused_cls, _ = classes("RNN_TANH")
    expect_same_error(lambda: nn_cls(4, 5, nonlinearity=nonlinearity),
                      lambda: fused_cls(4, 5, nonlinearity=nonlinearity), "nonlinearity")
    # positional, as torch.nn.RNN's fourth argument
    expect_same_error(lambda: nn_cls(4, 5, 1, nonlinearity), lambda: fused_cls(4, 5, 1, nonlinearity),
                      "nonlinearity")


def test_rnn_cell_unknown_nonlinearity_at_forward():
    nn_cls, fused_cls, _ = classes("RNNCell_TANH")
    ref, fused = nn_cls(4, 5, nonlinearity="gelu"), fused_cls(4, 5, nonlinearity="gelu")  # accepted here
    x = randn(2, 4, dtype=torch.float32)
    expect_same_error(lambda: ref(x), lambda: fused(x), "nonlinearity")


@pytest.mark.parametrize("kind", CELLS)
def test_cell_negative_hidden_size(kind):
    nn_cls, fused_cls, extra = classes(kind)
    expect_same_error(lambda: nn_cls(4, -2, **extra), lambda: fused_cls(4, -2, **extra))


# ---- forward arguments of the sequence modules ---------------------------------------


def state(kind, *shape, dtype=torch.float32, c_shape=None):
    h = torch.zeros(*shape, dtype=dtype)
    if kind == "LSTM":
        return h, torch.zeros(*(c_shape or shape), dtype=dtype)
    return h


def bad_calls(kind):
    """(id, constructor kwargs, input, hx, word) of calls torch.nn refuses; I=4, H=5."""
    x = torch.zeros(7, 3, 4)
    cases = [
        ("input-4d", {}, torch.zeros(7, 3, 4, 1), None, "input"),
        ("input-1d", {}, torch.zeros(4), None, "input"),
        ("input-features", {}, torch.zeros(7, 3, 6), None, "input"),
        ("input-features-unbatched", {}, torch.zeros(7, 6), None, "input"),
        ("input-features-packed", {}, pack_padded_sequence(torch.zeros(7, 3, 6), [7, 5, 2]), None, "input"),
        ("input-dtype", {}, torch.zeros(7, 3, 4, dtype=torch.float64), None, "dtype"),
        ("input-int", {}, torch.zeros(7, 3, 4, dtype=torch.long), None, "dtype"),
        ("empty-sequence", {}, torch.zeros(0, 3, 4), None, "sequence"),
        ("h0-batch", {}, x, state(kind, 1, 2, 5), "hidden"),
        ("h0-layers", {"num_layers": 2}, x, state(kind, 1, 3, 5), "hidden"),
        ("h0-directions", {"bidirectional": True}, x, state(kind, 1, 3, 5), "hidden"),
        ("h0-features", {}, x, state(kind, 1, 3, 4), "hidden"),
        ("h0-2d-for-batched", {}, x, state(kind, 1, 5), "hx"),
        ("h0-3d-for-unbatched", {}, torch.zeros(7, 4), state(kind, 1, 1, 5), "hx"),
        ("h0-batch-first", {"batch_first": True}, torch.zeros(3, 7, 4), state(kind, 1, 7, 5), "hidden"),
        ("h0-packed-batch", {}, pack_padded_sequence(torch.zeros(7, 3, 4), [7, 5, 2]), state(kind, 1, 2, 5),
         "hidden"),
    ]
    if kind == "LSTM":
        cases += [
            ("c0-features", {}, x, state(kind, 1, 3, 5, c_shape=(1, 3, 4)), "hidden"),
            ("c0-batch", {}, x, state(kind, 1, 3, 5, c_shape=(1, 2, 5)), "hidden"),
            ("c0-2d", {}, x, state(kind, 1, 3, 5, c_shape=(3, 5)), "hx"),
            ("proj-h0-not-projected", {"proj_size": 2}, x, state(kind, 1, 3, 5), "hidden"),
            ("proj-c0-projected", {"proj_size": 2}, x, state(kind, 1, 3, 2, c_shape=(1, 3, 2)), "hidden"),
            # hx not a tuple: torch.nn indexes hx[0], hx[1] of the tensor (needs 2+ states)
            ("hx-tensor", {"num_layers": 2}, x, torch.zeros(2, 3, 5), "hx"),
            ("hx-tensor-unbatched", {"num_layers": 2}, torch.zeros(7, 4), torch.zeros(2, 5), "hx"),
            ("c0-dtype", {}, x, (torch.zeros(1, 3, 5), torch.zeros(1, 3, 5, dtype=torch.float64)), "dtype"),
        ]
    cases.append(("h0-dtype", {}, x, state(kind, 1, 3, 5, dtype=torch.float64), "dtype"))
    return [pytest.param(kind, *case[1:], id=f"{kind}-{case[0]}") for case in cases]


@pytest.mark.parametrize("kind, kwargs, input, hx, word", [c for kind in MODES for c in bad_calls(kind)])
def test_bad_forward_arguments(kind, kwargs, input, hx, word):
    ref, fused = make_pair(kind, 4, 5, dtype=torch.float32, **kwargs)
    args = (input,) if hx is None else (input, hx)
    expect_same_error(lambda: ref(*args), lambda: fused(*args), word)


# ---- forward arguments of the cells -----------------------------------------------------


def bad_cell_calls(kind):
    lstm = kind == "LSTMCell"

    def hx(*shape, dtype=torch.float32):
        h = torch.zeros(*shape, dtype=dtype)
        return (h, torch.zeros(*shape, dtype=dtype)) if lstm else h

    x = torch.zeros(3, 4)
    cases = [
        ("input-3d", torch.zeros(2, 3, 4), None, "input"),
        ("input-features", torch.zeros(3, 6), None, "input"),
        ("input-features-unbatched", torch.zeros(6), None, "input"),
        ("input-dtype", torch.zeros(3, 4, dtype=torch.float64), None, "dtype"),
        ("hx-batch", x, hx(2, 5), "batch"),
        ("hx-features", x, hx(3, 6), "hidden"),
        ("hx-3d", x, hx(1, 3, 5), "hidden" if not lstm else "hx"),
        ("hx-dtype", x, hx(3, 5, dtype=torch.float64), "dtype"),
        ("hx-batched-for-unbatched", torch.zeros(4), hx(3, 5), "hidden"),
    ]
    if lstm:
        cases += [
            ("hx-three-states", x, hx(3, 5) + (torch.zeros(3, 5),), "hx"),
            ("c0-features", x, (torch.zeros(3, 5), torch.zeros(3, 4)), "hidden"),
        ]
    return [pytest.param(kind, *case[1:], id=f"{kind}-{case[0]}") for case in cases]


@pytest.mark.parametrize("kind, input, hx, word", [c for kind in CELLS for c in bad_cell_calls(kind)])
def test_bad_cell_arguments(kind, input, hx, word):
    ref, fused = make_pair(kind, 4, 5, dtype=torch.float32)
    args = (input,) if hx is None else (input, hx)
    expect_same_error(lambda: ref(*args), lambda: fused(*args), word)


def test_lstm_cell_hx_not_a_tuple():
    ref, fused = make_pair("LSTMCell", 4, 5, dtype=torch.float32)
    x, h = torch.zeros(3, 4), torch.zeros(3, 5)
    expect_same_error(lambda: ref(x, h), lambda: fused(x, h), "hx")


# ---- edge inputs torch.nn accepts ------------------------------------------------------


@pytest.mark.parametrize("kind", MODES)
@pytest.mark.parametrize("config", [dict(N=0, layers=2), dict(N=0, unbatched=False, batch_first=True, hx=False),
                                    dict(T=1, N=1, bidirectional=True), dict(T=1, unbatched=True)],
                         ids=["zero-batch", "zero-batch-first", "one-step", "one-step-unbatched"])
def test_edge_inputs_same_result(kind, config):
    assert_parity(*sequence_case(kind, **config))


@pytest.mark.parametrize("kind", CELLS)
def test_cell_zero_hidden_size(kind):
    assert_parity(*cell_case(kind, H=0))


@pytest.mark.parametrize("kind", MODES)
@pytest.mark.parametrize("layout", ["slice-expand", "transpose"])
def test_non_contiguous_input_and_state(kind, layout):
    """Strided views as input and state (a feature slice and an expanded state, or
    transposed batch-major tensors) give the same outputs and gradients as torch.nn."""
    ref, fused, _, _ = sequence_case(kind, layers=2, bidirectional=True, I=4, H=6)
    T, N, I, S = 5, 3, 4, 4
    widths = [6, 6] if kind == "LSTM" else [6]
    if layout == "slice-expand":
        leaves = [randn(T, N, 2 * I, seed=5)] + [randn(S, 1, P, seed=6 + k) for k, P in enumerate(widths)]

        def view_x(x):
            return x[..., ::2]

        def view_h(h):
            return h.expand(-1, N, -1)
    else:
        leaves = [randn(N, T, I, seed=5)] + [randn(N, S, P, seed=6 + k) for k, P in enumerate(widths)]

        def view_x(t):
            return t.transpose(0, 1)

        view_h = view_x

    def make_args(x, *states):
        x, hs = view_x(x), [view_h(h) for h in states]
        assert not x.is_contiguous() and not any(h.is_contiguous() for h in hs)
        return x, (tuple(hs) if kind == "LSTM" else hs[0])

    assert_parity(ref, fused, leaves, make_args)


@pytest.mark.parametrize("kind", CELLS)
def test_cell_non_contiguous_input_and_state(kind):
    ref, fused = make_pair(kind, 4, 5)
    count = 3 if kind == "LSTMCell" else 2
    leaves = [randn(4, 3, seed=1)] + [randn(5, 3, seed=2 + k) for k in range(count - 1)]

    def make_args(x, *states):
        hs = [h.t() for h in states]
        return x.t(), (tuple(hs) if kind == "LSTMCell" else hs[0])

    assert_parity(ref, fused, leaves, make_args)
