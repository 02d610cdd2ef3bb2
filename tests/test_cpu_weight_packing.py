"""Float32 on AVX2 and AVX-512 CPUs packs W_ih and W_hh for its own GEMM once per call,
except for a single time step of fewer than 64 rows (the cells, one-step sequences), which
multiplies each weight once and takes the BLAS product instead (csrc/cpu/cpu_backend.h,
worth_packing). Both sides of that rule must give torch.nn's numbers, forward and
backward, and a forward must round alike whether or not a backward may follow (inference
and training take the same decision)."""
import pytest
import torch

from helpers import MODES, assert_sequence_matches_torch_nn, make_pair, randn

# (T, N): one step below and at the 64-row limit, and two steps of one row (weights packed).
STEPS_AND_ROWS = [(1, 1), (1, 63), (1, 64), (2, 1)]
I = 24


@pytest.mark.parametrize("H", [40, 64], ids=["H40", "H64"])  # H % 32 != 0 packs W_hh per gate
@pytest.mark.parametrize("T,N", STEPS_AND_ROWS, ids=[f"T{t}N{n}" for t, n in STEPS_AND_ROWS])
@pytest.mark.parametrize("kind", MODES)
def test_either_side_of_the_packing_rule_matches_torch_nn(kind, T, N, H, two_threads):
    assert_sequence_matches_torch_nn(kind, T, N, H, I, packed=False, layers=1, seed=7)


@pytest.mark.parametrize("N", [63, 64])
@pytest.mark.parametrize("kind", MODES)
def test_one_step_forward_rounds_alike_with_and_without_grad(kind, N, two_threads):
    _, fused = make_pair(kind, I, 40, dtype=torch.float32)
    x = randn(1, N, I, dtype=torch.float32, seed=2)
    trained = fused(x.clone().requires_grad_())
    with torch.no_grad():
        inferred = fused(x)
    assert torch.equal(trained[0].detach(), inferred[0])
