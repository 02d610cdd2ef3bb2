"""Runs code or the kernel test files in a child Python process under environment
variables that the CPU kernels read once per process (FUSED_RNN_CPU_ISA,
FUSED_RNN_CPU_SEQUENCE_PRODUCTS), so that one machine tests every path they choose between."""
import os
import subprocess
import sys
from typing import Dict

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS_DIR)
# The tests whose results depend on which CPU kernels and products run.
KERNEL_TESTS = ["test_parity.py", "test_cpu_thread_splits.py", "test_cpu_pointwise.py",
                "test_cpu_weight_gradients.py", "test_cpu_weight_packing.py", "test_inference_workspace.py"]


def child_env(settings: Dict[str, str]) -> dict:
    env = dict(os.environ, **settings)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    return env


def in_child(code: str, settings: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=child_env(settings), capture_output=True, text=True,
                          timeout=120)


def value_error_in_child(statement: str, settings: Dict[str, str]) -> str:
    """The message of the ValueError that `statement` raises in a child process with these
    settings (after `import torch, fused_rnn`); "" where it raises none."""
    code = ("import torch, fused_rnn\n"
            "try:\n"
            f"    {statement}\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    child = in_child(code, settings)
    assert child.returncode == 0, child.stderr
    return child.stdout.strip()


def run_kernel_tests(settings: Dict[str, str]) -> None:
    """Asserts that the KERNEL_TESTS pass in a child process with these settings."""
    child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"] +
                           [os.path.join(TESTS_DIR, name) for name in KERNEL_TESTS],
                           env=child_env(settings), capture_output=True, text=True, timeout=900, cwd=REPO)
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-2000:]
    assert " passed" in child.stdout.splitlines()[-1]
