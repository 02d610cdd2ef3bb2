"""fused_rnn.LSTMCell / GRUCell / RNNCell (tanh, relu) against torch.nn with identical
weights: batched and unbatched, state given or omitted, outputs and every gradient."""
import pytest
import torch

from helpers import CELLS, MODES, assert_close, assert_parity, cell_case, classes, params

F32 = torch.float32

CONFIGS = [
    dict(),
    dict(hx=False),
    dict(batched=False),
    dict(batched=False, hx=False),
    dict(bias=False),
    dict(bias=False, batched=False, hx=False),
    dict(N=1),
    dict(N=0),
    dict(N=0, hx=False),
    dict(dtype=F32),
    dict(dtype=F32, batched=False),
    dict(dtype=F32, hx=False, bias=False),
    # rows * hidden above the CPU kernels' parallel grain
    dict(dtype=F32, N=160, I=8, H=256),
]


@pytest.mark.parametrize("kind, config", params(CELLS, CONFIGS))
def test_cell_parity(kind, config):
    assert_parity(*cell_case(kind, **config))


@pytest.mark.parametrize("kind, cell_kind", zip(MODES, CELLS))
def test_unrolled_cell_matches_sequence_module(kind, cell_kind):
    """Stepping the fused cell over time with the weights of a one-layer fused sequence
    module gives the module's output and final state."""
    _, seq_cls, seq_extra = classes(kind)
    _, cell_cls, cell_extra = classes(cell_kind)
    seq = seq_cls(3, 4, **seq_extra).double()
    cell = cell_cls(3, 4, **cell_extra).double()
    # weight_ih_l0 -> weight_ih, ...
    cell.load_state_dict({name[:-3]: value for name, value in seq.state_dict().items()}, strict=True)
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    out, state = seq(x)
    state = state if kind == "LSTM" else (state,)
    h = None
    steps = []
    for t in range(x.shape[0]):
        h = cell(x[t], h)
        steps.append(h[0] if kind == "LSTM" else h)
    assert_close(torch.stack(steps), out, 1e-12, "output")
    for got, want in zip(h if kind == "LSTM" else (h,), state):
        assert_close(got, want[0], 1e-12, "final state")
