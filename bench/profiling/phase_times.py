"""Where the time of fused_rnn module calls goes, phase by phase: the ops' own clocks
(csrc/phase_timer.h, switched on through torch.ops.fused_rnn.phase_times) summed over
back-to-back calls, per call, beside the whole call; "outside" is the rest (the module's
Python, autograd, freeing). CPU only: on CUDA the phases would time kernel launches.

    python bench/profiling/phase_times.py --cell lstm --shapes 200,16,64 100,64,256 --mode both
"""
import argparse
import time

import torch

from best_of import CLASSES

PHASES = {
    "forward": ["setup", "projection", "loop"],
    "backward": ["setup", "loop", "input grad", "weight grads", "bias grads"],
}


def timed_calls(call, calls: int):
    """(microseconds per phase, per call; wall microseconds per call) of `calls` calls."""
    torch.ops.fused_rnn.phase_times(True)
    start = time.perf_counter()
    for _ in range(calls):
        call()
    wall = (time.perf_counter() - start) / calls * 1e6
    totals = torch.ops.fused_rnn.phase_times(False).tolist()
    return [t / calls for t in totals[:-2]], wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=sorted(CLASSES), default="lstm")
    parser.add_argument("--shapes", nargs="+", default=["200,16,64"], help="T,N,H each (I = H)")
    parser.add_argument("--mode", choices=["forward", "fwdbwd", "both"], default="both")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for shape in args.shapes:
        T, N, H = map(int, shape.split(","))
        module = CLASSES[args.cell][0](H, H)
        x = torch.randn(T, N, H, requires_grad=True)
        grad = torch.randn(T, N, H)
        wrt = [x] + list(module.parameters())

        def forward():
            with torch.no_grad():
                module(x)

        def fwdbwd():
            torch.autograd.grad(module(x)[0], wrt, grad)

        modes = ["forward", "fwdbwd"] if args.mode == "both" else [args.mode]
        for mode in modes:
            call = forward if mode == "forward" else fwdbwd
            for _ in range(args.warmup):
                call()
            phases, wall = timed_calls(call, args.calls)
            names = [f"fwd {p}" for p in PHASES["forward"]]
            if mode == "fwdbwd":
                names += [f"bwd {p}" for p in PHASES["backward"]]
            parts = [f"{name} {us:.0f}" for name, us in zip(names, phases)]
            parts.append(f"outside {wall - sum(phases):.0f}")
            print(f"{args.cell} ({shape}) {mode}, us per call: total {wall:.0f} | " + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
