"""torch.export of models holding fused_rnn modules: the exported program keeps the fused
ops as single nodes, runs, matches eager (outputs and gradients), works with dynamic
batch and sequence length, survives run_decompositions() and a save/load round trip."""
import io

import pytest
import torch
import torch.nn as nn
from torch.export import Dim, export

import fused_rnn
from helpers import assert_close, randn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = fused_rnn.LSTM(5, 8, num_layers=2, bidirectional=True, batch_first=True, proj_size=3)
        self.gru = fused_rnn.GRU(6, 4)
        self.cell = fused_rnn.GRUCell(4, 4)

    def forward(self, x, h0, c0):
        y, (h, c) = self.lstm(x, (h0, c0))
        z, hg = self.gru(y.transpose(0, 1))
        return z, hg, c, self.cell(z[-1], hg[0])


def make(dtype=torch.float32):
    torch.manual_seed(0)
    return Model().to(dtype).eval()


def inputs(batch=3, time=7, dtype=torch.float32, seed=0):
    return (randn(batch, time, 5, dtype=dtype, seed=seed), randn(4, batch, 3, dtype=dtype, seed=seed + 1),
            randn(4, batch, 8, dtype=dtype, seed=seed + 2))


def fused_targets(program):
    return sorted({str(n.target) for n in program.graph.nodes
                   if n.op == "call_function" and str(n.target).startswith("fused_rnn.")})


def assert_outputs_close(actual, expected):
    assert len(actual) == len(expected)
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, what=f"output {k}")


@pytest.fixture(scope="module")
def exported():
    model = make()
    return model, export(model, inputs())


def test_export_keeps_fused_ops_and_matches_eager(exported):
    model, program = exported
    assert fused_targets(program) == ["fused_rnn.gru_forward.default", "fused_rnn.lstm_forward.default"]
    targets = [str(n.target) for n in program.graph.nodes]
    assert targets.count("fused_rnn.lstm_forward.default") == 4  # 2 layers x 2 directions
    assert targets.count("fused_rnn.gru_forward.default") == 2  # the GRU layer and the GRUCell
    args = inputs(seed=10)  # other values than the example inputs
    assert_outputs_close(program.module()(*args), model(*args))


def test_exported_program_backward_matches_eager(exported):
    model, program = exported
    grads = []
    for module in (model, program.module()):
        args = [t.clone().requires_grad_() for t in inputs(seed=20)]
        outs = module(*args)
        sum((o * torch.linspace(-1, 1, o.numel()).view(o.shape)).sum() for o in outs).backward()
        grads.append([a.grad for a in args])
    for k, (a, e) in enumerate(zip(grads[1], grads[0])):
        assert_close(a, e, what=f"grad of input {k}")


def test_dynamic_batch_and_sequence_length():
    model = make()
    batch, time = Dim("batch", min=1, max=64), Dim("time", min=2, max=512)
    program = export(model, inputs(), dynamic_shapes=({0: batch, 1: time}, {1: batch}, {1: batch}))
    for b, t in [(1, 2), (5, 11), (2, 40)]:
        args = inputs(b, t, seed=b + t)
        assert_outputs_close(program.module()(*args), model(*args))


def test_run_decompositions_keeps_fused_ops():
    model = make(torch.float64)
    program = export(model, inputs(dtype=torch.float64)).run_decompositions()
    assert fused_targets(program) == ["fused_rnn.gru_forward.default", "fused_rnn.lstm_forward.default"]
    args = inputs(dtype=torch.float64, seed=30)
    assert_outputs_close(program.module()(*args), model(*args))


def test_save_load_round_trip(exported):
    model, program = exported
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    loaded = torch.export.load(buffer)
    assert fused_targets(loaded) == fused_targets(program)
    args = inputs(seed=40)
    assert_outputs_close(loaded.module()(*args), model(*args))


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_export_of_each_module_alone_without_hx(kind):
    torch.manual_seed(0)
    module = getattr(fused_rnn, kind)(4, 6, num_layers=2).eval()
    x = randn(5, 2, 4, dtype=torch.float32)
    program = export(module, (x,))
    x2 = randn(5, 2, 4, dtype=torch.float32, seed=3)
    out, expected = program.module()(x2), module(x2)
    assert_close(out[0], expected[0], what="output")
    for a, e in zip(out[1] if kind == "LSTM" else (out[1],), expected[1] if kind == "LSTM" else (expected[1],)):
        assert_close(a, e, what="final state")
