"""Helpers shared by the test files: torch.nn / fused_rnn module pairs with identical
weights, seeded inputs, and ONE parity check (forward values, output structure and every
gradient) that works for the sequence modules and the cells alike."""
import copy
from typing import Callable, List, Optional, Sequence

import pytest
import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fused_rnn

# Sequence modules and cells by kind; the RNN kinds carry their nonlinearity.
_KINDS = {
    "LSTM": (nn.LSTM, fused_rnn.LSTM, {}),
    "GRU": (nn.GRU, fused_rnn.GRU, {}),
    "RNN_TANH": (nn.RNN, fused_rnn.RNN, {"nonlinearity": "tanh"}),
    "RNN_RELU": (nn.RNN, fused_rnn.RNN, {"nonlinearity": "relu"}),
    "LSTMCell": (nn.LSTMCell, fused_rnn.LSTMCell, {}),
    "GRUCell": (nn.GRUCell, fused_rnn.GRUCell, {}),
    "RNNCell_TANH": (nn.RNNCell, fused_rnn.RNNCell, {"nonlinearity": "tanh"}),
    "RNNCell_RELU": (nn.RNNCell, fused_rnn.RNNCell, {"nonlinearity": "relu"}),
}
MODES = ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")
CELLS = ("LSTMCell", "GRUCell", "RNNCell_TANH", "RNNCell_RELU")

# max|fused - reference| <= TOLERANCE * max(1, max|reference|), per compared tensor.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}

# The one skip of the CUDA tests: they need a GPU.
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: torch.cuda.is_available() is False")


def classes(kind: str):
    """(torch.nn class, fused_rnn class, extra constructor kwargs) of a kind."""
    return _KINDS[kind]


def make_pair(kind: str, *args, dtype=torch.float64, device="cpu", seed: int = 0, **kwargs):
    """A torch.nn module and its fused_rnn twin holding the same weights: the fused one
    loads the torch.nn state_dict with strict=True."""
    nn_cls, fused_cls, extra = classes(kind)
    torch.manual_seed(seed)
    ref = nn_cls(*args, **extra, **kwargs).to(device=device, dtype=dtype)
    fused = fused_cls(*args, **extra, **kwargs).to(device=device, dtype=dtype)
    fused.load_state_dict(ref.state_dict(), strict=True)
    return ref, fused


def randn(*shape, dtype=torch.float64, device="cpu", seed: int = 0) -> torch.Tensor:
    """Seeded standard normal values, the same on every device."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=dtype).to(device)


def output_tensors(out) -> List[torch.Tensor]:
    """The tensors of a module's result in order (a PackedSequence contributes its data)."""
    if isinstance(out, PackedSequence):
        return [out.data]
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for item in out for t in output_tensors(item)]


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    if expected.numel() == 0:
        return 0.0
    return (actual.double() - expected.double()).abs().max().item()


def scale_of(expected: torch.Tensor) -> float:
    return max(1.0, expected.double().abs().max().item()) if expected.numel() else 1.0


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tol: Optional[float] = None,
                 what: str = "tensor") -> None:
    """max|actual - expected| <= tol * max(1, max|expected|), same shape, dtype, device."""
    assert isinstance(actual, torch.Tensor), f"{what}: expected a Tensor, got {type(actual).__name__}"
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.device == expected.device, f"{what}: device {actual.device} != {expected.device}"
    tol = TOLERANCE[expected.dtype] if tol is None else tol
    err, scale = max_error(actual, expected), scale_of(expected)
    assert err <= tol * scale, f"{what}: max|fused - torch.nn| = {err:.3e} > {tol:g} * {scale:.4g}"


def _index_equal(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.device == b.device and torch.equal(a, b)


def assert_same_structure(actual, expected, what: str = "output") -> None:
    """Same nesting of tuples, Tensors and PackedSequences; packed metadata equal."""
    if isinstance(expected, PackedSequence):
        assert isinstance(actual, PackedSequence), f"{what}: expected a PackedSequence, got {type(actual).__name__}"
        assert _index_equal(actual.batch_sizes, expected.batch_sizes), f"{what}: batch_sizes differ"
        assert _index_equal(actual.sorted_indices, expected.sorted_indices), f"{what}: sorted_indices differ"
        assert _index_equal(actual.unsorted_indices, expected.unsorted_indices), f"{what}: unsorted_indices differ"
    elif isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"{what}: expected a Tensor, got {type(actual).__name__}"
    else:
        assert isinstance(actual, tuple) and isinstance(expected, tuple), \
            f"{what}: expected a tuple, got {type(actual).__name__}"
        assert len(actual) == len(expected), f"{what}: {len(actual)} items, torch.nn gives {len(expected)}"
        for k, (a, e) in enumerate(zip(actual, expected)):
            assert_same_structure(a, e, f"{what}[{k}]")


def _leaf_copies(leaves: Sequence[Optional[torch.Tensor]], requires_grad: bool):
    # clone() keeps the strides of dense tensors, so non-contiguous layouts survive.
    return [None if t is None else t.detach().clone().requires_grad_(requires_grad) for t in leaves]


def _gradients(outputs, cotangents, inputs):
    loss = sum((o * c).sum() for o, c in zip(outputs, cotangents))
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


def cotangents_for(outputs, seed: int = 1234, dtype=None):
    """Seeded random output gradients (the weights of the linear function we differentiate)."""
    return [randn(*o.shape, dtype=dtype or o.dtype, device=o.device, seed=seed + k) for k, o in enumerate(outputs)]


def run(module: nn.Module, leaves: Sequence[torch.Tensor], make_args: Optional[Callable] = None,
        cotangents=None, grads: bool = True):
    """Calls `module(*make_args(*copies of leaves))`; returns (result, output tensors,
    gradients of sum(output * cotangent) w.r.t. every leaf then every parameter, or None)."""
    make_args = make_args or (lambda *xs: xs)
    xs = _leaf_copies(leaves, grads)
    result = module(*make_args(*xs))
    outs = output_tensors(result)
    if not grads:
        return result, outs, None
    cotangents = cotangents_for(outs) if cotangents is None else cotangents
    return result, outs, _gradients(outs, cotangents, xs + list(module.parameters()))


def assert_parity(ref: nn.Module, fused: nn.Module, leaves: Sequence[torch.Tensor],
                  make_args: Optional[Callable] = None, *, tol: Optional[float] = None,
                  grads: bool = True) -> None:
    """Runs the torch.nn module `ref` and its fused twin on copies of `leaves`
    (`make_args(*leaves)` builds the call's arguments: packing, state tuples, views) and
    asserts the same output structure, outputs, and gradients of a random linear function
    of the outputs with respect to every leaf and every parameter."""
    names = [n for n, _ in ref.named_parameters()]
    assert [n for n, _ in fused.named_parameters()] == names, "parameter names or order differ"
    expected, ref_outs, ref_grads = run(ref, leaves, make_args, grads=grads)
    cotangents = cotangents_for(ref_outs) if grads else None
    actual, outs, fused_grads = run(fused, leaves, make_args, cotangents, grads=grads)

    assert_same_structure(actual, expected)
    for k, (a, e) in enumerate(zip(outs, ref_outs)):
        assert_close(a, e, tol, f"output tensor {k}")
    if not grads:
        return
    labels = [f"grad of leaf {k}" for k in range(len(leaves))] + [f"grad of {n}" for n in names]
    for label, a, e in zip(labels, fused_grads, ref_grads):
        assert_close(a, e, tol, label)


def assert_sequence_matches_torch_nn(kind: str, T: int, N: int, H: int, I: int, packed: bool,
                                     layers: int = 2, seed: int = 3) -> None:
    """A bidirectional float32 `kind` of `layers` layers against torch.nn on a (T, N, I)
    input, plain or packed (row 0 of length T, the others shorter): output, h_n, and the
    gradients of the input and of every parameter, within 2e-5 of torch.nn's scale."""
    ref, fused = make_pair(kind, I, H, num_layers=layers, bidirectional=True, dtype=torch.float32)
    x = randn(T, N, I, dtype=torch.float32, seed=seed)
    lengths = torch.tensor([T] + [1 + (5 * r) % T for r in range(1, N)])
    results = []
    for module in (fused, ref):
        leaf = x.detach().clone().requires_grad_()
        inp = pack_padded_sequence(leaf, lengths, enforce_sorted=False) if packed else leaf
        out, state = module(inp)
        out = out.data if packed else out
        h = state[0] if kind == "LSTM" else state
        grads = torch.autograd.grad(out.square().sum() + h.sum(), [leaf] + list(module.parameters()))
        results.append([out.detach(), h.detach()] + list(grads))
    names = ["output", "h_n", "grad of input"] + [f"grad of {n}" for n, _ in ref.named_parameters()]
    for name, a, e in zip(names, *results):
        assert_close(a, e, tol=2e-5, what=name)


def assert_error_within_torch_nn(ref: nn.Module, fused: nn.Module, leaves: Sequence[torch.Tensor],
                                 make_args: Optional[Callable] = None, *, factor: float = 2.0,
                                 parity_tol: Optional[float] = None) -> None:
    """Against torch.nn on the same (exactly representable) weights and inputs in a wider
    dtype (float32 for float16/bfloat16, float64 for float32), the fused error of every
    output and gradient is at most `factor` times torch.nn's own error in the narrow dtype,
    plus one unit of rounding. With parity_tol, a tensor within parity_tol * scale of
    torch.nn's passes too (float32: the two differ only by summation order, and over long
    sequences torch.nn's own error and ours are both of that size)."""
    dtype = leaves[0].dtype
    wide = torch.float64 if dtype == torch.float32 else torch.float32
    eps = torch.finfo(dtype).eps
    reference = copy.deepcopy(ref).to(wide)
    _, fused_outs, fused_grads = run(fused, leaves, make_args)  # first: fails fast if unsupported
    _, ref_outs, ref_grads = run(ref, leaves, make_args, cotangents_for(fused_outs))
    _, exact_outs, exact_grads = run(reference, [t.to(wide) for t in leaves], make_args,
                                     [c.to(wide) for c in cotangents_for(fused_outs)])
    names = [f"output {k}" for k in range(len(exact_outs))] + [f"grad of leaf {k}" for k in range(len(leaves))] + \
        [f"grad of {n}" for n, _ in ref.named_parameters()]
    for name, a, r, e in zip(names, fused_outs + fused_grads, ref_outs + ref_grads, exact_outs + exact_grads):
        assert a.dtype == dtype and a.shape == e.shape, f"{name}: {a.dtype} {tuple(a.shape)}"
        if parity_tol is not None and max_error(a, r) <= parity_tol * scale_of(r):
            continue
        fused_error, torch_error = max_error(a, e), max_error(r, e)
        bound = factor * torch_error + eps * scale_of(e)
        assert fused_error <= bound, (f"{name}: fused {dtype} error {fused_error:.3e} > {factor} x torch.nn's "
                                      f"{torch_error:.3e} + {eps:.1e} * {scale_of(e):.3g}")


def sequence_case(kind: str, *, layers: int = 1, bidirectional: bool = False, batch_first: bool = False,
                  bias: bool = True, proj_size: int = 0, T: int = 5, N: int = 3, I: int = 4, H: int = 6,
                  hx: bool = True, unbatched: bool = False, lengths: Optional[Sequence[int]] = None,
                  enforce_sorted: bool = True, dtype=torch.float64, device="cpu", seed: int = 0):
    """(ref, fused, leaves, make_args) for assert_parity with a LSTM/GRU/RNN kind.
    `lengths` packs the padded input with pack_padded_sequence; `hx=False` omits the state."""
    kwargs = dict(num_layers=layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if proj_size:
        kwargs["proj_size"] = proj_size
    ref, fused = make_pair(kind, I, H, dtype=dtype, device=device, seed=seed, **kwargs)
    states = layers * (2 if bidirectional else 1)
    batch = () if unbatched else (N,)
    x_shape = (T, I) if unbatched else ((N, T, I) if batch_first else (T, N, I))
    leaves = [randn(*x_shape, dtype=dtype, device=device, seed=seed + 1)]
    if hx:
        leaves.append(randn(states, *batch, proj_size or H, dtype=dtype, device=device, seed=seed + 2))
        if kind == "LSTM":
            leaves.append(randn(states, *batch, H, dtype=dtype, device=device, seed=seed + 3))

    def make_args(x, *state):
        if lengths is not None:
            x = pack_padded_sequence(x, torch.tensor(lengths), batch_first=batch_first,
                                     enforce_sorted=enforce_sorted)
        if not state:
            return (x,)
        return (x, tuple(state) if kind == "LSTM" else state[0])

    return ref, fused, leaves, make_args


def cell_case(kind: str, *, batched: bool = True, hx: bool = True, bias: bool = True, N: int = 3,
              I: int = 4, H: int = 5, dtype=torch.float64, device="cpu", seed: int = 0):
    """(ref, fused, leaves, make_args) for assert_parity with a cell kind."""
    ref, fused = make_pair(kind, I, H, bias=bias, dtype=dtype, device=device, seed=seed)
    batch = (N,) if batched else ()
    leaves = [randn(*batch, I, dtype=dtype, device=device, seed=seed + 1)]
    if hx:
        leaves.append(randn(*batch, H, dtype=dtype, device=device, seed=seed + 2))
        if kind == "LSTMCell":
            leaves.append(randn(*batch, H, dtype=dtype, device=device, seed=seed + 3))

    def make_args(x, *state):
        if not state:
            return (x,)
        return (x, tuple(state) if kind == "LSTMCell" else state[0])

    return ref, fused, leaves, make_args


def case_id(config: dict) -> str:
    """A short pytest id for a config dict."""
    if not config:
        return "default"
    parts = []
    for key, value in config.items():
        if isinstance(value, torch.dtype):
            value = str(value).replace("torch.", "")
        elif isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        parts.append(f"{key}={value}")
    return "-".join(parts)


def params(kinds: Sequence[str], configs: Sequence[dict]) -> list:
    """pytest.param(kind, config) for every kind and config, with readable ids."""
    return [pytest.param(kind, config, id=f"{kind}-{case_id(config)}") for kind in kinds for config in configs]


def expect_same_error(ref_call: Callable, fused_call: Callable, *words: str) -> BaseException:
    """Runs `ref_call` (torch.nn), which must raise; asserts `fused_call` raises exactly the
    same exception type, and that its message mentions at least one of `words`."""
    with pytest.raises(Exception) as ref_info:
        ref_call()
    expected_type = type(ref_info.value)
    with pytest.raises(Exception) as info:
        fused_call()
    assert type(info.value) is expected_type, (
        f"fused_rnn raised {type(info.value).__name__}({info.value}); "
        f"torch.nn raises {expected_type.__name__}({ref_info.value})")
    if words:
        message = str(info.value).lower()
        assert any(w.lower() in message for w in words), f"message {str(info.value)!r} names none of {words}"
    return info.value


# ---- arguments of the raw ops (shapes.h) -------------------------------------------------

GATES = {"lstm": 4, "gru": 3, "rnn": 1}

# (batch_sizes, N): unpacked T=3, N=2; packed lengths 4, 3, 3, 1; a single step; N = 0
BATCHES = {
    "unpacked": ([2, 2, 2], 2),
    "packed": ([4, 3, 3, 1], 4),
    "one-step": ([3], 3),
    "empty-batch": ([0, 0], 0),
}
# (kind, batches, bias, proj, reverse) of the op checks
OP_CASES = [
    ("lstm", "unpacked", True, False, False),
    ("lstm", "packed", True, False, True),
    ("lstm", "packed", False, True, False),
    ("lstm", "unpacked", True, True, True),
    ("lstm", "one-step", False, False, False),
    ("gru", "unpacked", True, False, False),
    ("gru", "packed", True, False, True),
    ("gru", "packed", False, False, False),
    ("gru", "one-step", True, False, True),
    ("rnn_tanh", "unpacked", True, False, True),
    ("rnn_tanh", "packed", False, False, False),
    ("rnn_relu", "packed", True, False, True),
    ("rnn_relu", "one-step", False, False, False),
    ("lstm", "empty-batch", True, True, True),
    ("gru", "empty-batch", True, False, False),
    ("rnn_tanh", "empty-batch", False, False, True),
]
OP_CASE_IDS = [f"{k}-{b}-{'bias' if bias else 'nobias'}{'-proj' if proj else ''}{'-reverse' if rev else ''}"
               for k, b, bias, proj, rev in OP_CASES]


def layer_args(kind, batches, *, bias=True, proj=False, reverse=False, requires_grad=True,
               dtype=torch.float64, device="cpu"):
    """Arguments of `<kind>_forward` for one layer: I=3, H=4, P=2 with projection."""
    sizes, N = BATCHES[batches]
    I, H = 3, 4
    P = 2 if proj else H
    G = GATES[op_kind(kind)]
    seeds = iter(range(100))

    def t(*shape):
        return randn(*shape, dtype=dtype, device=device, seed=next(seeds)).mul_(0.5).requires_grad_(requires_grad)

    input = t(sum(sizes), I)
    batch_sizes = torch.tensor(sizes, dtype=torch.long)
    h0 = t(N, P)
    w_ih, w_hh = t(G * H, I), t(G * H, P)
    b_ih, b_hh = (t(G * H), t(G * H)) if bias else (None, None)
    if kind == "lstm":
        return (input, batch_sizes, h0, t(N, H), w_ih, w_hh, b_ih, b_hh, t(P, H) if proj else None, reverse)
    if kind == "gru":
        return (input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, reverse)
    return (input, batch_sizes, h0, w_ih, w_hh, b_ih, b_hh, kind == "rnn_relu", reverse)


def op_kind(kind):
    return "rnn" if kind.startswith("rnn") else kind


def backward_args(kind, forward_args):
    """Arguments of `<kind>_backward` from a real forward run with random output grads."""
    kind = op_kind(kind)
    detached = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in forward_args)
    with torch.no_grad():
        results = getattr(torch.ops.fused_rnn, f"{kind}_forward")(*detached)
    output, workspace = results[0], results[-1]
    grads = [randn(*r.shape, dtype=r.dtype, device=r.device, seed=50 + k) for k, r in enumerate(results[:-1])]
    if kind == "lstm":
        input, batch_sizes, h0, c0, w_ih, w_hh, _, _, w_hr, reverse = detached
        return (*grads, input, batch_sizes, h0, c0, w_ih, w_hh, w_hr, output, workspace, reverse)
    input, batch_sizes, h0, w_ih, w_hh = detached[:5]
    flags = detached[7:]  # (reverse,) or (relu, reverse)
    return (*grads, input, batch_sizes, h0, w_ih, w_hh, output, workspace, *flags)
