"""Who computes the CPU backward's whole-sequence products (csrc/cpu/sequence_products.h):
ATen's BLAS where it is MKL on an Intel CPU, else our GEMM where it takes them. The suite
runs this machine's choice; here the kernel tests run again in a child process with the
other one (FUSED_RNN_CPU_SEQUENCE_PRODUCTS), at the best instruction set and at AVX2, whose
weight gradients take another path of ours (sgemm::gemm_transposed_a), so that every
machine checks both."""
import functools

import pytest
import torch

from fused_rnn.__main__ import cpuinfo_field
from kernel_children import in_child, run_kernel_tests, value_error_in_child
from test_cpu_isa import ORDER, best_isa

PRINT_CHOICE = "import torch, fused_rnn; print(torch.ops.fused_rnn.cpu_sequence_products())"
UNSET = {"FUSED_RNN_CPU_SEQUENCE_PRODUCTS": ""}


@functools.lru_cache(maxsize=None)
def default_choice() -> str:
    child = in_child(PRINT_CHOICE, UNSET)
    assert child.returncode == 0, child.stderr
    return child.stdout.strip()


def test_the_default_is_blas_only_for_mkl_on_an_intel_cpu():
    vendor = cpuinfo_field("vendor_id")
    if not vendor:
        pytest.skip("no vendor_id in /proc/cpuinfo on this system")
    expected = "blas" if vendor == "GenuineIntel" and torch.backends.mkl.is_available() else "own"
    assert default_choice() == expected


@pytest.mark.parametrize("choice", ["own", "blas"])
def test_the_environment_variable_sets_the_choice(choice):
    child = in_child(PRINT_CHOICE, {"FUSED_RNN_CPU_SEQUENCE_PRODUCTS": choice})
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == choice


def test_an_unknown_choice_is_a_clear_error():
    backward = "fused_rnn.LSTM(4, 4)(torch.randn(3, 2, 4, requires_grad=True))[0].sum().backward()"
    message = value_error_in_child(backward, {"FUSED_RNN_CPU_SEQUENCE_PRODUCTS": "cublas"})
    assert "FUSED_RNN_CPU_SEQUENCE_PRODUCTS must be one of own, blas, got 'cublas'" in message


@pytest.mark.parametrize("isa", ["best", "avx2"])
def test_kernel_tests_pass_with_the_other_choice(isa):
    best = best_isa()
    if isa == "avx2" and ORDER.index(best) <= ORDER.index("avx2"):
        pytest.skip(f"this CPU's best ISA is {best}: the 'best' case already runs it" if best == "avx2"
                    else f"this CPU has no {isa}")
    other = "own" if default_choice() == "blas" else "blas"
    run_kernel_tests({"FUSED_RNN_CPU_SEQUENCE_PRODUCTS": other, "FUSED_RNN_CPU_ISA": best if isa == "best" else isa})
