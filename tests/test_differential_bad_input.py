"""Differential bad-input suite: a table of malformed and unusual calls (ranks, shapes,
dtypes, constructor argument ranges, hx structure, zero-size and strided inputs, NaN/Inf,
a very long sequence), each run on torch.nn and on fused_rnn with the same weights.

  - torch.nn raises  -> fused_rnn must raise the same exception type;
  - torch.nn accepts -> fused_rnn must accept, with the same output structure, the same
    values (NaN where torch.nn has NaN) and the same gradients of input, state and weights.

All cases run in a child process (this file run as a script), so that a crash in a kernel
fails its case instead of the test run: the child announces every case before running it;
when it dies, the parent records a crash for that case and starts a new child at the next.
"""
import copy
import json
import math
import os
import subprocess
import sys
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
F32, F64 = torch.float32, torch.float64
TOL = {F64: 1e-10, F32: 1e-5}

# ---- module families -------------------------------------------------------------------------


class Family(NamedTuple):
    name: str
    torch_cls: type
    fused_name: str
    kwargs: dict
    cell: bool


def _families() -> Dict[str, Family]:
    fams = [
        Family("LSTM", nn.LSTM, "LSTM", dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True), False),
        Family("LSTM_proj", nn.LSTM, "LSTM", dict(input_size=3, hidden_size=4, proj_size=2, batch_first=True), False),
        Family("GRU", nn.GRU, "GRU", dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True), False),
        Family("RNN_relu", nn.RNN, "RNN", dict(input_size=3, hidden_size=4, nonlinearity="relu", batch_first=True),
               False),
        Family("LSTMCell", nn.LSTMCell, "LSTMCell", dict(input_size=3, hidden_size=4), True),
        Family("GRUCell", nn.GRUCell, "GRUCell", dict(input_size=3, hidden_size=4), True),
        Family("RNNCell", nn.RNNCell, "RNNCell", dict(input_size=3, hidden_size=4, nonlinearity="tanh"), True),
        Family("RNNCell_relu", nn.RNNCell, "RNNCell", dict(input_size=3, hidden_size=4, nonlinearity="relu"), True),
    ]
    return {f.name: f for f in fams}


FAMILIES = _families()


class Ctx:
    """What a case sees on one side (torch.nn or fused_rnn): the module (a fresh copy), its
    class, and seeded tensor makers laid out for the module (batch_first, state sizes)."""

    def __init__(self, family: Family, module: nn.Module, cls: type, seed: int):
        self.family, self.m, self.cls = family, module, cls
        self.gen = torch.Generator().manual_seed(seed)
        kw = family.kwargs
        self.I, self.H = kw["input_size"], kw["hidden_size"]
        self.P = kw.get("proj_size", 0) or self.H
        self.L = kw.get("num_layers", 1) * (2 if kw.get("bidirectional", False) else 1)
        self.bf = kw.get("batch_first", False)
        self.lstm = family.name.startswith("LSTM")
        self.T, self.N = 5, 3

    def t(self, *shape, dtype=F64):
        return torch.randn(*shape, generator=self.gen, dtype=F64).to(dtype)

    def seq_shape(self, T=None, N=None, I=None):
        T, N, I = (self.T if T is None else T), (self.N if N is None else N), (self.I if I is None else I)
        if self.family.cell:
            return (N, I)
        return (N, T, I) if self.bf else (T, N, I)

    def seq(self, T=None, N=None, I=None, dtype=F64):
        return self.t(*self.seq_shape(T, N, I), dtype=dtype)

    def batch_axis(self):
        return 0 if (self.family.cell or self.bf) else 1

    def h_shape(self, N=None, P=None, L=None):
        N = self.N if N is None else N
        if self.family.cell:
            return (N, self.H if P is None else P)
        return (self.L if L is None else L, N, self.P if P is None else P)

    def unbatched_h_shape(self):
        return (self.H,) if self.family.cell else (self.L, self.P)

    def c_shape(self, N=None, H=None, L=None):
        N = self.N if N is None else N
        if self.family.cell:
            return (N, self.H if H is None else H)
        return (self.L if L is None else L, N, self.H if H is None else H)

    def state(self, N=None, dtype=F64):
        h = self.t(*self.h_shape(N), dtype=dtype)
        return (h, self.t(*self.c_shape(N), dtype=dtype)) if self.lstm else h

    def unbatched_state(self):
        h = self.t(*self.unbatched_h_shape())
        if not self.lstm:
            return h
        return (h, self.t(self.H) if self.family.cell else self.t(self.L, self.H))

    def with_h(self, h):
        """A state whose h is `h` (and a well-formed c for LSTM)."""
        if not self.lstm:
            return h
        return (h, self.t(*self.c_shape()))

    def strided(self, shape, axis):
        """A view of `shape` with stride 2 along `axis`."""
        big = list(shape)
        big[axis] *= 2
        index = [slice(None)] * len(shape)
        index[axis] = slice(None, None, 2)
        return self.t(*big)[tuple(index)]

    def transposed(self, shape, a=0, b=1):
        """A non-contiguous view of `shape` made by transposing axes a and b."""
        swapped = list(shape)
        swapped[a], swapped[b] = swapped[b], swapped[a]
        return self.t(*swapped).transpose(a, b)

    def expanded(self, shape, axis):
        one = list(shape)
        one[axis] = 1
        return self.t(*one).expand(*shape)

    def packed(self, lengths, enforce_sorted=True, dtype=F64):
        T = max(lengths)
        x = self.t(len(lengths), T, self.I, dtype=dtype) if self.bf else self.t(T, len(lengths), self.I, dtype=dtype)
        return pack_padded_sequence(x, torch.tensor(lengths), batch_first=self.bf, enforce_sorted=enforce_sorted)

    def construct(self, *args, **kwargs):
        """A module of this side's class from constructor arguments (no weights copied)."""
        return self.cls(*args, **kwargs)


def _set(module, name, index, value):
    with torch.no_grad():
        getattr(module, name).view(-1)[index] = value
    return module


# ---- the table ---------------------------------------------------------------------------------
# (name, applies to, case). `applies` is a set of family names or tags: "seq", "cell", "lstm"
# (the LSTM families), "lstmcell", "single" (GRU/RNN), "singlecell" (GRUCell/RNNCell).

def _tags(family: Family) -> set:
    tags = {family.name, "cell" if family.cell else "seq"}
    if family.name.startswith("LSTM"):
        tags.add("lstmcell" if family.cell else "lstm")
    else:
        tags.add("singlecell" if family.cell else "single")
    return tags


CASES = [
    # well-formed calls: the baseline the rest differs from
    ("ok", {"seq", "cell"}, lambda c: c.m(c.seq())),
    ("ok-with-hx", {"seq", "cell"}, lambda c: c.m(c.seq(), c.state())),
    ("ok-hx-none-keyword", {"seq", "cell"}, lambda c: c.m(c.seq(), hx=None)),
    ("ok-unbatched", {"seq", "cell"}, lambda c: c.m(c.t(*c.seq_shape()[1:] if c.family.cell else (c.T, c.I)),
                                                    c.unbatched_state())),
    # input rank, size, dtype, type
    ("input-4d", {"seq"}, lambda c: c.m(c.t(*c.seq_shape(), 1))),
    ("input-3d", {"cell"}, lambda c: c.m(c.t(2, *c.seq_shape()))),
    ("input-1d", {"seq"}, lambda c: c.m(c.t(c.I))),
    ("input-0d", {"seq", "cell"}, lambda c: c.m(c.t())),
    ("input-wrong-input-size", {"seq", "cell"}, lambda c: c.m(c.seq(I=c.I + 1))),
    ("input-float32-weights-float64", {"seq", "cell"}, lambda c: c.m(c.seq(dtype=F32))),
    ("input-float64-weights-float32", {"seq", "cell"}, lambda c: c.m.float()(c.seq())),
    ("input-float32-everything", {"seq", "cell"}, lambda c: c.m.float()(c.seq(dtype=F32), c.state(dtype=F32))),
    ("input-int64", {"seq", "cell"}, lambda c: c.m(torch.ones(c.seq_shape(), dtype=torch.long))),
    ("input-list", {"seq", "cell"}, lambda c: c.m(c.seq().tolist())),
    ("extra-positional-argument", {"seq", "cell"}, lambda c: c.m(c.seq(), c.state(), 1)),
    # h0 / hx shape
    ("h0-wrong-layers", {"seq"}, lambda c: c.m(c.seq(), c.with_h(c.t(*c.h_shape(L=c.L + 1))))),
    ("h0-wrong-batch", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(c.t(*c.h_shape(N=c.N + 1))))),
    ("h0-wrong-hidden", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(c.t(*c.h_shape(P=c.P + 1))))),
    ("h0-hidden-size-not-proj-size", {"LSTM_proj"}, lambda c: c.m(c.seq(), c.with_h(c.t(*c.h_shape(P=c.H))))),
    ("h0-rank-too-low", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(c.t(*c.h_shape()[1:])))),
    ("h0-rank-too-high", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(c.t(1, *c.h_shape())))),
    ("h0-float32", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(c.t(*c.h_shape(), dtype=F32)))),
    ("h0-int64", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(torch.zeros(c.h_shape(), dtype=torch.long)))),
    ("unbatched-input-batched-h0", {"seq", "cell"}, lambda c: c.m(c.t(*c.seq_shape()[1:] if c.family.cell else
                                                                      (c.T, c.I)), c.state())),
    ("batched-input-unbatched-h0", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(c.t(*c.unbatched_h_shape())))),
    # hx structure
    ("hx-tensor-not-tuple", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), c.t(*c.h_shape()))),
    ("hx-tuple-of-one", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), (c.t(*c.h_shape()),))),
    ("hx-tuple-of-three", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), c.state() + (c.t(*c.c_shape()),))),
    ("hx-list-of-two", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), list(c.state()))),
    ("hx-tuple-with-none", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), (c.t(*c.h_shape()), None))),
    ("hx-tuple-of-floats", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), (1.0, 2.0))),
    ("c0-wrong-hidden", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), (c.t(*c.h_shape()), c.t(*c.c_shape(H=c.H + 1))))),
    ("c0-wrong-batch", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), (c.t(*c.h_shape()), c.t(*c.c_shape(N=c.N + 1))))),
    ("c0-wrong-layers", {"lstm"}, lambda c: c.m(c.seq(), (c.t(*c.h_shape()), c.t(*c.c_shape(L=c.L + 1))))),
    ("c0-float32", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), (c.t(*c.h_shape()), c.t(*c.c_shape(), dtype=F32)))),
    ("c0-proj-size", {"LSTM_proj"}, lambda c: c.m(c.seq(), (c.t(*c.h_shape()), c.t(*c.c_shape(H=c.P))))),
    ("hx-tuple-for-single-state", {"single", "singlecell"}, lambda c: c.m(c.seq(), (c.t(*c.h_shape()),))),
    ("hx-list-for-single-state", {"single", "singlecell"}, lambda c: c.m(c.seq(), [c.t(*c.h_shape())])),
    ("hx-pair-for-single-state", {"single", "singlecell"},
     lambda c: c.m(c.seq(), (c.t(*c.h_shape()), c.t(*c.h_shape())))),
    # zero and one sizes
    ("batch-zero", {"seq", "cell"}, lambda c: c.m(c.seq(N=0))),
    ("batch-zero-with-hx", {"seq", "cell"}, lambda c: c.m(c.seq(N=0), c.state(N=0))),
    ("seq-length-zero", {"seq"}, lambda c: c.m(c.seq(T=0))),
    ("seq-length-one", {"seq"}, lambda c: c.m(c.seq(T=1), c.state())),
    ("batch-one", {"seq", "cell"}, lambda c: c.m(c.seq(N=1), c.state(N=1))),
    # strided and broadcast views as input and state
    ("input-strided-batch", {"seq", "cell"}, lambda c: c.m(c.strided(c.seq_shape(), c.batch_axis()), c.state())),
    ("input-strided-features", {"seq", "cell"}, lambda c: c.m(c.strided(c.seq_shape(), -1 % len(c.seq_shape())))),
    ("input-transposed", {"seq", "cell"}, lambda c: c.m(c.transposed(c.seq_shape()), c.state())),
    ("input-expanded", {"seq", "cell"}, lambda c: c.m(c.expanded(c.seq_shape(), 0))),
    ("h0-strided", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(c.strided(c.h_shape(), -1 % len(c.h_shape()))))),
    ("h0-transposed", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(c.transposed(c.h_shape())))),
    ("h0-expanded", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(c.expanded(c.h_shape(), -2 % len(c.h_shape()))))),
    ("c0-transposed", {"lstm", "lstmcell"}, lambda c: c.m(c.seq(), (c.t(*c.h_shape()), c.transposed(c.c_shape())))),
    ("weights-transposed-views", {"seq", "cell"},
     lambda c: c.m(c.seq()) if _transpose_weights(c.m) else None),
    # non-finite values
    ("input-nan", {"seq", "cell"}, lambda c: c.m(_set_value(c.seq(), 1, math.nan), c.state())),
    ("input-inf", {"seq", "cell"}, lambda c: c.m(_set_value(c.seq(), 2, math.inf), c.state())),
    ("input-minus-inf", {"seq", "cell"}, lambda c: c.m(_set_value(c.seq(), 0, -math.inf), c.state())),
    ("input-huge", {"seq", "cell"}, lambda c: c.m(c.seq() * 1e30, c.state())),
    ("h0-nan", {"seq", "cell"}, lambda c: c.m(c.seq(), c.with_h(_set_value(c.t(*c.h_shape()), 0, math.nan)))),
    ("weight-hh-nan", {"seq", "cell"},
     lambda c: _set(c.m, "weight_hh_l0" if not c.family.cell else "weight_hh", 1, math.nan)(c.seq())),
    # long sequence, small hidden size
    ("long-sequence-T2000", {"seq"}, lambda c: c.m(c.seq(T=2000, N=2), c.state(N=2))),
    # packed sequences
    ("packed", {"seq"}, lambda c: c.m(c.packed([5, 3, 3, 1]))),
    ("packed-unsorted-with-hx", {"seq"}, lambda c: c.m(c.packed([2, 5, 1, 3], enforce_sorted=False), c.state(N=4))),
    ("packed-h0-wrong-batch", {"seq"}, lambda c: c.m(c.packed([5, 3, 1]), c.state(N=4))),
    ("packed-float32-data", {"seq"}, lambda c: c.m(c.packed([3, 2], dtype=F32))),
    ("packed-data-wrong-input-size", {"seq"},
     lambda c: c.m(PackedSequence(c.t(6, c.I + 1), torch.tensor([3, 2, 1])))),
    ("packed-data-3d", {"seq"}, lambda c: c.m(PackedSequence(c.t(6, c.I, 1), torch.tensor([3, 2, 1])))),
    # constructor argument ranges (then a forward on whatever was built)
    ("ctor-hidden-size-zero", {"seq", "cell"}, lambda c: c.construct(3, 0)(torch.zeros(c.seq_shape()))),
    ("ctor-hidden-size-negative", {"seq", "cell"}, lambda c: c.construct(3, -1)),
    ("ctor-hidden-size-float", {"seq", "cell"}, lambda c: c.construct(3, 4.0)),
    ("ctor-input-size-zero", {"seq", "cell"}, lambda c: c.construct(0, 4).double()(c.seq(I=0))),
    ("ctor-input-size-negative", {"seq", "cell"}, lambda c: c.construct(-2, 4)),
    ("ctor-num-layers-zero", {"seq"}, lambda c: c.construct(3, 4, num_layers=0)),
    ("ctor-num-layers-float", {"seq"}, lambda c: c.construct(3, 4, num_layers=2.0)),
    ("ctor-dropout-negative", {"seq"}, lambda c: c.construct(3, 4, num_layers=2, dropout=-0.1)),
    ("ctor-dropout-above-one", {"seq"}, lambda c: c.construct(3, 4, num_layers=2, dropout=1.5)),
    ("ctor-dropout-bool", {"seq"}, lambda c: c.construct(3, 4, num_layers=2, dropout=True)),
    ("ctor-proj-size-equal-hidden", {"lstm"}, lambda c: c.construct(3, 4, proj_size=4)),
    ("ctor-proj-size-negative", {"lstm"}, lambda c: c.construct(3, 4, proj_size=-1)),
    ("ctor-proj-size-for-gru-rnn", {"single"}, lambda c: c.construct(3, 4, proj_size=2)),
    ("ctor-nonlinearity-unknown", {"RNN_relu", "RNNCell", "RNNCell_relu"},
     lambda c: c.construct(3, 4, nonlinearity="sigmoid")(torch.zeros(c.seq_shape(), dtype=F32))),
    ("ctor-unknown-keyword", {"seq", "cell"}, lambda c: c.construct(3, 4, hiden_size=4)),
    ("ctor-bias-none", {"seq", "cell"}, lambda c: c.construct(3, 4, bias=None)(torch.zeros(c.seq_shape()))),
]


def _set_value(t, index, value):
    t.view(-1)[index] = value
    return t


def _transpose_weights(module):
    """Replaces every weight matrix by a non-contiguous view with the same values."""
    with torch.no_grad():
        for name, p in list(module.named_parameters()):
            if p.dim() == 2:
                setattr(module, name, nn.Parameter(p.detach().t().contiguous().t()))
    return True


def case_table() -> List[tuple]:
    """(id, family name, case index) of every case that applies to a family."""
    table = []
    for family in FAMILIES.values():
        tags = _tags(family)
        for index, (name, applies, _) in enumerate(CASES):
            if applies & tags:
                table.append((f"{family.name}/{name}", family.name, index))
    return table


# ---- the child: run cases, one JSON line each -----------------------------------------------


def _flatten(result) -> List[torch.Tensor]:
    if isinstance(result, PackedSequence):
        return [result.data]
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)):
        return [t for item in result for t in _flatten(item)]
    raise TypeError(f"unexpected result {type(result).__name__}")


def _structure(result):
    if isinstance(result, PackedSequence):
        return ["PackedSequence", result.batch_sizes.tolist(),
                None if result.sorted_indices is None else result.sorted_indices.tolist()]
    if isinstance(result, torch.Tensor):
        return ["Tensor", list(result.shape), str(result.dtype)]
    return [type(result).__name__] + [_structure(r) for r in result]


def _side(family: Family, side: str, case: Callable, seed: int, reference: nn.Module) -> dict:
    """Runs one case on one side; returns the outcome (error, or outputs and gradients)."""
    import fused_rnn

    cls = family.torch_cls if side == "torch" else getattr(fused_rnn, family.fused_name)
    module = copy.deepcopy(reference)
    if side == "fused":
        module = fused_rnn.convert(module)  # same class settings, the same (copied) weights
    ctx = Ctx(family, module, cls, seed)
    torch.manual_seed(seed)
    try:
        result = case(ctx)
    except Exception as error:  # noqa: BLE001  (the exception type is what we compare)
        return {"error": type(error).__name__, "message": str(error)[:300]}
    outcome = {"structure": _structure(result) if result is not None else None, "tensors": [], "grads": []}
    if result is None:
        return outcome
    outs = _flatten(result)
    outcome["tensors"] = [o.detach() for o in outs]
    leaves = [p for p in ctx.m.parameters() if p.requires_grad] if isinstance(ctx.m, nn.Module) else []
    if any(o.requires_grad for o in outs) and leaves:
        gen = torch.Generator().manual_seed(99)
        try:
            loss = sum((o * torch.randn(o.shape, generator=gen, dtype=F64).to(o.dtype)).sum()
                       for o in outs if o.requires_grad)
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
            outcome["grads"] = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, leaves)]
        except Exception as error:  # noqa: BLE001
            outcome["backward_error"] = f"{type(error).__name__}: {str(error)[:200]}"
    return outcome


def _compare_tensors(label, actual, expected) -> List[str]:
    problems = []
    for k, (a, e) in enumerate(zip(actual, expected)):
        what = f"{label} {k}"
        if a.shape != e.shape or a.dtype != e.dtype:
            problems.append(f"{what}: {tuple(a.shape)} {a.dtype} vs torch.nn {tuple(e.shape)} {e.dtype}")
            continue
        if e.numel() == 0:
            continue
        a64, e64 = a.double(), e.double()
        if not torch.equal(torch.isnan(a64), torch.isnan(e64)):
            problems.append(f"{what}: NaN at {int(torch.isnan(a64).sum())} places, torch.nn at "
                            f"{int(torch.isnan(e64).sum())}")
            continue
        finite = torch.isfinite(e64)
        if not torch.equal(a64[~finite & ~torch.isnan(e64)], e64[~finite & ~torch.isnan(e64)]):
            problems.append(f"{what}: infinities differ")
            continue
        if finite.any():
            if not torch.isfinite(a64[finite]).all():
                problems.append(f"{what}: non-finite where torch.nn is finite")
                continue
            err = (a64[finite] - e64[finite]).abs().max().item()
            scale = max(1.0, e64[finite].abs().max().item())
            if err > TOL[e.dtype] * scale:
                problems.append(f"{what}: max error {err:.3e} > {TOL[e.dtype]:g} * {scale:.3g}")
    if len(actual) != len(expected):
        problems.append(f"{label}: {len(actual)} tensors, torch.nn gives {len(expected)}")
    return problems


def run_case(index_in_table: int) -> dict:
    case_id, family_name, case_index = case_table()[index_in_table]
    family = FAMILIES[family_name]
    _, _, case = CASES[case_index]
    torch.manual_seed(0)
    reference = family.torch_cls(**family.kwargs).double()
    expected = _side(family, "torch", case, 1000 + case_index, reference)
    actual = _side(family, "fused", case, 1000 + case_index, reference)
    report = {"id": case_id, "torch": expected.get("error"), "fused": actual.get("error"),
              "torch_message": expected.get("message"), "fused_message": actual.get("message"), "problems": []}
    if "error" in expected or "error" in actual:
        return report
    problems = report["problems"]
    if actual["structure"] != expected["structure"]:
        problems.append(f"structure {actual['structure']} vs torch.nn {expected['structure']}")
    problems += _compare_tensors("output", actual["tensors"], expected["tensors"])
    if expected.get("backward_error") != actual.get("backward_error"):
        problems.append(f"backward: fused {actual.get('backward_error')} vs torch.nn {expected.get('backward_error')}")
    problems += _compare_tensors("weight grad", actual["grads"], expected["grads"])
    return report


CRASH_AT = "FUSED_RNN_BAD_INPUT_CRASH_AT"  # self-test: the child aborts in this case index


def child_main(start: int, stop: int) -> None:
    import warnings

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    crash_at = int(os.environ.get(CRASH_AT, "-1"))
    for index in range(start, stop):
        print(f"BEGIN {index}", flush=True)
        if index == crash_at:
            os.abort()
        print("RESULT " + json.dumps(run_case(index)), flush=True)


def run_all_in_children(stop: Optional[int] = None, env_extra: Optional[dict] = None,
                        timeout: float = 300.0) -> Dict[str, dict]:
    """Runs the cases [0, stop) in child processes; a child that dies is replaced, starting
    after the case it died in, which is reported as a crash."""
    table = case_table()
    stop = len(table) if stop is None else stop
    results: Dict[str, dict] = {}
    start = 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")]),
               **(env_extra or {}))
    while start < stop:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(start), str(stop)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        running = None
        for line in proc.stdout.splitlines():
            if line.startswith("BEGIN "):
                running = int(line.split()[1])
            elif line.startswith("RESULT "):
                report = json.loads(line[len("RESULT "):])
                results[report["id"]] = report
                running = None
        if proc.returncode == 0:
            break
        if running is None:  # died outside a case: nothing to attribute it to
            raise RuntimeError(f"the child process failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
        results[table[running][0]] = {"id": table[running][0], "crash": proc.returncode,
                                      "stderr": proc.stderr[-2000:]}
        start = running + 1
    return results


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--child":
    child_main(int(sys.argv[2]), int(sys.argv[3]))
    sys.exit(0)


# ---- the tests ---------------------------------------------------------------------------------

import pytest  # noqa: E402

TABLE = case_table()
SEQ_FAMILIES = {"LSTM", "LSTM_proj", "GRU", "RNN_relu"}

# Where the two differ on purpose, asserted exactly so that a change either way is noticed:
# (family, case) -> (torch.nn's exception type or None for "accepts", fused_rnn's).
DEVIATIONS: Dict[tuple, tuple] = {}


def _deviate(families, cases, torch_type, fused_type):
    for family in families:
        for case in cases:
            DEVIATIONS[(family, case)] = (torch_type, fused_type)


# torch.nn fails with AttributeError / IndexError when it touches a non-Tensor argument or a
# short tuple (x.dim(), hx[1]): Python accidents, not checks. fused_rnn checks the argument
# first and raises TypeError / RuntimeError naming it.
_deviate(SEQ_FAMILIES, ["input-list"], "AttributeError", "TypeError")
_deviate(["LSTM", "LSTM_proj"], ["hx-tuple-of-one"], "IndexError", "RuntimeError")
_deviate(["LSTM", "LSTM_proj"], ["hx-tuple-with-none", "hx-tuple-of-floats"], "AttributeError", "RuntimeError")
_deviate(["LSTMCell"], ["hx-tuple-with-none", "hx-tuple-of-floats"], "AttributeError", "TypeError")
_deviate(["LSTM_proj"], ["hx-tensor-not-tuple"], "IndexError", "RuntimeError")  # 1 layer: hx[1] of a tensor
_deviate(["GRU", "RNN_relu"], ["hx-tuple-for-single-state", "hx-list-for-single-state", "hx-pair-for-single-state"],
         "AttributeError", "TypeError")
# torch.nn's float64 CPU loop promotes a c0 of another dtype (sigmoid(f) * c follows type
# promotion), while its oneDNN (float32) and cuDNN paths refuse one, as all of them refuse
# such an h0. fused_rnn refuses it everywhere.
_deviate(["LSTM", "LSTM_proj", "LSTMCell"], ["c0-float32"], None, "RuntimeError")


def deviation(case_id):
    return DEVIATIONS.get(tuple(case_id.split("/", 1)))


@pytest.fixture(scope="module")
def results():
    return run_all_in_children()


def describe(kind, message):
    return f"raises {kind}({message})" if kind else "accepts the call"


@pytest.mark.parametrize("case_id", [t[0] for t in TABLE])
def test_fused_matches_torch_nn(results, case_id):
    report = results.get(case_id)
    assert report is not None, f"{case_id}: no result from the child process"
    assert "crash" not in report, f"{case_id}: the child process died (rc {report.get('crash')}):\n{report.get('stderr')}"
    torch_says = f"torch.nn {describe(report['torch'], report['torch_message'])}"
    fused_says = f"fused_rnn {describe(report['fused'], report['fused_message'])}"
    expected = deviation(case_id)
    if expected is not None:
        assert (report["torch"], report["fused"]) == expected, (
            f"documented deviation {expected} changed: {torch_says}; {fused_says}")
        return
    assert report["fused"] == report["torch"], f"{torch_says}; {fused_says}"
    assert not report["problems"], "; ".join(report["problems"])


def test_table_covers_every_family_and_both_outcomes(results):
    assert len(results) == len(TABLE)
    ids = {tuple(t[0].split("/", 1)) for t in TABLE}
    assert not set(DEVIATIONS) - ids, "entries naming no case"
    for family in FAMILIES:
        reports = [r for r in results.values() if r["id"].startswith(family + "/")]
        assert sum(r.get("torch") is not None for r in reports) >= 10, f"{family}: few cases where torch.nn raises"
        assert sum(r.get("torch") is None for r in reports) >= 10, f"{family}: few accepted cases"


def test_a_crash_fails_its_case_not_the_run():
    """A child that dies (here: aborts on purpose in case 1) is reported as a crash of that
    case, and a new child runs the cases after it."""
    partial = run_all_in_children(stop=3, env_extra={CRASH_AT: "1"})
    assert [r["id"] for r in partial.values()] == [t[0] for t in TABLE[:3]]
    crashed = partial[TABLE[1][0]]
    assert crashed.get("crash") not in (None, 0)
    assert "crash" not in partial[TABLE[0][0]] and "crash" not in partial[TABLE[2][0]]
