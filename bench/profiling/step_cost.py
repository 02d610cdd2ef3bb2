"""Fixed and per-step cost of one fused_rnn module call: the best of several batches of
back-to-back calls at T = 1, 100 and 200 time steps (forward under no_grad, or with
--fwdbwd forward+backward), optionally beside torch.nn. A profiling aid for the numbers in
bench/README.md "What we learned", not the benchmark (bench/throughput.py is).

    python bench/profiling/step_cost.py --cell gru -N 16 -I 64 -H 64 --threads 2
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import fused_rnn  # noqa: E402

CLASSES = {"lstm": (fused_rnn.LSTM, torch.nn.LSTM), "gru": (fused_rnn.GRU, torch.nn.GRU),
           "rnn_tanh": (fused_rnn.RNN, torch.nn.RNN)}


def best_call_seconds(call, batches=7, calls=20):
    for _ in range(calls):
        call()
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=sorted(CLASSES), default="gru")
    parser.add_argument("-N", type=int, default=16)
    parser.add_argument("-I", type=int, default=64)
    parser.add_argument("-H", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--fwdbwd", action="store_true")
    parser.add_argument("--torch-nn", action="store_true", help="also time torch.nn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fused_cls, nn_cls = CLASSES[args.cell]
    reference = nn_cls(args.I, args.H)
    modules = {"fused_rnn": fused_cls(args.I, args.H)}
    modules["fused_rnn"].load_state_dict(reference.state_dict())
    if args.torch_nn:
        modules["torch.nn"] = reference
    for steps in (1, 100, 200):
        x = torch.randn(steps, args.N, args.I, requires_grad=args.fwdbwd)
        for name, module in modules.items():
            if args.fwdbwd:
                params = [x] + list(module.parameters())
                call = lambda m=module, p=params: torch.autograd.grad(m(x)[0].sum(), p)  # noqa: E731
                seconds = best_call_seconds(call)
            else:
                with torch.no_grad():
                    seconds = best_call_seconds(lambda m=module: m(x))
            print(f"{args.cell} T={steps} N={args.N} I={args.I} H={args.H} threads={args.threads} "
                  f"{'fwd+bwd' if args.fwdbwd else 'fwd'} {name}: {seconds * 1e6:.1f} us", flush=True)


if __name__ == "__main__":
    main()
