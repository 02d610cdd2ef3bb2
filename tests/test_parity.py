"""fused_rnn.LSTM / GRU / RNN against torch.nn with identical weights: outputs, final
states, packed-sequence metadata and the gradients of input, states and every parameter.
A pruned grid: each config exercises a few features at once, over all four cell kinds."""
import pytest
import torch

from helpers import (MODES, TOLERANCE, assert_close, assert_error_within_torch_nn, assert_parity, output_tensors, params,
                     randn, sequence_case)

F32 = torch.float32

COMMON = [
    dict(),
    dict(hx=False),
    dict(layers=2, bidirectional=True),
    dict(layers=3, batch_first=True, hx=False),
    dict(layers=3, bidirectional=True, batch_first=True),
    dict(layers=2, bidirectional=True, bias=False, hx=False),
    dict(bias=False, batch_first=True),
    dict(unbatched=True),
    dict(unbatched=True, layers=2, bidirectional=True, batch_first=True, hx=False),
    # packed, lengths sorted (enforce_sorted=True) and not
    dict(lengths=[5, 3, 2], layers=2, bidirectional=True),
    dict(lengths=[5, 5, 1], hx=False),
    dict(lengths=[2, 5, 1, 4], N=4, enforce_sorted=False, batch_first=True, layers=2),
    dict(lengths=[3, 5, 3], enforce_sorted=False, bidirectional=True, hx=False, bias=False),
    dict(lengths=[4], N=1, enforce_sorted=False, layers=2, bidirectional=True),
    dict(lengths=[50, 17, 33, 1], T=50, N=4, enforce_sorted=False, bidirectional=True),
    # sequence length 1, long sequences, batch 1, empty batch
    dict(T=1, N=1),
    dict(T=1, layers=2, bidirectional=True, hx=False),
    dict(T=50, N=2, bidirectional=True),
    dict(N=1, layers=2, batch_first=True),
    dict(N=0, layers=2, bidirectional=True),
    dict(N=0, hx=False, batch_first=True),
    # float32
    dict(dtype=F32),
    dict(dtype=F32, layers=2, bidirectional=True, batch_first=True),
    dict(dtype=F32, lengths=[4, 5, 2], enforce_sorted=False, bidirectional=True, layers=2),
    dict(dtype=F32, T=50, N=2, layers=2),
    dict(dtype=F32, unbatched=True, hx=False, bias=False),
    # widths that are whole 32-column panels, up to 128: the CPU weight-gradient products
    # read the input and the outputs in place instead of packing them (kInPlaceMaxColumns)
    dict(dtype=F32, T=5, N=6, I=32, H=64, layers=2, bidirectional=True),
    dict(dtype=F32, T=5, N=3, I=96, H=32, lengths=[5, 2, 4], enforce_sorted=False, layers=2),
    # depths (I, H) of whole 8-deep blocks plus a remainder, and gate widths that end inside
    # a panel: the CPU's transposing weight packer (sgemm.cpp) takes each path
    dict(dtype=F32, T=4, N=5, I=37, H=45, layers=2),
    # rows * hidden above the CPU kernels' parallel grain: the multi-threaded pointwise path
    dict(dtype=F32, T=3, N=160, I=8, H=256),
    # recurrent GEMM above the threading threshold with H not a multiple of the 32-column
    # panels: hidden units split over threads, each running its own pointwise step
    dict(dtype=F32, T=4, N=96, I=8, H=136, layers=2, bidirectional=True),
    # the same, packed (the active rows shrink or grow per step inside the threaded loop)
    dict(dtype=F32, T=6, N=96, I=8, H=136, bidirectional=True, enforce_sorted=False,
         lengths=[6 - (i % 6) for i in range(96)]),
]

PROJECTED = [
    dict(proj_size=3),
    dict(proj_size=2, layers=2, bidirectional=True, hx=False),
    dict(proj_size=3, layers=3, batch_first=True, bias=False),
    dict(proj_size=3, lengths=[2, 5, 4], enforce_sorted=False, layers=2, bidirectional=True, batch_first=True),
    dict(proj_size=1, lengths=[5, 3, 3], hx=False),
    dict(proj_size=4, unbatched=True, layers=2),
    dict(proj_size=3, T=50, N=2, bidirectional=True),
    dict(proj_size=2, T=1, N=1, layers=2),
    dict(proj_size=2, N=0, layers=2),
    dict(proj_size=3, dtype=F32, layers=2, bidirectional=True),
    dict(proj_size=3, dtype=F32, lengths=[5, 1, 3], enforce_sorted=False),
]


@pytest.mark.parametrize("kind, config", params(MODES, COMMON) + params(["LSTM"], PROJECTED))
def test_parity(kind, config):
    assert_parity(*sequence_case(kind, **config))


@pytest.mark.parametrize("kind", MODES)
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_packed_output_is_packed_like_torch(kind, enforce_sorted):
    """The output of a PackedSequence input is a PackedSequence; it unpacks to the same
    padded tensor and lengths as torch.nn's, and h_n follows the caller's batch order."""
    from torch.nn.utils.rnn import pad_packed_sequence

    lengths = [5, 4, 2] if enforce_sorted else [2, 5, 4]
    ref, fused, leaves, make_args = sequence_case(kind, lengths=lengths, enforce_sorted=enforce_sorted,
                                                  bidirectional=True)
    with torch.no_grad():
        expected, ref_state = ref(*make_args(*leaves))
        actual, state = fused(*make_args(*leaves))
    padded, out_lengths = pad_packed_sequence(actual)
    ref_padded, ref_lengths = pad_packed_sequence(expected)
    assert torch.equal(out_lengths, ref_lengths)
    assert torch.equal(out_lengths, torch.tensor(lengths))
    torch.testing.assert_close(padded, ref_padded, rtol=0, atol=1e-10)
    # padded positions are exactly zero, as in torch.nn
    for b, length in enumerate(lengths):
        assert padded[length:, b].abs().sum().item() == 0
    # the final state of sequence b is its output at its last step (forward direction)
    h_n = state[0] if kind == "LSTM" else state
    H = h_n.shape[-1]
    for b, length in enumerate(lengths):
        torch.testing.assert_close(h_n[0, b], padded[length - 1, b, :H], rtol=0, atol=0)
        torch.testing.assert_close(h_n[1, b], padded[0, b, H:], rtol=0, atol=0)


@pytest.mark.parametrize("frozen", ["weights", "input-and-state"])
@pytest.mark.parametrize("kind", MODES)
def test_partial_requires_grad(kind, frozen):
    """Only some arguments require grad: the fused backward still matches torch.nn on
    the ones that do, and leaves the others without a gradient."""
    ref, fused, leaves, make_args = sequence_case(kind, layers=2, bidirectional=True, lengths=[5, 2, 4],
                                                  enforce_sorted=False)
    results = []
    for module in (ref, fused):
        xs = [t.clone().requires_grad_(frozen == "weights") for t in leaves]
        params = list(module.parameters())
        for p in params:
            p.requires_grad_(frozen != "weights")
        out, _ = module(*make_args(*xs))
        (out.data * randn(*out.data.shape, seed=9)).sum().backward()
        live, dead = (xs, params) if frozen == "weights" else (params, xs)
        assert all(t.grad is None for t in dead)
        results.append([t.grad for t in live])
    for k, (expected, actual) in enumerate(zip(*results)):
        assert_close(actual, expected, what=f"grad {k}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", MODES)
def test_cpu_low_precision(kind, dtype):
    assert_error_within_torch_nn(*sequence_case(kind, layers=2, bidirectional=True, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.float64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("kind", MODES)
def test_saturated_gates(kind, dtype):
    """Inputs and states 60x larger than usual drive every gate into saturation, where a
    fast exp/tanh approximation would show its range limits. In float32 the gradients are
    ill-conditioned there: torch.nn's own error against float64 reaches 1e-5 of the
    gradient's scale, the parity tolerance, so a result that rounds differently (another
    summation order) may be that far from torch.nn while as close to the exact gradient;
    each tensor must then be within 2x of torch.nn's own error instead."""
    ref, fused, leaves, make_args = sequence_case(kind, dtype=dtype, layers=2, bidirectional=True, T=8)
    saturating = [t * 60 for t in leaves]
    if dtype == torch.float64:
        assert_parity(ref, fused, saturating, make_args)
    else:
        assert_error_within_torch_nn(ref, fused, saturating, make_args, parity_tol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float64, F32], ids=["float64", "float32"])
@pytest.mark.parametrize("kind", MODES)
def test_nan_and_inf_propagate_like_torch_nn(kind, dtype):
    ref, fused, leaves, make_args = sequence_case(kind, dtype=dtype, T=4, layers=2)
    x = leaves[0].clone()
    x[1, 0, 0], x[2, 1, 1], x[2, 2, 1] = float("nan"), float("inf"), -float("inf")
    with torch.no_grad():
        actual = output_tensors(fused(*make_args(x, *leaves[1:])))
        expected = output_tensors(ref(*make_args(x, *leaves[1:])))
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert torch.equal(a.isnan(), e.isnan()), f"output {k}: NaN positions differ"
        torch.testing.assert_close(a, e, equal_nan=True, rtol=0, atol=10 * TOLERANCE[dtype], msg=f"output {k}")
