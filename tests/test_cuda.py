"""The CUDA kernels: parity with torch.nn (cuDNN) in float64 and float32, float16/bfloat16
error no worse than torch.nn's own, gradcheck, opcheck, and device errors. Skipped where
no GPU is visible."""
import contextlib

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence
from torch.autograd import gradcheck
from torch.library import opcheck

from helpers import (CELLS, MODES, OP_CASE_IDS, OP_CASES, assert_close, assert_error_within_torch_nn,
                     assert_parity, backward_args, cell_case, expect_same_error, layer_args, make_pair,
                     needs_gpu, op_kind, output_tensors, params, randn, sequence_case)

# The only skip of this file: these tests need a GPU. Float32 at full precision
# (conftest.py's full_precision_float32) for every test.
pytestmark = [needs_gpu, pytest.mark.usefixtures("full_precision_float32")]

F32 = torch.float32
CUDA = "cuda"


SEQUENCE_CONFIGS = [
    dict(),
    dict(layers=2, bidirectional=True, hx=False),
    dict(layers=3, batch_first=True, bias=False),
    dict(unbatched=True, layers=2, bidirectional=True),
    dict(lengths=[5, 3, 2], layers=2, bidirectional=True),
    dict(lengths=[2, 5, 1, 4], N=4, enforce_sorted=False, batch_first=True, layers=2, bidirectional=True),
    dict(T=1, N=1),
    dict(T=50, N=2, bidirectional=True),
    dict(dtype=F32),
    dict(dtype=F32, layers=2, bidirectional=True, batch_first=True),
    dict(dtype=F32, lengths=[4, 5, 2], enforce_sorted=False, bidirectional=True, layers=2),
    dict(dtype=F32, T=50, N=2, layers=2),
    dict(dtype=F32, T=20, N=64, I=32, H=128, layers=2),
]
PROJECTED = [
    dict(proj_size=3, layers=2, bidirectional=True),
    dict(proj_size=2, lengths=[2, 5, 4], enforce_sorted=False, layers=2, bidirectional=True, hx=False),
    dict(proj_size=3, dtype=F32, layers=2, bidirectional=True, batch_first=True),
    dict(proj_size=3, dtype=F32, lengths=[5, 1, 3], enforce_sorted=False),
]
CELL_CONFIGS = [dict(), dict(hx=False, batched=False), dict(bias=False), dict(dtype=F32), dict(dtype=F32, N=64, H=128)]


@pytest.fixture(params=["auto", "stepwise"])
def cuda_loop(request, monkeypatch):
    """Both forward loops: auto (the persistent kernel wherever it applies, which is every
    small-batch case here) and the per-step cuBLAS + pointwise loop."""
    monkeypatch.setenv("FUSED_RNN_CUDA_LOOP", request.param)
    return request.param


@pytest.mark.parametrize("kind, config", params(MODES, SEQUENCE_CONFIGS) + params(["LSTM"], PROJECTED))
def test_cuda_parity(kind, config, cuda_loop):
    case = sequence_case(kind, device=CUDA, **config)
    if config.get("dtype") == F32:
        # cuDNN and cuBLAS sum in other orders: over long sequences both drift from the
        # float64 result by more than 1e-5, so such tensors must stay within 2x cuDNN's drift.
        assert_error_within_torch_nn(*case, parity_tol=1e-5)
    else:
        assert_parity(*case)


def cuda_kernel_names(fn) -> set:
    """Names of the CUDA kernels that fn launches."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return {e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA}


def uses_persistent_kernel(module, x) -> bool:
    with torch.no_grad():
        return any("persistent" in name and "forward_kernel" in name for name in cuda_kernel_names(lambda: module(x)))


# (H, lengths): rows of h read in 16-byte pieces (H = 40, 64: whole pieces in every dtype),
# element by element (H = 37), and the 16 rows of a launch (each unrolled row count's path).
PERSISTENT_SHAPES = {
    "packed-16-byte-rows": (40, [60, 41, 60, 7, 33]),
    "packed-odd-rows": (37, [60, 41, 60, 7, 33]),
    "sixteen-rows": (64, [30] * 8 + [29, 25, 20, 20, 12, 9, 3, 1]),
}
LOOP_TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 4e-2, torch.float16: 4e-2}


@pytest.mark.parametrize("shape", PERSISTENT_SHAPES)
@pytest.mark.parametrize("dtype", list(LOOP_TOLERANCE), ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("kind", MODES)
def test_cuda_persistent_matches_stepwise(kind, dtype, shape, monkeypatch):
    """The two forward loops compute the same sums in other orders: their outputs agree to
    rounding, step by step (packed and reverse included), over a long sequence."""
    H, lengths = PERSISTENT_SHAPES[shape]
    _, fused = make_pair(kind, 24, H, num_layers=2, bidirectional=True, device=CUDA, dtype=dtype)
    x = pack_padded_sequence(randn(max(lengths), len(lengths), 24, device=CUDA, dtype=dtype), torch.tensor(lengths),
                             enforce_sorted=False)
    results = {}
    for loop in ("auto", "stepwise"):
        monkeypatch.setenv("FUSED_RNN_CUDA_LOOP", loop)
        assert uses_persistent_kernel(fused, x) == (loop == "auto")
        with torch.no_grad():
            results[loop] = output_tensors(fused(x))
    for k, (a, e) in enumerate(zip(results["auto"], results["stepwise"])):
        # half precision: a few units of rounding
        assert_close(a.double(), e.double(), LOOP_TOLERANCE[dtype], what=f"output {k}")


@pytest.mark.parametrize("kind", MODES)
def test_cuda_loop_choice(kind, monkeypatch):
    """The module picks the loop by itself: one persistent launch for small batches, the
    per-step loop for large batches, projections, or when FUSED_RNN_CUDA_LOOP=stepwise."""
    _, fused = make_pair(kind, 16, 32, device=CUDA, dtype=F32)
    assert uses_persistent_kernel(fused, randn(20, 4, 16, device=CUDA, dtype=F32))
    assert not uses_persistent_kernel(fused, randn(20, 64, 16, device=CUDA, dtype=F32))
    monkeypatch.setenv("FUSED_RNN_CUDA_LOOP", "stepwise")
    assert not uses_persistent_kernel(fused, randn(20, 4, 16, device=CUDA, dtype=F32))
    if kind == "LSTM":
        monkeypatch.delenv("FUSED_RNN_CUDA_LOOP")
        _, projected = make_pair(kind, 16, 32, proj_size=8, device=CUDA, dtype=F32)
        assert not uses_persistent_kernel(projected, randn(20, 4, 16, device=CUDA, dtype=F32))


@pytest.mark.parametrize("kind, units", [("LSTM", 9), ("GRU", 11)])
def test_cuda_persistent_many_weight_rows_per_block(kind, units):
    """A hidden size whose share of W_hh per block (gates x units) is more than one row per
    lane (bfloat16, so that it still fits in shared memory): the lanes walk two groups of
    weight rows. (RNN's single gate would need H > 32 x the multiprocessor count.)"""
    H = units * torch.cuda.get_device_properties(0).multi_processor_count
    case = sequence_case(kind, device=CUDA, dtype=torch.bfloat16, T=4, N=2, I=8, H=H, lengths=[4, 2],
                         bidirectional=True)
    assert uses_persistent_kernel(case[1], randn(4, 2, 8, device=CUDA, dtype=torch.bfloat16))
    with _torch_nn_kernels_for(case):
        assert_error_within_torch_nn(*case)


@pytest.mark.parametrize("kind", MODES)
def test_cuda_zero_batch(kind):
    """N = 0, against torch.nn's native CUDA loop (cuDNN is not asked for empty batches)."""
    with torch.backends.cudnn.flags(enabled=False):
        assert_parity(*sequence_case(kind, device=CUDA, N=0, layers=2, bidirectional=True))


@pytest.mark.parametrize("kind, config", params(CELLS, CELL_CONFIGS))
def test_cuda_cell_parity(kind, config, cuda_loop):
    assert_parity(*cell_case(kind, device=CUDA, **config))


@pytest.mark.parametrize("kind", MODES)
def test_cuda_matches_cpu(kind):
    """The same module on the two devices: the CUDA kernels agree with the CPU ones."""
    _, cpu_fused, leaves, make_args = sequence_case(kind, layers=2, bidirectional=True, lengths=[5, 2, 4],
                                                    enforce_sorted=False)
    cuda_fused = sequence_case(kind, layers=2, bidirectional=True, device=CUDA)[1]
    with torch.no_grad():
        cpu = output_tensors(cpu_fused(*make_args(*leaves)))
        gpu = output_tensors(cuda_fused(*make_args(*[t.to(CUDA) for t in leaves])))
    for k, (a, e) in enumerate(zip(gpu, cpu)):
        assert_close(a.cpu(), e, what=f"output {k}")


LOW_PRECISION = [
    dict(layers=2, bidirectional=True),
    dict(lengths=[7, 3, 5, 1], N=4, T=7, enforce_sorted=False, bidirectional=True),
]
# 50 steps only for the smooth cells: with relu, rounding a pre-activation to bfloat16 moves
# some of the ~0.5% that lie within one rounding unit of 0 across it, which switches their
# gradient path on or off; over 50 steps any two implementations (torch.nn's included)
# then differ in the gradients by far more than rounding.
LONG_LOW_PRECISION = [dict(T=50, N=8, I=16, H=32, batch_first=True)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("kind, config", params(MODES, LOW_PRECISION)
                         + params(["LSTM", "GRU", "RNN_TANH"], LONG_LOW_PRECISION)
                         + params(["LSTM"], [dict(proj_size=3, layers=2, bidirectional=True)]))
def test_cuda_low_precision(kind, config, dtype, cuda_loop):
    case = sequence_case(kind, device=CUDA, dtype=dtype, **config)
    with _torch_nn_kernels_for(case):
        assert_error_within_torch_nn(*case)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("kind", CELLS)
def test_cuda_cell_low_precision(kind, dtype):
    case = cell_case(kind, device=CUDA, dtype=dtype, N=16, I=16, H=32)
    with _torch_nn_kernels_for(case):
        assert_error_within_torch_nn(*case)


def _torch_nn_kernels_for(case):
    """The comparison needs torch.nn's own error in the case's dtype. Where cuDNN has no
    RNN kernel for it, torch.nn's native CUDA kernels (cuDNN disabled) give that error
    instead of a skip."""
    ref, _, leaves, make_args = case
    try:
        ref(*make_args(*leaves))
        return contextlib.nullcontext()
    except RuntimeError:  # e.g. no cuDNN bfloat16 RNN in this build
        return torch.backends.cudnn.flags(enabled=False)


@pytest.mark.parametrize("kind", MODES)
def test_cuda_gradcheck(kind):
    _, fused, leaves, make_args = sequence_case(kind, device=CUDA, layers=2, bidirectional=True,
                                                lengths=[3, 1, 2], enforce_sorted=False, T=3, N=3, I=3, H=3)
    names = [n for n, _ in fused.named_parameters()]
    count = len(leaves)

    def f(*tensors):
        out = torch.func.functional_call(fused, dict(zip(names, tensors[count:])), make_args(*tensors[:count]))
        return tuple(output_tensors(out))

    inputs = [t.detach().clone().requires_grad_() for t in list(leaves) + list(fused.parameters())]
    assert gradcheck(f, tuple(inputs))


@pytest.mark.parametrize("kind, batches, bias, proj, reverse", OP_CASES, ids=OP_CASE_IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_cuda_opcheck(kind, batches, bias, proj, reverse, dtype):
    args = layer_args(kind, batches, bias=bias, proj=proj, reverse=reverse, dtype=dtype, device=CUDA)
    # numeric comparisons of opcheck (eager vs AOT) at the storage precision
    tol = {} if dtype != torch.float16 else dict(atol=1e-2, rtol=1e-2)
    opcheck(getattr(torch.ops.fused_rnn, f"{op_kind(kind)}_forward").default, args, **tol)
    plain = layer_args(kind, batches, bias=bias, proj=proj, reverse=reverse, dtype=dtype, device=CUDA,
                       requires_grad=False)
    opcheck(getattr(torch.ops.fused_rnn, f"{op_kind(kind)}_backward").default, backward_args(kind, plain), **tol)


@pytest.mark.parametrize("kind", MODES)
def test_cuda_state_on_other_device(kind):
    ref, fused = make_pair(kind, 4, 5, device=CUDA)
    x = randn(3, 2, 4, device=CUDA)
    h = randn(1, 2, 5)  # on the CPU
    hx = (h, h) if kind == "LSTM" else h
    expect_same_error(lambda: ref(x, hx), lambda: fused(x, hx), "device", "cpu", "cuda")


@pytest.mark.parametrize("kind", MODES)
def test_cuda_input_on_other_device_than_weights(kind):
    ref, fused = make_pair(kind, 4, 5, device=CUDA)
    x = randn(3, 2, 4)  # on the CPU
    expect_same_error(lambda: ref(x), lambda: fused(x), "device", "cpu", "cuda")


@pytest.mark.parametrize("kind", MODES)
def test_cuda_compile_fullgraph(kind):
    _, fused = make_pair(kind, 4, 5, num_layers=2, bidirectional=True, device=CUDA, dtype=F32)
    x = randn(6, 3, 4, device=CUDA, dtype=F32)
    torch._dynamo.reset()
    compiled = torch.compile(fused, backend="aot_eager", fullgraph=True)
    for a, e in zip(output_tensors(compiled(x)), output_tensors(fused(x))):
        assert_close(a, e, what="compiled output")
