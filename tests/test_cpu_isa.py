"""The CPU kernels at every instruction set this CPU has (csrc/cpu/cpu_isa.h): the suite
runs the best one; here the parity, thread-split, pointwise and inference-workspace tests
run again in a child process capped by FUSED_RNN_CPU_ISA at each lower level, so an
AVX-512 machine also checks the AVX2 and the plain C++ paths, and an AVX2 machine the
plain one."""
import functools

import pytest

from kernel_children import in_child, run_kernel_tests, value_error_in_child

ORDER = ["generic", "avx2", "avx512"]
PRINT_ISA = "import torch, fused_rnn; print(torch.ops.fused_rnn.cpu_isa())"


@functools.lru_cache(maxsize=None)
def best_isa() -> str:
    """The ISA an uncapped process picks (a child, since this process may be capped)."""
    return in_child(PRINT_ISA, {"FUSED_RNN_CPU_ISA": ""}).stdout.strip()


def test_a_cap_lowers_the_isa_and_never_raises_it():
    best = best_isa()
    assert best in ORDER
    for isa in ORDER:
        expected = ORDER[min(ORDER.index(isa), ORDER.index(best))]
        child = in_child(PRINT_ISA, {"FUSED_RNN_CPU_ISA": isa})
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == expected


def test_an_unknown_cap_is_a_clear_error():
    message = value_error_in_child("fused_rnn.LSTM(4, 4)(torch.randn(2, 1, 4))", {"FUSED_RNN_CPU_ISA": "sse9"})
    assert "FUSED_RNN_CPU_ISA must be one of avx512, avx2, generic, got 'sse9'" in message


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_kernel_tests_pass_at_a_lower_isa(isa):
    best = best_isa()
    if ORDER.index(isa) >= ORDER.index(best):
        pytest.skip(f"this CPU's best ISA is {best}: the main suite already runs {isa}" if isa == best
                    else f"this CPU has no {isa}")
    run_kernel_tests({"FUSED_RNN_CPU_ISA": isa})
