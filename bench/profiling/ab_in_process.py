"""A/B of a temporary runtime switch inside ONE process: a variant of the C++ code under
test reads the environment variable FUSED_RNN_AB ("0": A, "1": B) where it chooses, and this
script alternates short batches of calls between the two, so that the VM's slow and fast
periods (10-30% between runs minutes apart) reach both alike. Separate processes
(ab_builds.sh) cannot resolve differences that small here. Prints each variant's median
time per call over the rounds and in how many rounds B was faster.

    # while csrc/... reads getenv("FUSED_RNN_AB") (never committed):
    python bench/profiling/ab_in_process.py --cell lstm gru --shapes 200,16,64 --rounds 20

With --after-torch-nn every timed call follows an untimed torch.nn call of the same shape,
as in the benchmark's interleaving (caches and the second core left as torch.nn leaves
them), instead of running back to back.
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
    parser.add_argument("--after-torch-nn", action="store_true",
                        help="time each call right after an untimed torch.nn call (the benchmark's context)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for cell in args.cell:
        for shape in args.shapes:
            T, N, H = map(int, shape.split(","))
            module, reference = CLASSES[cell][0](H, H), CLASSES[cell][1](H, H)
            x = torch.randn(T, N, H, requires_grad=args.mode == "fwdbwd")

            def call(of=module):
                if args.mode == "forward":
                    with torch.no_grad():
                        of(x)
                else:
                    of(x)[0].sum().backward()

            def timed_calls():
                """Seconds of args.calls calls: back to back, or each after an untimed torch.nn call."""
                if not args.after_torch_nn:
                    start = time.perf_counter()
                    for _ in range(args.calls):
                        call()
                    return time.perf_counter() - start
                seconds = 0.0
                for _ in range(args.calls):
                    call(reference)
                    start = time.perf_counter()
                    call()
                    seconds += time.perf_counter() - start
                return seconds

            times = {"0": [], "1": []}
            for r in range(args.rounds + 2):  # the first two rounds warm up
                for variant in ("0", "1") if r % 2 else ("1", "0"):
                    os.environ["FUSED_RNN_AB"] = variant
                    call()  # one untimed call after each switch
                    seconds = timed_calls()
                    if r >= 2:
                        times[variant].append(seconds / args.calls * 1e3)
            a, b = statistics.median(times["0"]), statistics.median(times["1"])
            wins = sum(tb < ta for ta, tb in zip(times["0"], times["1"]))
            print(f"{cell} ({shape}) {args.mode}: A {a:.3f} ms, B {b:.3f} ms (medians of {args.rounds} rounds), "
                  f"B/A {b / a:.3f}, B faster in {wins} of {args.rounds}")


if __name__ == "__main__":
    main()
