"""A/B of the modules' Python in ONE process: fused_rnn/modules.py as of a git revision (A)
against the working tree's (B), both over the working tree's ops.py and extension, same
weights, alternating short batches of back-to-back no_grad calls (as ab_in_process.py
does for C++ switches, since separate processes cannot resolve a few percent on this VM).
Prints each variant's median time per call and in how many rounds B was faster.

    python bench/profiling/module_ab.py --rev HEAD --cell lstm --shapes 200,16,64 100,1,128

Only modules.py is taken from the revision: a change to ops.py's helpers is in both sides.
"""
import argparse
import os
import statistics
import subprocess
import time
import types

import torch

import best_of  # noqa: F401  (puts the repository on sys.path)
import fused_rnn

NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def modules_at(rev: str) -> types.ModuleType:
    """fused_rnn/modules.py of `rev`, importing the working tree's ops."""
    source = subprocess.run(["git", "show", f"{rev}:fused_rnn/modules.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType(f"fused_rnn_modules_at_{rev}")
    exec(compile(source.replace("from . import ops", "from fused_rnn import ops"), module.__name__, "exec"),
         module.__dict__)
    return module


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--cell", nargs="+", choices=sorted(NAMES), default=["lstm"])
    parser.add_argument("--shapes", nargs="+", default=["200,16,64"], help="T,N,H each (I = H)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    old = modules_at(args.rev)
    for cell in args.cell:
        for shape in args.shapes:
            T, N, H = map(int, shape.split(","))
            b = getattr(fused_rnn, NAMES[cell])(H, H)
            a = getattr(old, NAMES[cell])(H, H)
            a.load_state_dict(b.state_dict())
            x = torch.randn(T, N, H)
            seconds = {"A": [], "B": []}
            with torch.no_grad():
                for r in range(args.rounds):
                    for variant in ("A", "B") if r % 2 == 0 else ("B", "A"):
                        module = a if variant == "A" else b
                        module(x)  # untimed: the other variant ran last
                        start = time.perf_counter()
                        for _ in range(args.calls):
                            module(x)
                        seconds[variant].append((time.perf_counter() - start) / args.calls)
            ma, mb = statistics.median(seconds["A"]), statistics.median(seconds["B"])
            faster = sum(tb < ta for ta, tb in zip(seconds["A"], seconds["B"]))
            print(f"{cell} ({shape}) forward: A {ma * 1e3:.3f} ms, B {mb * 1e3:.3f} ms (medians of {args.rounds} "
                  f"rounds), B/A {mb / ma:.3f}, B faster in {faster} of {args.rounds}", flush=True)


if __name__ == "__main__":
    main()
