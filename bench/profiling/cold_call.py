"""Why one call timed alone is slower than the same call back to back: the median time of
a fused_rnn (and a torch.nn) call right after each of several things the benchmark's
interleaving puts before it: the same call (back to back), the other implementation, an
idle pause (the second core goes idle, as during the single-threaded cell loop), and a
32 MB pass over memory (the caches lose the call's buffers).

    python bench/profiling/cold_call.py --cell lstm --shape 200,16,64 --mode fwdbwd
"""
import argparse
import gc
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import impls  # noqa: E402  (bench/ modules)
from configs import Config  # noqa: E402


def median_after(before, call, repeats: int) -> float:
    """Median ms of `call` timed right after `before` (None: right after itself)."""
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=["lstm", "gru", "rnn_tanh"], default="lstm")
    parser.add_argument("--shape", default="200,16,64", help="T,N,H (I = H)")
    parser.add_argument("--mode", choices=["forward", "fwdbwd"], default="fwdbwd")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    T, N, H = map(int, args.shape.split(","))
    cfg = Config(cell=args.cell, T=T, N=N, I=H, H=H, dtype="float32")
    modules = impls.build_modules(cfg, torch.float32, torch.device("cpu"), seed=0)
    inputs = impls.make_inputs(cfg, torch.float32, torch.device("cpu"), seed=0)
    runner = impls.forward_runner if args.mode == "forward" else impls.fwdbwd_runner
    fused, nn = runner(modules["fused"], inputs), runner(modules["torch_nn"], inputs)
    memory = torch.empty(8 << 20)  # 32 MB: the L3 cache of this machine
    for _ in range(5):
        fused(), nn()
    gc.disable()
    for name, call, other in (("fused_rnn", fused, nn), ("torch.nn", nn, fused)):
        befores = {
            "back to back": None,
            "after the other": other,
            "after 2 ms idle": lambda: time.sleep(0.002),
            "after a 32 MB pass": lambda: memory.add_(1.0),
        }
        cells = [f"{label} {median_after(before, call, args.repeats):.3f}" for label, before in befores.items()]
        print(f"{args.cell} {args.shape} {args.mode} {name} ms: " + " | ".join(cells))


if __name__ == "__main__":
    main()
