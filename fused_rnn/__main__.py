"""`python -m fused_rnn`: what this build of fused_rnn is and which kernels it will run.

Every line is read from the loaded library or the machine, not from the build settings,
which are not recorded: the CUDA architectures come from the fatbinary that nvcc embedded
in _C.so, the CPU path from the CPU flags the library itself tests at run time.
"""
import argparse
import json
import os
import platform
import struct
import sys
from typing import Dict, List, Optional

import torch

import fused_rnn

_OPS = ("lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_forward", "rnn_backward")
# What each instruction set of the CPU kernels (csrc/cpu/cpu_isa.h) runs.
CPU_ISA_KERNELS = {
    "avx512": "float32 packed-weight SGEMM in AVX-512 registers, vectorised pointwise steps",
    "avx2": "float32 packed-weight SGEMM in AVX2 registers (with FMA), vectorised pointwise steps",
    "generic": "the BLAS that libtorch exports, pointwise steps for the baseline ISA",
}
_FATBIN_MAGIC = 0xBA55ED50


def kernels_for(dispatch_key: str) -> List[str]:
    """The fused_rnn ops with a kernel registered for `dispatch_key` ("CPU", "CUDA")."""
    return [op for op in _OPS if torch._C._dispatch_has_kernel_for_dispatch_key(f"fused_rnn::{op}", dispatch_key)]


def library_path() -> str:
    return fused_rnn._C.__file__


def embedded_cuda_archs(path: str) -> Optional[List[str]]:
    """GPU code embedded in the library, e.g. ["sm_80", "sm_90", "compute_90"] (compute_XX: PTX,
    compiled for newer GPUs at load time). Read from the fatbinary headers nvcc embeds: each
    entry starts with its kind (1 PTX, 2 cubin), header size, payload size, and its SM
    version at byte 28. None when the layout is not the one expected."""
    with open(path, "rb") as f:
        data = f.read()
    found: List[str] = []
    magic = struct.pack("<I", _FATBIN_MAGIC)
    start = data.find(magic)
    while start != -1:
        try:
            _, header_size, fat_size = struct.unpack_from("<HHQ", data, start + 4)
            entry, end = start + header_size, start + header_size + fat_size
            while entry < end:
                kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
                (sm,) = struct.unpack_from("<I", data, entry + 28)
                if kind not in (1, 2) or entry_header < 32 or not 10 <= sm < 1000:
                    return None
                name = f"{'compute' if kind == 1 else 'sm'}_{sm}"
                if name not in found:
                    found.append(name)
                entry += entry_header + payload
        except struct.error:
            return None
        start = data.find(magic, start + 1)
    return sorted(found, key=lambda a: (int(a.split("_")[1]), a))


def cpuinfo_field(name: str) -> Optional[str]:
    """The value of the first CPU's field `name` ("flags", "vendor_id", "model name") in
    /proc/cpuinfo; None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> Optional[set]:
    """The feature flags of the first CPU in /proc/cpuinfo; None where there is none (not Linux)."""
    flags = cpuinfo_field("flags")
    return set(flags.split()) if flags is not None else None


def cpu_isa_status() -> str:
    """The instruction set the CPU kernels chose at load (the CPU's best, at most
    FUSED_RNN_CPU_ISA), and what runs with it."""
    isa = torch.ops.fused_rnn.cpu_isa()
    cap = os.environ.get("FUSED_RNN_CPU_ISA")
    return f"{isa} ({CPU_ISA_KERNELS[isa]})" + (f"; capped by FUSED_RNN_CPU_ISA={cap}" if cap else "")


def cpu_sequence_products_status() -> str:
    """Who computes the CPU backward's whole-sequence products (csrc/cpu/sequence_products.h)."""
    choice = torch.ops.fused_rnn.cpu_sequence_products()
    what = "ATen's BLAS" if choice == "blas" else "fused_rnn's GEMM where it is faster, else ATen's BLAS"
    override = os.environ.get("FUSED_RNN_CPU_SEQUENCE_PRODUCTS")
    return f"{choice} ({what})" + (f"; set by FUSED_RNN_CPU_SEQUENCE_PRODUCTS={override}" if override else "")


def report() -> Dict[str, str]:
    """Build and machine facts, in print order."""
    cuda_kernels = kernels_for("CUDA")
    info = {
        "fused_rnn": f"{fused_rnn.__version__} ({os.path.dirname(fused_rnn.__file__)})",
        "library": library_path(),
        "torch": f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})",
        "python": f"{platform.python_version()} ({sys.executable})",
        "CPU kernels": f"{len(kernels_for('CPU'))}/{len(_OPS)} ops",
        "CUDA kernels": (f"compiled in ({len(cuda_kernels)}/{len(_OPS)} ops)" if cuda_kernels
                         else "not compiled in (CPU-only build)"),
    }
    if cuda_kernels:
        archs = embedded_cuda_archs(library_path())
        info["CUDA archs (fused_rnn)"] = (" ".join(archs) if archs else
                                          "unknown (no fatbinary found in the library that could be read)")
    info["CUDA archs (torch)"] = " ".join(torch.cuda.get_arch_list()) or "none"
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        info["GPU"] = f"{torch.cuda.get_device_name(index)} (sm_{major}{minor}), {torch.cuda.device_count()} device(s)"
    else:
        info["GPU"] = "none available to torch"
    info["CPU instruction set"] = cpu_isa_status()
    info["CPU backward products"] = cpu_sequence_products_status()
    info["CPU threads"] = str(torch.get_num_threads())
    return info


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fused_rnn", description="Prints what this build of fused_rnn is and which kernels it will run.")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args(argv)
    info = report()
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        print(f"{key + ':':<{width + 1}} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
