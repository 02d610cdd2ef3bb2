"""Why one call timed alone is slower than the same call back to back: the median time of
a fused_rnn (and a torch.nn) call right after each of several things the benchmark's
interleaving puts before it: the same call (back to back), the other implementation, an
idle pause (the second core goes idle, as during the single-threaded cell loop), the same
pause followed by a small parallel op (the OpenMP worker woken again before the call), and
a 32 MB pass over memory (the caches lose the call's buffers).

With --busy, also after 10 ms in which the calling thread stays busy: running Python alone
(no floating-point vector work), running small products (torch.mm of 64 x 64 matrices, FMA
work, one thread), and the products followed by 1 ms or 3 ms of Python:

    python bench/profiling/cold_call.py --cell gru --shape 200,16,64 --mode forward --busy

    python bench/profiling/cold_call.py --cell lstm --shape 200,16,64 --mode fwdbwd

With --fixed-cost, also a fused_rnn forward of one time step (the call's fixed cost) split
into its Python module (the op answering with a canned result) and its op alone (the C++
call, without the module around it), each timed back to back, after the torch.nn call of
the shape, and after a 32 MB pass; and the cost of waking the OpenMP worker after 2 ms of
idle (a small parallel op timed back to back and after the pause):

    python bench/profiling/cold_call.py --cell lstm --shape 200,16,64 --mode forward --fixed-cost

With --around-ops, also the time a fused call spends outside its ops (module, autograd,
freeing its tensors), back to back; for a forward, also against the same call with ops
that answer at once. The backward ops run inside the forward ops' autograd node (C++,
csrc/autograd.cpp), so they are timed as that node's run, between hooks on it.
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
import fused_rnn.ops as ops  # noqa: E402
from busy_contexts import python_for, small_products_for  # noqa: E402

OP_KIND = {"lstm": "lstm", "gru": "gru", "rnn_tanh": "rnn"}


def medians_after(befores, call, repeats: int) -> dict:
    """Median ms of `call` timed right after each of `befores` (label -> callable, or None:
    right after itself). The contexts take turns, one call each per round, so that a slow
    drift of the machine (this VM's runs differ by 10-30% minutes apart) hits them alike."""
    times = {label: [] for label in befores}
    for _ in range(repeats):
        for label, before in befores.items():
            if before is not None:
                before()
            else:
                call()  # "back to back": right after a call of its own, not the last context's
            start = time.perf_counter()
            call()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(t) * 1e3 for label, t in times.items()}


def format_medians(befores, call, repeats: int, scale: float = 1.0, digits: int = 3) -> str:
    medians = medians_after(befores, call, repeats)
    return " | ".join(f"{label} {ms * scale:.{digits}f}" for label, ms in medians.items())


class _OpsProxy:
    """Stands in for fused_rnn.ops._ops (the module looks its ops up there on every call):
    times each op call into `spent`, and the backward of a recorded one (its autograd node's
    run, between a pre-hook and a hook on the node); keeps each op's latest arguments; or
    answers with the op's first result at once ("canned", for calls under no_grad only)."""

    def __init__(self, real):
        self.real, self.canned, self.args, self.spent, self.answer_canned = real, {}, {}, 0.0, False

    def __getattr__(self, name):
        op = getattr(self.real, name)

        def run(*args):
            self.args[name] = args
            if self.answer_canned and name in self.canned:
                return self.canned[name]
            start = time.perf_counter()
            result = op(*args)
            self.spent += time.perf_counter() - start
            node = result[0].grad_fn
            if node is None:
                self.canned.setdefault(name, result)
            else:
                node.register_prehook(self._backward_starts)
                node.register_hook(self._backward_ends)
            return result
        return run

    def _backward_starts(self, _grad_outputs):
        self.backward_start = time.perf_counter()

    def _backward_ends(self, _grad_inputs, _grad_outputs):
        self.spent += time.perf_counter() - self.backward_start


def print_fixed_cost_split(cell: str, module, step_input, befores, repeats: int) -> None:
    """Median us of a one-step fused_rnn forward under no_grad, whole and split into the
    module's Python and the op, after each of `befores` (None: back to back)."""
    kind = OP_KIND[cell]
    proxy = _OpsProxy(ops._ops)

    def forward():
        with torch.no_grad():
            module(step_input)

    def op_only():
        with torch.no_grad():
            getattr(proxy.real, f"{kind}_forward")(*proxy.args[f"{kind}_forward"])

    ops._ops = proxy
    try:
        forward()  # the op's arguments and the canned result
        for label, canned, call in (("module + op", False, forward), ("module only", True, forward),
                                    ("op only", False, op_only)):
            proxy.answer_canned = canned
            for _ in range(20):
                call()
            print(f"{cell} T=1 forward, {label}, us: " + format_medians(befores, call, repeats, 1e3, 1))
    finally:
        ops._ops = proxy.real


def print_time_around_ops(call, repeats: int, forward_only: bool) -> None:
    """Median us of `call` back to back, split into fused_rnn's ops and everything around
    them (module, autograd, freeing); for a forward (forward_only), then the same call with
    every op answering a canned result at once: the same Python work, without the ops'
    data in the caches."""
    proxy = _OpsProxy(ops._ops)
    ops._ops = proxy
    try:
        totals, outside = [], []
        for _ in range(repeats):
            proxy.spent = 0.0
            start = time.perf_counter()
            call()
            totals.append(time.perf_counter() - start)
            outside.append(totals[-1] - proxy.spent)
        canned = "n/a (a recorded call's backward cannot be canned)"
        if forward_only:
            proxy.answer_canned = True
            canned = f"{medians_after({'canned': None}, call, repeats)['canned'] * 1e3:.0f}"
    finally:
        ops._ops = proxy.real
    print(f"around the ops, us: call {statistics.median(totals) * 1e6:.0f} | outside the ops "
          f"{statistics.median(outside) * 1e6:.0f} | the call with canned ops {canned}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=["lstm", "gru", "rnn_tanh"], default="lstm")
    parser.add_argument("--shape", default="200,16,64", help="T,N,H (I = H)")
    parser.add_argument("--mode", choices=["forward", "fwdbwd"], default="fwdbwd")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--busy", action="store_true",
                        help="also time the calls after 10 ms of Python, or of small products, on the calling thread")
    parser.add_argument("--fixed-cost", action="store_true",
                        help="also split a one-step forward into the module's Python and the op")
    parser.add_argument("--around-ops", action="store_true",
                        help="also time what runs around the ops of a fused call (module, autograd)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    T, N, H = map(int, args.shape.split(","))
    cfg = Config(cell=args.cell, T=T, N=N, I=H, H=H, dtype="float32")
    modules = impls.build_modules(cfg, torch.float32, torch.device("cpu"), seed=0)
    inputs = impls.make_inputs(cfg, torch.float32, torch.device("cpu"), seed=0)
    runner = impls.forward_runner if args.mode == "forward" else impls.fwdbwd_runner
    fused, nn = runner(modules["fused"], inputs), runner(modules["torch_nn"], inputs)
    memory = torch.empty(8 << 20)  # 32 MB: the L3 cache of this machine
    wake = torch.empty(1 << 17)  # 512 KB: split over the threads by ATen, done in ~10 us
    square = torch.randn(64, 64)
    for _ in range(5):
        fused(), nn()
    gc.disable()
    for name, call, other in (("fused_rnn", fused, nn), ("torch.nn", nn, fused)):
        befores = {
            "back to back": None,
            "after the other": other,
            "after 2 ms idle": lambda: time.sleep(0.002),
            # The same idle, then a small parallel op that wakes the OpenMP worker again:
            # what is left of the idle penalty is not the worker's wake-up.
            "after 2 ms idle + wake": lambda: (time.sleep(0.002), wake.add_(1.0)),
            "after a 32 MB pass": lambda: memory.add_(1.0),
        }
        if args.busy:
            befores.update({
                "after 10 ms of Python": lambda: python_for(10),
                "after 10 ms of products": lambda: small_products_for(10, square),
                "after products + 1 ms of Python": lambda: (small_products_for(10, square), python_for(1)),
                "after products + 3 ms of Python": lambda: (small_products_for(10, square), python_for(3)),
            })
        print(f"{args.cell} {args.shape} {args.mode} {name} ms: " + format_medians(befores, call, args.repeats))
    if args.fixed_cost:
        befores = {"back to back": None, f"after torch.nn's {args.mode}": nn,
                   "after a 32 MB pass": lambda: memory.add_(1.0)}
        print_fixed_cost_split(args.cell, modules["fused"], torch.randn(1, N, H), befores, args.repeats)
        idle = {"back to back": None, "after 2 ms idle": lambda: time.sleep(0.002)}
        wake_up = format_medians(idle, lambda: wake.add_(1.0), args.repeats, 1e3, 1)
        print("a parallel 512 KB add_ (the OpenMP worker's wake-up), us: " + wake_up)
    if args.around_ops:
        print_time_around_ops(fused, args.repeats, forward_only=args.mode == "forward")


if __name__ == "__main__":
    main()
