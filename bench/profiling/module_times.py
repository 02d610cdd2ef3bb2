"""Best-of-batches times of fused_rnn modules, forward (no_grad) and forward+backward, on
one line per run: the measurement behind the A/B figures of bench/README.md "What we
learned" (run it under bench/profiling/ab_builds.sh to alternate two builds). Optionally
beside torch.nn, as the speedup torch.nn / fused_rnn. With --cells, the cell classes
(LSTMCell, GRUCell, RNNCell) on one step of (N, H) instead; T must be 1 then.

    python bench/profiling/module_times.py --cell lstm gru --shapes 100,64,256 50,16,256 --torch-nn
    python bench/profiling/module_times.py --cells --cell lstm --shapes 1,32,512 --torch-nn
"""
import argparse

import torch

from best_of import CELL_CLASSES, CLASSES, best_seconds
import fused_rnn.ops  # noqa: E402  (best_of puts the repository on sys.path)


def first_output(result):
    """The output sequence of a module, h of LSTMCell's (h, c), or the h a GRUCell/RNNCell returns."""
    return result[0] if isinstance(result, tuple) else result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", nargs="+", choices=sorted(CLASSES), default=["lstm"])
    parser.add_argument("--shapes", nargs="+", default=["100,64,256", "50,32,512", "100,1,128"],
                        help="T,N,H each (I = H)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", choices=["forward", "fwdbwd", "both"], default="both")
    parser.add_argument("--torch-nn", action="store_true", help="also time torch.nn: print its time / ours")
    parser.add_argument("--cells", action="store_true", help="time the cell classes on one step (T = 1)")
    parser.add_argument("--keep-workspace", action="store_true",
                        help="forward keeps the whole workspace as training does (the layout before "
                             "keep_workspace existed)")
    parser.add_argument("--calls", type=int, default=3, help="calls per timed batch")
    parser.add_argument("--batches", type=int, default=5, help="batches; the fastest counts")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--unit", choices=["ms", "us"], default="ms")
    args = parser.parse_args()
    timing = dict(calls=args.calls, batches=args.batches, warmup=args.warmup)
    scale, unit_format = (1e3, "{:.2f} ms") if args.unit == "ms" else (1e6, "{:.1f} us")
    torch.set_num_threads(args.threads)
    if args.keep_workspace:
        fused_rnn.ops._backward_may_follow = lambda *tensors: True
    results = []
    for cell in args.cell:
        fused_cls, nn_cls = (CELL_CLASSES if args.cells else CLASSES)[cell]
        for shape in args.shapes:
            T, N, H = map(int, shape.split(","))
            if args.cells and T != 1:
                parser.error(f"--cells times one step: T must be 1, got {shape}")
            reference = nn_cls(H, H)
            fused = fused_cls(H, H)
            fused.load_state_dict(reference.state_dict())
            x = torch.randn(*([N, H] if args.cells else [T, N, H]), requires_grad=True)
            grad = torch.randn(x.shape)
            modules = {"fused": fused, "nn": reference} if args.torch_nn else {"fused": fused}
            times = {}
            for name, module in modules.items():
                params = [x] + list(module.parameters())
                if args.mode in ("forward", "both"):
                    with torch.no_grad():
                        times[name, "fwd"] = best_seconds(lambda m=module: m(x), **timing)
                if args.mode in ("fwdbwd", "both"):
                    times[name, "fwdbwd"] = best_seconds(
                        lambda m=module, p=params: torch.autograd.grad(first_output(m(x)), p, grad), **timing)
            parts = []
            for (name, mode), seconds in times.items():
                if name == "fused":
                    ratio = f" x{times['nn', mode] / seconds:.3f}" if args.torch_nn else ""
                    parts.append(f"{mode} {unit_format.format(seconds * scale)}{ratio}")
            label = f"{cell}{'_cell' if args.cells else ''} ({T},{N},{H})"
            results.append(f"{label} " + " ".join(parts))
    print("  |  ".join(results), flush=True)


if __name__ == "__main__":
    main()
