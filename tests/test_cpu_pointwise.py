"""The float32 LSTM and GRU forward steps on AVX-512 and AVX2 CPUs run their own intrinsics
copy of the cell math (csrc/cpu/cell_pointwise.inc: a polynomial exp, reciprocal estimates
refined by Newton steps). These tests isolate that math from the GEMMs: with one input
feature, no input bias and h0 = 0 (LSTM) or W_hh = 0 (GRU), every gate pre-activation is
the single product x * w_ih (plus GRU's b_hh, added alone), the same float in fused_rnn
and torch.nn, so h and c differ only by the pointwise arithmetic. Row widths that
are not a multiple of the 32-unit panels exercise the masked tails. On CPUs without either
the same tests check the generic path (and tests/test_cpu_isa.py runs them at each lower
ISA)."""
import pytest
import torch

from helpers import make_pair

F32 = torch.float32
ULP = torch.finfo(F32).eps


def one_step(x_rows, H, seed=0):
    """h and c of torch.nn.LSTM and fused_rnn.LSTM after one step from h0 = 0 with one
    input feature: the gate pre-activations are x_rows[r] * w_ih[k]."""
    ref, fused = make_pair("LSTM", 1, H, bias=False, dtype=F32, seed=seed)
    x = x_rows.to(F32).reshape(1, -1, 1)
    N = x.shape[1]
    gen = torch.Generator().manual_seed(seed + 1)
    h0 = torch.zeros(1, N, H, dtype=F32)
    c0 = torch.randn(1, N, H, generator=gen, dtype=F32)
    with torch.no_grad():
        results = [module(x, (h0, c0))[1] for module in (fused, ref)]
    return results


@pytest.mark.parametrize("H", [32, 40, 64, 100])
def test_activations_within_a_few_ulp_of_torch_nn(H):
    # pre-activations from about -90 to 90: both saturation ends and everything between
    x = torch.linspace(-30.0, 30.0, 97)
    (h, c), (h_ref, c_ref) = one_step(x, H)
    # h is in [-1, 1] and c = f c0 + i g with |c0| of a few units
    assert (h - h_ref).abs().max().item() <= 4 * ULP
    assert ((c - c_ref).abs() / c_ref.abs().clamp(min=1)).max().item() <= 4 * ULP


def test_infinities_and_nan_match_torch_nn():
    x = torch.tensor([float("inf"), -float("inf"), float("nan"), 1e30, -1e30, 88.5, -88.5, 0.0, 1e-30])
    (h, c), (h_ref, c_ref) = one_step(x, 40)
    for name, a, e in (("h", h, h_ref), ("c", c, c_ref)):
        assert torch.equal(a.isnan(), e.isnan()), f"{name}: NaN positions differ"
        finite = ~e.isnan()
        assert ((a - e)[finite]).abs().max().item() <= 4 * ULP * max(1.0, e[finite].abs().max().item()), name


def gru_one_step(x_rows, H, seed=0):
    """h of torch.nn.GRU and fused_rnn.GRU after one step with one input feature, b_ih = 0
    and W_hh = 0: the hidden-side gates are b_hh alone whatever h0 is, so h0 can be random
    and the update gate's h0 term is exercised; the reset gate multiplies b_hn."""
    ref, fused = make_pair("GRU", 1, H, bias=True, dtype=F32, seed=seed)
    with torch.no_grad():
        for module in (ref, fused):
            module.weight_hh_l0.zero_()
            module.bias_ih_l0.zero_()
            module.bias_hh_l0.copy_(torch.linspace(-3.0, 3.0, 3 * H))
    x = x_rows.to(F32).reshape(1, -1, 1)
    gen = torch.Generator().manual_seed(seed + 1)
    h0 = torch.randn(1, x.shape[1], H, generator=gen, dtype=F32)
    with torch.no_grad():
        return [module(x, h0)[1] for module in (fused, ref)]


@pytest.mark.parametrize("H", [32, 40, 64, 100])
def test_gru_activations_within_a_few_ulp_of_torch_nn(H):
    x = torch.linspace(-30.0, 30.0, 97)
    h, h_ref = gru_one_step(x, H)
    # h = (1 - z) n + z h0 with |h0| of a few units
    assert ((h - h_ref).abs() / h_ref.abs().clamp(min=1)).max().item() <= 4 * ULP


def test_gru_infinities_and_nan_match_torch_nn():
    x = torch.tensor([float("inf"), -float("inf"), float("nan"), 1e30, -1e30, 88.5, -88.5, 0.0, 1e-30])
    h, h_ref = gru_one_step(x, 40)
    assert torch.equal(h.isnan(), h_ref.isnan()), "NaN positions differ"
    finite = ~h_ref.isnan()
    assert ((h - h_ref)[finite]).abs().max().item() <= 4 * ULP * max(1.0, h_ref[finite].abs().max().item())
