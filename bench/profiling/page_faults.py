"""Minor page faults per call, beside the time per call, of back-to-back fused_rnn and
torch.nn module calls: a call that takes its buffers from pages the allocator has just
given back to the kernel pays a fault (and a page clearing) per 4 KB it touches.

    python bench/profiling/page_faults.py --cell lstm --shape 200,16,64 --mode fwdbwd

glibc keeps a freed block for reuse unless it leaves more than its trim threshold free at
the top of the heap, and that threshold moves with what the process has freed before, so
the same call can fault hundreds of times in one process and never in another: run it a
few times (bench/README.md item 38).

With --after-other, each timed call follows an untimed call of the other implementation
(the benchmark's interleaving: what one frees, the next may find given back), and the time
is the median call, not the fastest batch:

    python bench/profiling/page_faults.py --cell gru --shape 200,16,64 --mode forward --after-other

With --fault-cost, first what one fault costs on this machine: a fresh 64 MB buffer filled
once (every 4 KB page faulted in) against the same fill again (pages present), a few times.
"""
import argparse
import resource
import statistics
import time

import torch

from best_of import CLASSES


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def print_fault_cost(repeats: int = 5) -> None:
    """us per 4 KB page of the first fill of a fresh buffer, beyond a second fill of it."""
    floats = 16 << 20  # 64 MB: above glibc's mmap threshold, so every buffer is fresh pages
    costs = []
    for _ in range(repeats):
        buffer = torch.empty(floats)
        before, start = faults(), time.perf_counter()
        buffer.fill_(1.0)
        first, faulted = time.perf_counter() - start, faults() - before
        start = time.perf_counter()
        buffer.fill_(2.0)
        again = time.perf_counter() - start
        del buffer
        costs.append((first - again) / max(faulted, 1) * 1e6)
    print(f"a page fault: {statistics.median(costs):.2f} us (median of {repeats}; "
          f"{min(costs):.2f}-{max(costs):.2f})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=sorted(CLASSES), default="lstm")
    parser.add_argument("--shape", default="200,16,64", help="T,N,H (I = H)")
    parser.add_argument("--mode", choices=["forward", "fwdbwd"], default="fwdbwd")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=100, help="calls per timed batch")
    parser.add_argument("--batches", type=int, default=5, help="batches; the fastest counts for the time")
    parser.add_argument("--fault-cost", action="store_true", help="first time one page fault on this machine")
    parser.add_argument("--after-other", action="store_true",
                        help="time each call right after an untimed call of the other implementation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.fault_cost:
        print_fault_cost()
    T, N, H = map(int, args.shape.split(","))
    calls = {}
    for name, cls in zip(("fused_rnn", "torch.nn"), CLASSES[args.cell]):
        module = cls(H, H)
        x = torch.randn(T, N, H, requires_grad=True)
        grad = torch.randn(T, N, H)
        wrt = [x] + list(module.parameters())

        def call(module=module, x=x, grad=grad, wrt=wrt):
            if args.mode == "forward":
                with torch.no_grad():
                    module(x)
            else:
                torch.autograd.grad(module(x)[0], wrt, grad)

        calls[name] = call
    parts = []
    for name, call in calls.items():
        other = next(c for n, c in calls.items() if n != name)
        for _ in range(30):
            call()
            if args.after_other:
                other()
        if args.after_other:
            times, faulted = [], 0
            for _ in range(args.batches * args.calls):
                other()
                before, start = faults(), time.perf_counter()
                call()
                times.append(time.perf_counter() - start)
                faulted += faults() - before
            seconds = statistics.median(times)
        else:
            seconds, before = float("inf"), faults()
            for _ in range(args.batches):
                start = time.perf_counter()
                for _ in range(args.calls):
                    call()
                seconds = min(seconds, (time.perf_counter() - start) / args.calls)
            faulted = faults() - before
        per_call = faulted / (args.batches * args.calls)
        parts.append(f"{name} {seconds * 1e3:.3f} ms, {per_call:.1f} faults/call")
    print(f"{args.cell} ({args.shape}) {args.mode}: " + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
