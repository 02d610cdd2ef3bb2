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

import fused_rnn
from helpers import MODES, assert_sequence_matches_torch_nn

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
def more_threads_than_cpus():
    """Two threads more than this process may run on: the unit split, whose threads meet
    every step, must then stand aside (usable_cpus in csrc/cpu/step_barrier.h)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(len(os.sched_getaffinity(0)) + 2)
    yield
    torch.set_num_threads(saved)


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("kind", MODES)
def test_split_matches_torch_nn(kind, split, packed, two_threads):
    assert_sequence_matches_torch_nn(kind, 9, *SPLITS[split], packed)


@pytest.mark.parametrize("split", ["units-one-row", "units-small-step"])
@pytest.mark.parametrize("kind", MODES)
def test_more_threads_than_cpus_matches_torch_nn(kind, split, more_threads_than_cpus):
    assert_sequence_matches_torch_nn(kind, 9, *SPLITS[split], packed=False)
