"""How fast a core does one kind of work during the first milliseconds after something
else ran on it: FMA latency (the clock), FMA throughput, and L1 / L2 bandwidth, each timed
in consecutive segments of ~25-60 us right after a context (the same kernel back to back,
10 ms of Python, 10 ms of small products, the products then 3 ms of Python, 10 ms asleep).
The contexts take turns round by round; the table gives each segment's median time per
iteration relative to back to back (1.00 = as fast).

    python bench/profiling/core_warmup_probe.py

The benchmark times each call right after another implementation's (bench/README.md,
"Timing methodology"); this shows what such a context does to the core itself, whatever
code runs next. Builds core_warmup_probe.c into build/ with the C compiler on PATH.
"""
import argparse
import ctypes
import os
import statistics
import subprocess
import time

import torch

from busy_contexts import python_for, small_products_for

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "core_warmup_probe.c")
LIBRARY = os.path.join(HERE, "..", "..", "build", "core_warmup_probe.so")

# kernel -> iterations per segment (each segment ~25-60 us on a 3 GHz Zen 3)
KERNELS = {"fma_latency": 50000, "fma_throughput": 40000, "l1_sum": 200, "l2_sum": 10}
SHOWN_SEGMENTS = (0, 1, 2, 4, 8, 16, 23)


def load_library() -> ctypes.CDLL:
    if not os.path.exists(LIBRARY) or os.path.getmtime(LIBRARY) < os.path.getmtime(SOURCE):
        os.makedirs(os.path.dirname(LIBRARY), exist_ok=True)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", SOURCE, "-o", LIBRARY], check=True)
    return ctypes.CDLL(LIBRARY)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--segments", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the products stay on this thread, like everything timed here
    library = load_library()
    square = torch.randn(64, 64)
    contexts = {
        "back to back": None,
        "after 10 ms of Python": lambda: python_for(10),
        "after 10 ms of products": lambda: small_products_for(10, square),
        "after products + 3 ms Python": lambda: (small_products_for(10, square), python_for(3)),
        "after 10 ms asleep": lambda: time.sleep(0.010),
    }
    shown = [s for s in SHOWN_SEGMENTS if s < args.segments]
    out = (ctypes.c_double * args.segments)()
    for name, iterations in KERNELS.items():
        kernel = getattr(library, name)

        def run():
            kernel(ctypes.c_long(iterations), args.segments, out)
            return list(out)

        samples = {label: [] for label in contexts}
        for _ in range(args.rounds):
            for label, before in contexts.items():
                if before is None:
                    run()  # back to back: right after a run of its own
                else:
                    before()
                samples[label].append(run())
        medians = {label: [statistics.median(r[s] for r in rows) for s in range(args.segments)]
                   for label, rows in samples.items()}
        base = medians["back to back"]
        segment_us = statistics.median(base) * iterations / 1e3
        print(f"{name}: back to back {statistics.median(base):.3f} ns an iteration, a segment ~{segment_us:.0f} us; "
              f"relative time of segments {', '.join(map(str, shown))}:")
        for label, row in medians.items():
            print(f"  {label:<30}" + " ".join(f"{row[s] / base[s]:5.2f}" for s in shown))


if __name__ == "__main__":
    main()
