"""torch.ops.fused_rnn.mm, the product behind the whole-sequence GEMMs (input and weight
gradients) that bench/ also times for the machine's peak GEMM throughput: torch.mm's result
on the shapes that take each path of the CPU kernel, and torch.mm-like errors."""
import pytest
import torch
from torch.library import opcheck

import fused_rnn  # noqa: F401  (registers torch.ops.fused_rnn)
from helpers import assert_close, needs_gpu, randn

mm = torch.ops.fused_rnn.mm
DEVICES = ["cpu", pytest.param("cuda", marks=needs_gpu)]

# (M, K, N): N of whole 32-column panels up to 128 reads mat2 in place (kInPlaceMaxColumns
# in csrc/cpu/cpu_backend.h); other widths pack it; K past the kernel's 512-deep k blocks;
# M of 7-9 and 13-15 rows, whose last rows take the AVX2 kernel's whole-panel tiles
# (row_plan in csrc/cpu/sgemm.cpp), in place, packed, partial panels and past a k block;
# empty dimensions.
SHAPES = [(7, 5, 3), (37, 70, 64), (200, 33, 128), (64, 700, 96), (30, 40, 256), (13, 600, 40),
          (8, 64, 256), (9, 70, 96), (14, 530, 50), (15, 16, 128),
          (0, 4, 32), (5, 0, 64), (5, 4, 0)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_mm_matches_torch_mm(shape, dtype, device, full_precision_float32):
    M, K, N = shape
    a = randn(M, K, dtype=dtype, device=device, seed=1)
    b = randn(K, N, dtype=dtype, device=device, seed=2)
    result = mm(a, b)
    assert result.shape == (M, N) and result.dtype == dtype and result.device == a.device
    assert_close(result, torch.mm(a.double(), b.double()).to(dtype), tol=1e-5 if dtype == torch.float32 else 1e-12)


def test_mm_takes_transposed_and_strided_views():
    a = randn(40, 64, dtype=torch.float32, seed=3)
    b = randn(96, 64, dtype=torch.float32, seed=4)
    assert_close(mm(a.t(), a), torch.mm(a.t(), a), tol=1e-5)
    assert_close(mm(a, b.t()), torch.mm(a, b.t()), tol=1e-5)
    assert_close(mm(a[::2], b.t()[:, 1::3]), torch.mm(a[::2], b.t()[:, 1::3]), tol=1e-5)


@pytest.mark.parametrize("args, error, words", [
    ((torch.ones(3), torch.ones(3, 2)), ValueError, ["self must be 2-D", "(M, K)"]),
    ((torch.ones(3, 2), torch.ones(2, 2, 1)), ValueError, ["mat2 must be 2-D", "(K, N)"]),
    ((torch.ones(3, 2), torch.ones(3, 4)), ValueError, ["mat2 must have shape (K, N) = (2, 4)", "got (3, 4)"]),
    ((torch.ones(3, 2), torch.ones(2, 4, dtype=torch.float64)), TypeError, ["mat2 must have the dtype of self"]),
    ((torch.ones(3, 2, dtype=torch.int32), torch.ones(2, 4, dtype=torch.int32)), TypeError, ["float32 or float64"]),
], ids=["self-1d", "mat2-3d", "inner-size", "dtype-mismatch", "integer"])
def test_mm_rejects_bad_arguments(args, error, words):
    with pytest.raises(error) as info:
        mm(*args)
    for word in words:
        assert word in str(info.value)


def test_mm_opcheck():
    opcheck(mm.default, (randn(9, 70, dtype=torch.float32, seed=5), randn(70, 64, dtype=torch.float32, seed=6)))


@needs_gpu
def test_cuda_mm_follows_the_rnn_tf32_flag(full_precision_float32):
    """On the GPU, float32 products use TF32 exactly where torch.nn's cuDNN RNNs do
    (torch.backends.cudnn.allow_tf32, on by default), as the RNN kernels' GEMMs do: so the
    flag, not torch.mm's, decides whether the result is TF32-accurate or float32-accurate."""
    a = randn(64, 600, dtype=torch.float32, device="cuda", seed=7)
    b = randn(600, 96, dtype=torch.float32, device="cuda", seed=8)
    exact = torch.mm(a.double(), b.double())
    scale = exact.abs().max().item()
    full = (mm(a, b).double() - exact).abs().max().item()
    assert full <= 1e-5 * scale
    if torch.cuda.get_device_capability() >= (8, 0):  # TF32 exists from Ampere on
        torch.backends.cudnn.allow_tf32 = True
        tf32 = (mm(a, b).double() - exact).abs().max().item()
        assert 1e-5 * scale < tf32 <= 1e-2 * scale
