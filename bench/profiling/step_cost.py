"""Fixed and per-step cost of one fused_rnn module call: the best of several batches of
back-to-back calls at T = 1, 100 and 200 time steps (forward under no_grad, or with
--fwdbwd forward+backward), optionally beside torch.nn. A profiling aid for the numbers in
bench/README.md "What we learned", not the benchmark (bench/throughput.py is).

    python bench/profiling/step_cost.py --cell gru -N 16 -I 64 -H 64 --threads 2
"""
import argparse

import torch

from best_of import CLASSES, best_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=sorted(CLASSES), default="gru")
    parser.add_argument("-N", type=int, default=16)
    parser.add_argument("-I", type=int, default=64)
    parser.add_argument("-H", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--fwdbwd", action="store_true")
    parser.add_argument("--torch-nn", action="store_true", help="also time torch.nn")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 100, 200],
                        help="sequence lengths T; the last line gives the cost per step between the first and last")
    parser.add_argument("--calls", type=int, default=20, help="calls per timed batch")
    parser.add_argument("--batches", type=int, default=7, help="batches; the fastest counts")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first")
    args = parser.parse_args()
    timing = dict(calls=args.calls, batches=args.batches, warmup=args.warmup)
    torch.set_num_threads(args.threads)
    fused_cls, nn_cls = CLASSES[args.cell]
    reference = nn_cls(args.I, args.H)
    modules = {"fused_rnn": fused_cls(args.I, args.H)}
    modules["fused_rnn"].load_state_dict(reference.state_dict())
    if args.torch_nn:
        modules["torch.nn"] = reference
    first_last = {}
    for steps in args.steps:
        x = torch.randn(steps, args.N, args.I, requires_grad=args.fwdbwd)
        for name, module in modules.items():
            if args.fwdbwd:
                params = [x] + list(module.parameters())
                call = lambda m=module, p=params: torch.autograd.grad(m(x)[0].sum(), p)  # noqa: E731
                seconds = best_seconds(call, **timing)
            else:
                with torch.no_grad():
                    seconds = best_seconds(lambda m=module: m(x), **timing)
            print(f"{args.cell} T={steps} N={args.N} I={args.I} H={args.H} threads={args.threads} "
                  f"{'fwd+bwd' if args.fwdbwd else 'fwd'} {name}: {seconds * 1e6:.1f} us", flush=True)
            first_last.setdefault(name, []).append(seconds)
    t0, t1 = args.steps[0], args.steps[-1]
    for name, seconds in first_last.items():
        if t1 > t0:
            print(f"{name}: {(seconds[-1] - seconds[0]) / (t1 - t0) * 1e6:.3f} us per step (T = {t0} to {t1})")


if __name__ == "__main__":
    main()
