"""fused_rnn.convert / fused_rnn.to_torch: every torch.nn recurrent module of a model (nested
in Sequential, ModuleList, ModuleDict, custom modules, or the model itself) swapped for its
twin with the same settings, the same Parameter objects, device, dtype and training mode;
outputs and gradients equal before and after; the round trip gives torch.nn back."""
import copy

import pytest
import torch
import torch.nn as nn

import fused_rnn
from helpers import assert_close, randn

TORCH_TYPES = (nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell)
FUSED_TYPES = (fused_rnn.LSTM, fused_rnn.GRU, fused_rnn.RNN, fused_rnn.LSTMCell, fused_rnn.GRUCell,
               fused_rnn.RNNCell)
SETTINGS = ("mode", "input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
            "bidirectional", "proj_size", "nonlinearity")

# (torch.nn class, fused_rnn class, constructor kwargs)
SINGLE = [
    (nn.LSTM, fused_rnn.LSTM, dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True,
                                   proj_size=2, batch_first=True, dropout=0.25)),
    (nn.LSTM, fused_rnn.LSTM, dict(input_size=3, hidden_size=4, bias=False)),
    (nn.GRU, fused_rnn.GRU, dict(input_size=3, hidden_size=4, num_layers=3, dropout=0.5, bias=False)),
    (nn.RNN, fused_rnn.RNN, dict(input_size=3, hidden_size=4, nonlinearity="relu", bidirectional=True)),
    (nn.RNN, fused_rnn.RNN, dict(input_size=3, hidden_size=4, nonlinearity="tanh", batch_first=True)),
    (nn.LSTMCell, fused_rnn.LSTMCell, dict(input_size=3, hidden_size=4)),
    (nn.GRUCell, fused_rnn.GRUCell, dict(input_size=3, hidden_size=4, bias=False)),
    (nn.RNNCell, fused_rnn.RNNCell, dict(input_size=3, hidden_size=4, nonlinearity="relu")),
]
SINGLE_IDS = [f"{c.__name__}-{k}" for k, (c, _, _) in enumerate(SINGLE)]


def settings(module):
    return {name: getattr(module, name) for name in SETTINGS if hasattr(module, name)}


def flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in flatten(item)]


def call(module, x):
    """The output tensors of module(x), nested tuples flattened."""
    return flatten(module(x))


def outputs_and_grads(model, x):
    """Outputs of `model(x)` and the gradients of their sum of squares w.r.t. every parameter."""
    model.zero_grad(set_to_none=True)
    outs = call(model, x)
    sum(o.pow(2).sum() for o in outs).backward()
    return outs, [p.grad.clone() for p in model.parameters()]


def input_for(cls, kwargs, dtype=torch.float64):
    if cls in (nn.LSTMCell, nn.GRUCell, nn.RNNCell):
        return randn(2, kwargs["input_size"], dtype=dtype, seed=3)
    return randn(2, 4, kwargs["input_size"], dtype=dtype, seed=3)  # (N, T, I) or (T, N, I)


@pytest.mark.parametrize("torch_cls,fused_cls,kwargs", SINGLE, ids=SINGLE_IDS)
def test_root_module_swapped_with_same_settings_and_parameters(torch_cls, fused_cls, kwargs):
    module = torch_cls(**kwargs).double().eval()
    params = dict(module.named_parameters())
    x = input_for(torch_cls, kwargs)
    expected, expected_grads = outputs_and_grads(module, x)

    fused = fused_rnn.convert(module)
    assert type(fused) is fused_cls
    assert settings(fused) == settings(module)
    assert fused.training is False
    assert list(dict(fused.named_parameters())) == list(params)
    for name, p in fused.named_parameters():
        assert p is params[name], f"{name} is not the same Parameter object"
    fused.load_state_dict(module.state_dict(), strict=True)

    actual, grads = outputs_and_grads(fused, x)
    assert len(actual) == len(expected)
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, what=f"output {k}")
    for (name, _), a, e in zip(module.named_parameters(), grads, expected_grads):
        assert_close(a, e, what=f"grad of {name}")

    back = fused_rnn.to_torch(fused)
    assert type(back) is torch_cls
    assert settings(back) == settings(module)
    for name, p in back.named_parameters():
        assert p is params[name]
    for a, e in zip(call(back, x), expected):
        assert torch.equal(a, e)  # torch.nn again, on the same weights: bit for bit


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_training_mode_dtype_and_requires_grad_kept(mode):
    module = nn.LSTM(3, 4, num_layers=2, dropout=0.5).to(torch.float64)
    module.train(mode == "train")
    module.weight_hh_l1.requires_grad_(False)
    fused = fused_rnn.convert(module)
    assert fused.training is (mode == "train")
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in fused.parameters())
    assert not fused.weight_hh_l1.requires_grad and fused.weight_ih_l1.requires_grad
    assert fused.dropout == 0.5
    if mode == "train":  # the same dropout masks from the same seed
        x = randn(5, 2, 3, seed=1)
        torch.manual_seed(7)
        expected = module(x)[0]
        torch.manual_seed(7)
        assert_close(fused(x)[0], expected)


class Inner(nn.Module):
    def __init__(self, H):
        super().__init__()
        self.cells = nn.Sequential(nn.GRUCell(H, H), nn.RNNCell(H, H, nonlinearity="relu", bias=False))
        self.scale = nn.Parameter(torch.tensor(0.5))

    def forward(self, h):
        return self.cells[1](self.cells[0](h) * self.scale)


class Net(nn.Module):
    """Recurrent modules in every kind of container, one of them in two places."""

    def __init__(self, I=3, H=4):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(I, I), nn.Tanh())
        self.rnns = nn.ModuleList([
            nn.LSTM(I, H, num_layers=2, bidirectional=True, proj_size=2, batch_first=True, dropout=0.1),
            nn.GRU(4, H, bias=False, batch_first=True),
        ])
        self.heads = nn.ModuleDict({"relu": nn.RNN(H, H, nonlinearity="relu", batch_first=True),
                                    "cell": nn.LSTMCell(H, H)})
        self.inner = Inner(H)
        self.again = self.heads["cell"]  # the same module under a second name

    def forward(self, x):
        y, _ = self.rnns[0](self.encoder(x))
        y, h = self.rnns[1](y)
        y, _ = self.heads["relu"](y, h)
        h, c = self.heads["cell"](y[:, -1])
        h, c = self.again(y[:, 0], (h, c))
        return self.inner(h) + c


def recurrent_modules(model):
    return [m for m in model.modules() if isinstance(m, TORCH_TYPES + FUSED_TYPES)]


def test_nested_model_converted_and_back():
    model = Net().double().eval()
    state = copy.deepcopy(model.state_dict())
    params = dict(model.named_parameters())
    x = randn(2, 5, 3, seed=4)
    expected, expected_grads = outputs_and_grads(model, x)

    same = fused_rnn.convert(model)
    assert same is model  # containers change in place, the root is kept
    kinds = recurrent_modules(model)
    assert len(kinds) == 6 and all(type(m) in FUSED_TYPES for m in kinds), [type(m) for m in kinds]
    assert type(model.rnns[0]) is fused_rnn.LSTM and type(model.inner.cells[1]) is fused_rnn.RNNCell
    assert model.again is model.heads["cell"]  # still one module
    assert type(model.encoder[0]) is nn.Linear  # everything else untouched
    assert model.rnns[0].proj_size == 2 and model.rnns[0].dropout == 0.1 and model.rnns[0].batch_first
    assert model.inner.cells[1].nonlinearity == "relu" and model.inner.cells[1].bias is False
    assert all(p is params[n] for n, p in model.named_parameters())
    assert model.state_dict().keys() == state.keys()
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name

    actual, grads = outputs_and_grads(model, x)
    assert_close(actual[0], expected[0], what="output")
    for (name, _), a, e in zip(model.named_parameters(), grads, expected_grads):
        assert_close(a, e, what=f"grad of {name}")

    fused_rnn.to_torch(model)
    kinds = recurrent_modules(model)
    assert len(kinds) == 6 and all(type(m) in TORCH_TYPES for m in kinds)
    assert model.again is model.heads["cell"]
    assert torch.equal(call(model, x)[0], expected[0])


def test_sequential_of_modules_and_plain_containers():
    seq = nn.Sequential(nn.Linear(3, 3), nn.GRU(3, 4))
    fused_seq = fused_rnn.convert(seq)
    assert fused_seq is seq and type(seq[1]) is fused_rnn.GRU

    mlist = nn.ModuleList([nn.RNNCell(3, 3), nn.ModuleList([nn.LSTM(3, 3)])])
    fused_rnn.convert(mlist)
    assert type(mlist[0]) is fused_rnn.RNNCell and type(mlist[1][0]) is fused_rnn.LSTM

    mdict = nn.ModuleDict({"a": nn.LSTMCell(2, 2), "b": nn.ModuleDict({"c": nn.GRUCell(2, 2)})})
    fused_rnn.convert(mdict)
    assert type(mdict["a"]) is fused_rnn.LSTMCell and type(mdict["b"]["c"]) is fused_rnn.GRUCell
    assert list(mdict.keys()) == ["a", "b"]

    plain = nn.Linear(2, 2)
    assert fused_rnn.convert(plain) is plain and fused_rnn.to_torch(plain) is plain


def test_fused_and_subclasses_left_alone():
    class MyLSTM(nn.LSTM):  # may override forward: never swapped
        pass

    model = nn.ModuleList([MyLSTM(2, 3), fused_rnn.GRU(2, 3), nn.GRU(2, 3)])
    fused_rnn.convert(model)
    assert type(model[0]) is MyLSTM and type(model[1]) is fused_rnn.GRU and type(model[2]) is fused_rnn.GRU
    fused_rnn.to_torch(model)
    assert type(model[0]) is MyLSTM and type(model[1]) is nn.GRU and type(model[2]) is nn.GRU


def test_optimizer_and_hooks_carry_over():
    model = nn.Sequential(nn.LSTM(3, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    model[0].register_forward_hook(lambda module, args, out: calls.append(type(module)))
    fused_rnn.convert(model)
    x = randn(3, 2, 3, dtype=torch.float32)
    before = model[0].weight_hh_l0.detach().clone()
    model[0](x)[0].sum().backward()
    optimizer.step()  # built before the swap, it still steps the module's weights
    assert not torch.equal(model[0].weight_hh_l0.detach(), before)
    assert calls == [fused_rnn.LSTM]


def test_buffers_and_extra_parameters_kept():
    module = nn.GRU(2, 3)
    module.register_buffer("steps", torch.tensor(5))
    module.register_buffer("scratch", torch.zeros(2), persistent=False)
    fused = fused_rnn.convert(module)
    assert fused.steps is module.steps and "steps" in fused.state_dict()
    assert "scratch" not in fused.state_dict() and fused.scratch is module.scratch


def test_public_api():
    assert fused_rnn.convert is not None and "convert" in fused_rnn.__all__ and "to_torch" in fused_rnn.__all__
    hints = fused_rnn.convert.__annotations__
    assert hints["model"] is nn.Module and hints["return"] is nn.Module
    assert fused_rnn.to_torch.__annotations__["return"] is nn.Module
