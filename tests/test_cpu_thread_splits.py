"""The CPU time loops run in one OpenMP region per layer and split it over the threads one
of two ways (csrc/cpu/cpu_backend.h): by batch rows, with no barrier at all, where W_hh is
small and there are at least 4 rows per thread; otherwise by hidden units, with a barrier
per step. Both must give torch.nn's results, forward and backward, on plain and packed
input (rows of packed sequences end at different steps, and the row split balances the
active row-steps rather than the rows), and also with more threads than CPUs, where the
unit split stands aside."""
import os

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fused_rnn
from helpers import MODES, assert_close, make_pair, randn

# (N, H, I): rows split (W_hh well under 1 MB, N >= 8); the same with input widths of
# whole 32-column panels (I = 32, then 2 H = 96 for the second layer), which the backward's
# whole-sequence products read in place (kInPlaceMaxColumns); units split (one
# row: H = 320 keeps every cell's step, down to RNN's 2 H^2 flops, far above the split's
# minimum flops per step, kUnitSplitMinStepFlops in csrc/cpu/cpu_backend.h); units split
# of a small step (one row, H = 112: RNN's 25K flops just above that minimum, and a last
# panel of 16 units); units split (W_hh over both row-split limits, 512 KB forward and
# 1 MB backward, kRowSplitMaxWeightBytes*, for every cell: RNN's H^2 floats at H = 544 are
# 1.18 MB); units split forward and rows split backward (W_hh between the two limits: LSTM
# 846 KB and GRU 635 KB at H = 230; RNN's 212 KB splits rows both ways).
SPLITS = {"rows": (16, 40, 12), "rows-panel-widths": (16, 48, 32), "units-one-row": (1, 320, 12),
          "units-small-step": (1, 112, 12), "units-large-weights": (8, 544, 12),
          "units-forward-rows-backward": (8, 230, 12)}


@pytest.fixture
def two_threads():
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def more_threads_than_cpus():
    """Two threads more than this process may run on: the unit split, whose threads meet
    every step, must then stand aside (usable_cpus in csrc/cpu/step_barrier.h)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(len(os.sched_getaffinity(0)) + 2)
    yield
    torch.set_num_threads(saved)


def assert_matches_torch_nn(kind, N, H, I, packed):
    ref, fused = make_pair(kind, I, H, num_layers=2, bidirectional=True, dtype=torch.float32)
    x = randn(9, N, I, dtype=torch.float32, seed=3)
    lengths = torch.tensor([9] + [1 + (5 * r) % 9 for r in range(1, N)])
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


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("kind", MODES)
def test_split_matches_torch_nn(kind, split, packed, two_threads):
    assert_matches_torch_nn(kind, *SPLITS[split], packed)


@pytest.mark.parametrize("split", ["units-one-row", "units-small-step"])
@pytest.mark.parametrize("kind", MODES)
def test_more_threads_than_cpus_matches_torch_nn(kind, split, more_threads_than_cpus):
    assert_matches_torch_nn(kind, *SPLITS[split], packed=False)
