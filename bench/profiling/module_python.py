"""Where the Python of fused_rnn module calls goes around their layer ops: each helper of
the module (fused_rnn/modules.py, fused_rnn/ops.py) timed by a wrapper, summed over
back-to-back no_grad calls, per call, beside the layer ops and the whole call; "module
body" is the rest of forward (its own lines and the tensor methods it calls). A layer op
that moves megabytes leaves the interpreter's code and data cold, so the same Python costs
more after a long call than after a short one: give a short shape and a long one.

    python bench/profiling/module_python.py --cell lstm --shapes 1,16,64 200,16,64 400,16,64

The wrappers add about a microsecond a helper to the whole call (not to the helpers' own
figures).
"""
import argparse
import collections
import time

import torch

from best_of import CLASSES
from fused_rnn import modules, ops

# (owner, attribute): the helpers timed, besides the layer ops and forward itself.
HELPERS = [(ops, "cast"), (ops, "kernel_dtype"), (ops, "uniform_batch_sizes"),
           (modules._FusedRNNBase, "_zero_states"), (modules._FusedRNNBase, "check_input"),
           (modules._FusedRNNBase, "_weights_of"), (modules._FusedRNNBase, "_split_weights")]
LAYER_OPS = [(ops, "lstm_layer"), (ops, "gru_layer"), (ops, "rnn_layer")]


def install_timers(spent: collections.Counter) -> None:
    """Wraps every helper, layer op and the modules' forward so that each adds its seconds
    to spent[label]."""
    def wrap(owner, name, label):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start
        setattr(owner, name, timed)

    for owner, name in HELPERS:
        wrap(owner, name, name)
    for owner, name in LAYER_OPS:
        wrap(owner, name, "layer ops")
    wrap(modules._FusedRNNBase, "forward", "forward")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=sorted(CLASSES), default="lstm")
    parser.add_argument("--shapes", nargs="+", default=["1,16,64", "200,16,64"], help="T,N,H each (I = H)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spent = collections.Counter()
    install_timers(spent)
    for shape in args.shapes:
        T, N, H = map(int, shape.split(","))
        module = CLASSES[args.cell][0](H, H)
        x = torch.randn(T, N, H)
        with torch.no_grad():
            for _ in range(args.warmup):
                module(x)
            spent.clear()
            start = time.perf_counter()
            for _ in range(args.calls):
                module(x)
            wall = time.perf_counter() - start
        per_call = {label: seconds / args.calls * 1e6 for label, seconds in spent.items()}
        helpers = sum(per_call.get(name, 0.0) for _, name in HELPERS)
        body = per_call["forward"] - per_call["layer ops"] - helpers
        parts = [f"layer ops {per_call['layer ops']:.0f}", f"module body {body:.1f}"]
        parts += [f"{name} {per_call.get(name, 0.0):.1f}" for _, name in HELPERS]
        parts.append(f"outside forward {wall / args.calls * 1e6 - per_call['forward']:.1f}")
        print(f"{args.cell} ({shape}) forward, us per call: total {wall / args.calls * 1e6:.0f} | "
              + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
