"""torch.compile(fullgraph=True) traces models that hold fused_rnn modules: forward and
backward equal eager. torch.nn's RNNs cannot be traced that way (a graph break)."""
import pytest
import torch
import torch.nn as nn

import fused_rnn  # noqa: F401  (registers torch.ops.fused_rnn)
from helpers import MODES, assert_close, classes, randn


class Tagger(nn.Module):
    """A small model around one recurrent module: embedding-like projection, RNN, head."""

    def __init__(self, rnn: nn.Module, out_features: int):
        super().__init__()
        self.inp = nn.Linear(5, rnn.input_size)
        self.rnn = rnn
        self.head = nn.Linear(out_features, 3)

    def forward(self, x, hx=None):
        out, state = self.rnn(torch.tanh(self.inp(x)), hx)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(out).sum(-1), h_n


def build(kind, rnn_module=None, **kwargs):
    _, fused_cls, extra = classes(kind)
    torch.manual_seed(0)
    rnn = (rnn_module or fused_cls)(4, 6, **extra, **kwargs)
    directions = 2 if kwargs.get("bidirectional") else 1
    return Tagger(rnn, directions * (kwargs.get("proj_size") or 6))


def run_with_grads(model, x, hx):
    """Outputs and the gradients of every parameter, of x and of the state leaves."""
    x = x.detach().clone().requires_grad_()
    leaves = [x] + [h.detach().clone().requires_grad_() for h in hx]
    state = None if not hx else (tuple(leaves[1:]) if len(hx) == 2 else leaves[1])
    out, h_n = model(x, state)
    loss = (out * randn(*out.shape, dtype=out.dtype, seed=3)).sum() + (h_n ** 2).sum()
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, leaves + params)
    return [out, h_n], list(grads)


def states(kind, layers, directions, N, H, P=None):
    h = randn(layers * directions, N, P or H, dtype=torch.float32, seed=11)
    if kind == "LSTM":
        return [h, randn(layers * directions, N, H, dtype=torch.float32, seed=12)]
    return [h]


def assert_compiled_matches_eager(model, x, hx, backend):
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    eager_outs, eager_grads = run_with_grads(model, x, hx)
    outs, grads = run_with_grads(compiled, x, hx)
    for k, (a, e) in enumerate(zip(outs, eager_outs)):
        assert_close(a, e, what=f"compiled output {k}")
    for k, (a, e) in enumerate(zip(grads, eager_grads)):
        assert_close(a, e, what=f"compiled grad {k}")


@pytest.mark.parametrize("kind", MODES)
def test_fullgraph_aot_eager(kind):
    model = build(kind, num_layers=2, bidirectional=True)
    x = randn(7, 3, 5, dtype=torch.float32, seed=1)
    assert_compiled_matches_eager(model, x, states(kind, 2, 2, 3, 6), "aot_eager")


def test_fullgraph_aot_eager_projected_lstm_batch_first_no_state():
    model = build("LSTM", proj_size=2, batch_first=True, num_layers=2)
    x = randn(3, 7, 5, dtype=torch.float32, seed=1)
    assert_compiled_matches_eager(model, x, [], "aot_eager")


def test_fullgraph_aot_eager_recompiles_for_new_shapes():
    """A second call with another sequence length and batch runs the compiled model
    (recompiling or dynamic) and still matches eager."""
    model = build("GRU")
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    for T, N in ((5, 2), (9, 4), (3, 1)):
        x = randn(T, N, 5, dtype=torch.float32, seed=T)
        outs, grads = run_with_grads(compiled, x, [])
        eager_outs, eager_grads = run_with_grads(model, x, [])
        for a, e in zip(outs + grads, eager_outs + eager_grads):
            assert_close(a, e, what=f"T={T} N={N}")


def test_fullgraph_inductor_lstm():
    model = build("LSTM", num_layers=2)
    x = randn(6, 2, 5, dtype=torch.float32, seed=1)
    assert_compiled_matches_eager(model, x, states("LSTM", 2, 1, 2, 6), "inductor")


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_torch_nn_rnn_breaks_fullgraph(kind):
    """The reason fused_rnn subclasses RNNBase: dynamo refuses nn.LSTM / nn.GRU in a model."""
    nn_cls, _, extra = classes(kind)
    model = build(kind, rnn_module=nn_cls)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with pytest.raises(torch._dynamo.exc.Unsupported, match="RNN, GRU, or LSTM"):
        compiled(randn(4, 2, 5, dtype=torch.float32))


@pytest.mark.parametrize("kind, op", [("LSTM", "lstm_forward"), ("GRU", "gru_forward"), ("RNN_RELU", "rnn_forward")])
def test_traced_graph_calls_fused_op(kind, op):
    """One dynamo graph, and it holds one fused op call per layer and direction."""
    graphs = []

    def recording_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model = build(kind, num_layers=2, bidirectional=True)
    torch._dynamo.reset()
    torch.compile(model, backend=recording_backend, fullgraph=True)(randn(4, 2, 5, dtype=torch.float32))
    assert len(graphs) == 1
    calls = [n for n in graphs[0].graph.nodes if n.op == "call_function" and f"fused_rnn.{op}" in str(n.target)]
    assert len(calls) == 4
