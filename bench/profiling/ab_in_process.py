"""A/B of a temporary runtime switch inside ONE process: a variant of the C++ code under
test reads the environment variable FUSED_RNN_AB ("0": A, "1": B) where it chooses, and this
script alternates short batches of calls between the two, so that the VM's slow and fast
periods (10-30% between runs minutes apart) reach both alike. Separate processes
(ab_builds.sh) cannot resolve differences that small here. Prints each variant's median
time per call over the rounds and in how many rounds B was faster.

    # while csrc/... reads getenv("FUSED_RNN_AB") (never committed):
    python bench/profiling/ab_in_process.py --cell lstm gru --shapes 200,16,64 --rounds 20
"""
import argparse
import os
import statistics
import time

import torch

from best_of import CLASSES


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", nargs="+", choices=sorted(CLASSES), default=["lstm"])
    parser.add_argument("--shapes", nargs="+", default=["200,16,64"], help="T,N,H each (I = H)")
    parser.add_argument("--mode", choices=["forward", "fwdbwd"], default="forward")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per variant and round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for cell in args.cell:
        for shape in args.shapes:
            T, N, H = map(int, shape.split(","))
            module = CLASSES[cell][0](H, H)
            x = torch.randn(T, N, H, requires_grad=args.mode == "fwdbwd")

            def call():
                if args.mode == "forward":
                    with torch.no_grad():
                        module(x)
                else:
                    module(x)[0].sum().backward()

            times = {"0": [], "1": []}
            for r in range(args.rounds + 2):  # the first two rounds warm up
                for variant in ("0", "1") if r % 2 else ("1", "0"):
                    os.environ["FUSED_RNN_AB"] = variant
                    call()  # one untimed call after each switch
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        call()
                    if r >= 2:
                        times[variant].append((time.perf_counter() - start) / args.calls * 1e3)
            a, b = statistics.median(times["0"]), statistics.median(times["1"])
            wins = sum(tb < ta for ta, tb in zip(times["0"], times["1"]))
            print(f"{cell} ({shape}) {args.mode}: A {a:.3f} ms, B {b:.3f} ms (medians of {args.rounds} rounds), "
                  f"B/A {b / a:.3f}, B faster in {wins} of {args.rounds}")


if __name__ == "__main__":
    main()
