"""The CPU kernels at every instruction set this CPU has (csrc/cpu/cpu_isa.h): the suite
runs the best one; here the parity, thread-split, pointwise and inference-workspace tests
run again in a child process capped by FUSED_RNN_CPU_ISA at each lower level, so an
AVX-512 machine also checks the AVX2 and the plain C++ paths, and an AVX2 machine the
plain one."""
import functools
import os
import subprocess
import sys

import pytest


ORDER = ["generic", "avx2", "avx512"]
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
KERNEL_TESTS = ["test_parity.py", "test_cpu_thread_splits.py", "test_cpu_pointwise.py",
                "test_cpu_weight_gradients.py", "test_cpu_weight_packing.py", "test_inference_workspace.py"]


def child_env(isa: str) -> dict:
    env = dict(os.environ, FUSED_RNN_CPU_ISA=isa)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    return env


def in_child(code: str, isa: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=child_env(isa), capture_output=True, text=True,
                          timeout=120)


@functools.lru_cache(maxsize=None)
def best_isa() -> str:
    """The ISA an uncapped process picks (a child, since this process may be capped)."""
    return in_child("import torch, fused_rnn; print(torch.ops.fused_rnn.cpu_isa())", "").stdout.strip()


def test_a_cap_lowers_the_isa_and_never_raises_it():
    best = best_isa()
    assert best in ORDER
    for isa in ORDER:
        expected = ORDER[min(ORDER.index(isa), ORDER.index(best))]
        child = in_child("import torch, fused_rnn; print(torch.ops.fused_rnn.cpu_isa())", isa)
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == expected


def test_an_unknown_cap_is_a_clear_error():
    code = ("import torch, fused_rnn\n"
            "try:\n"
            "    fused_rnn.LSTM(4, 4)(torch.randn(2, 1, 4))\n"
            "except ValueError as e:\n"
            "    print('ValueError:', e)\n")
    child = in_child(code, "sse9")
    assert child.returncode == 0, child.stderr
    assert "FUSED_RNN_CPU_ISA must be one of avx512, avx2, generic, got 'sse9'" in child.stdout


@pytest.mark.parametrize("isa", ["generic", "avx2"])
def test_kernel_tests_pass_at_a_lower_isa(isa):
    best = best_isa()
    if ORDER.index(isa) >= ORDER.index(best):
        pytest.skip(f"this CPU's best ISA is {best}: the main suite already runs {isa}" if isa == best
                    else f"this CPU has no {isa}")
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"] +
                           [os.path.join(TESTS_DIR, name) for name in KERNEL_TESTS],
                           env=child_env(isa), capture_output=True, text=True, timeout=900, cwd=REPO)
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-2000:]
    assert " passed" in child.stdout.splitlines()[-1]
