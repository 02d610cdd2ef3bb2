"""`python -m fused_rnn` in a child process: it runs, and every fact it prints agrees with
what the test finds on its own (dispatcher registrations, /proc/cpuinfo, the GPU code
strings nvcc leaves in the library)."""
import json
import os
import re
import struct
import subprocess
import sys

import pytest
import torch

import fused_rnn
from fused_rnn import __main__ as cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "fused_rnn", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def info():
    return json.loads(run_cli("--json"))


def test_text_output_has_every_fact(info):
    lines = run_cli().strip().splitlines()
    keys = [line.split(":", 1)[0] for line in lines]
    assert keys == list(info)
    for line in lines:
        key, value = line.split(":", 1)
        assert value.strip() == info[key]


def test_versions(info):
    assert info["fused_rnn"].split()[0] == fused_rnn.__version__
    assert info["torch"].split()[0] == torch.__version__
    assert os.path.samefile(info["library"], fused_rnn._C.__file__)
    assert info["CPU kernels"] == "6/6 ops"


def test_cuda_kernels_match_the_dispatcher(info):
    dump = torch._C._dispatch_dump("fused_rnn::lstm_forward")
    has_cuda = re.search(r"^CUDA:", dump, re.MULTILINE) is not None
    assert info["CUDA kernels"].startswith("compiled in" if has_cuda else "not compiled in")
    assert ("CUDA archs (fused_rnn)" in info) == has_cuda


def test_cuda_archs_match_nvcc_command_lines(info):
    """nvcc records `-arch sm_XX` of every cubin it embeds; the fatbinary reader must list
    the same architectures."""
    if "CUDA archs (fused_rnn)" not in info:
        pytest.skip("fused_rnn was built without CUDA kernels (no nvcc, or FUSED_RNN_CUDA=0): no archs to check")
    with open(fused_rnn._C.__file__, "rb") as f:
        data = f.read()
    recorded = sorted(set(re.findall(rb"-arch (sm_\d+)", data)))
    listed = info["CUDA archs (fused_rnn)"].split()
    assert recorded, "no -arch strings in the library"
    assert sorted(a.encode() for a in listed if a.startswith("sm_")) == recorded


def test_fatbinary_reader_on_synthetic_data(tmp_path):
    def entry(kind, sm, payload):  # a 64-byte entry header: kind, version, size, payload size, ..., sm at 28
        header = struct.pack("<HHIQ8xII", kind, 0x0101, 64, len(payload), 0x10008, sm)
        return header.ljust(64, b"\0") + payload

    body = entry(2, 86, b"x" * 40) + entry(1, 90, b"y" * 24) + entry(2, 90, b"z" * 8)
    blob = b"junk" + struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body + b"tail"
    path = tmp_path / "lib.so"
    path.write_bytes(blob)
    assert cli.embedded_cuda_archs(str(path)) == ["sm_86", "compute_90", "sm_90"]
    path.write_bytes(b"no gpu code here")
    assert cli.embedded_cuda_archs(str(path)) == []
    path.write_bytes(blob.replace(struct.pack("<HHIQ", 1, 0x0101, 64, 24), struct.pack("<HHIQ", 7, 0x0101, 64, 24)))
    assert cli.embedded_cuda_archs(str(path)) is None  # an unknown layout is not guessed at


def test_cpu_isa_matches_cpu_flags(info):
    flags = cli.cpu_flags() or set()
    if {"avx512f", "avx512dq", "avx512vl"} <= flags:
        expected = "avx512"
    elif {"avx2", "fma"} <= flags:
        expected = "avx2"
    else:
        expected = "generic"
    cap = os.environ.get("FUSED_RNN_CPU_ISA")
    order = ["generic", "avx2", "avx512"]
    if cap in order:
        expected = order[min(order.index(cap), order.index(expected))]
    assert info["CPU instruction set"].startswith(expected + " (")


def test_cpu_backward_products_line_names_the_op_s_choice(info):
    choice = torch.ops.fused_rnn.cpu_sequence_products()
    assert choice in ("own", "blas")
    assert info["CPU backward products"].startswith(choice + " (")


def test_gpu_line(info):
    if torch.cuda.is_available():
        assert torch.cuda.get_device_name() in info["GPU"]
    else:
        assert info["GPU"] == "none available to torch"
