#!/usr/bin/env python
"""End-to-end workload: a character-level language model (embedding -> 2-layer LSTM ->
linear) trained on Python standard-library source, once with torch.nn.LSTM and once with
fused_rnn.LSTM, from the same initial weights on the same batches.

The two runs advance in lockstep (one step of each per batch, in alternating order) so that
machine noise reaches both alike. Reports both loss curves, their largest difference
(float32: within --tolerance, 1e-4 by default, or the exit status is 1) and ms per training
step (forward, loss, backward, Adam step). Writes char_lm.json and, with matplotlib,
char_lm.png to --out.

  python bench/char_lm.py                 # about 1-2 minutes on a 2-core CPU
  python bench/char_lm.py --steps 20 --hidden 64 --seq-len 32   # seconds
"""
import argparse
import datetime
import glob
import json
import os
import shlex
import socket
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(_HERE)
for _path in (REPO, _HERE):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fused_rnn  # noqa: E402


def stdlib_text(chars: int) -> str:
    """The first `chars` characters of the standard library's top-level .py files, in sorted
    order: text that ships with every Python, the same on every machine of one version."""
    parts, total = [], 0
    for path in sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            parts.append(f.read())
        total += len(parts[-1])
        if total >= chars:
            break
    return "".join(parts)[:chars]


def encode(text: str) -> Tuple[torch.Tensor, List[str]]:
    vocab = sorted(set(text))
    index = {ch: i for i, ch in enumerate(vocab)}
    return torch.tensor([index[ch] for ch in text], dtype=torch.long), vocab


def make_batches(data: torch.Tensor, steps: int, batch: int, seq_len: int, seed: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """(input, target) pairs of random windows, drawn once so both runs see the same ones."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(steps):
        starts = torch.randint(0, data.numel() - seq_len - 1, (batch,), generator=gen)
        windows = torch.stack([data[s:s + seq_len + 1] for s in starts.tolist()])
        batches.append((windows[:, :-1], windows[:, 1:]))
    return batches


class CharLM(nn.Module):
    def __init__(self, lstm_cls, vocab: int, embed: int, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = lstm_cls(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lstm(self.embed(x))[0])


def build_models(args, vocab: int, device: torch.device, dtype: torch.dtype) -> Dict[str, CharLM]:
    torch.manual_seed(args.seed)
    reference = CharLM(nn.LSTM, vocab, args.embed, args.hidden, args.layers).to(device=device, dtype=dtype)
    fused = CharLM(fused_rnn.LSTM, vocab, args.embed, args.hidden, args.layers).to(device=device, dtype=dtype)
    fused.load_state_dict(reference.state_dict(), strict=True)
    return {"torch_nn": reference, "fused": fused}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_step(model: CharLM, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               device: torch.device, clip: float) -> Tuple[float, float]:
    """(loss, seconds) of one step: forward, cross-entropy, backward, clipping, Adam."""
    sync(device)
    start = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    loss.backward()
    if clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    value = loss.item()  # also waits for the device
    sync(device)
    return value, time.perf_counter() - start


def train(args, models: Dict[str, CharLM], batches, device: torch.device) -> Dict[str, dict]:
    optimizers = {n: torch.optim.Adam(m.parameters(), lr=args.lr) for n, m in models.items()}
    runs = {n: {"loss": [], "step_s": []} for n in models}
    names = list(models)
    for step, (x, y) in enumerate(batches):
        x, y = x.to(device), y.to(device)
        for name in (names if step % 2 == 0 else names[::-1]):
            loss, seconds = train_step(models[name], optimizers[name], x, y, device, args.clip)
            runs[name]["loss"].append(loss)
            runs[name]["step_s"].append(seconds)
        if (step + 1) % args.print_every == 0 or step + 1 == len(batches):
            r, f = runs["torch_nn"], runs["fused"]
            print(f"step {step + 1:4d}/{len(batches)}  loss torch.nn {r['loss'][-1]:.5f}  fused {f['loss'][-1]:.5f}  "
                  f"|diff| {abs(r['loss'][-1] - f['loss'][-1]):.2e}  ms/step torch.nn {1e3 * r['step_s'][-1]:.1f}  "
                  f"fused {1e3 * f['step_s'][-1]:.1f}", flush=True)
    return runs


def summarize(runs: Dict[str, dict], models: Dict[str, CharLM], warmup: int, tokens_per_step: int) -> dict:
    out = {}
    for name, run in runs.items():
        timed = run["step_s"][warmup:] or run["step_s"]
        median = statistics.median(timed)
        out[name] = {"loss": run["loss"], "step_ms": [1e3 * s for s in run["step_s"]],
                     "median_step_ms": 1e3 * median, "mean_step_ms": 1e3 * statistics.fmean(timed),
                     "tokens_per_s": tokens_per_step / median}
    diffs = [abs(a - b) for a, b in zip(runs["torch_nn"]["loss"], runs["fused"]["loss"])]
    params = dict(models["torch_nn"].named_parameters())
    param_diff = max(float((p - params[n]).detach().abs().max()) for n, p in models["fused"].named_parameters())
    out["max_abs_loss_diff"] = max(diffs)
    out["loss_diff"] = diffs
    out["max_abs_final_param_diff"] = param_diff
    out["speedup"] = out["torch_nn"]["median_step_ms"] / out["fused"]["median_step_ms"]
    return out


def plot(path: str, result: dict) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not importable; char_lm.png skipped", flush=True)
        return False
    fig, (ax, ax_diff) = plt.subplots(1, 2, figsize=(11, 4))
    for name, label in (("torch_nn", "torch.nn.LSTM"), ("fused", "fused_rnn.LSTM")):
        ax.plot(result[name]["loss"], label=f"{label} ({result[name]['median_step_ms']:.1f} ms/step)",
                linestyle="-" if name == "torch_nn" else "--")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (cross-entropy)")
    ax.set_title("char-level LSTM LM on stdlib source")
    ax.legend()
    ax_diff.semilogy([max(d, 1e-12) for d in result["loss_diff"]])
    ax_diff.set_xlabel("step")
    ax_diff.set_ylabel("|loss torch.nn - loss fused|")
    ax_diff.set_title(f"max {result['max_abs_loss_diff']:.2e}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=100, help="training steps (batches)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64, help="characters per training window")
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping (0: off)")
    p.add_argument("--corpus-chars", type=int, default=2_000_000)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else (os.cpu_count() or 1))
    p.add_argument("--warmup-steps", type=int, default=5, help="first steps left out of the ms/step figures")
    p.add_argument("--tolerance", type=float, help="largest allowed |loss difference| "
                   "(default 1e-4 in float32, 1e-9 in float64)")
    p.add_argument("--print-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default bench/results/latest-<device>)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)
    tolerance = args.tolerance if args.tolerance is not None else (1e-4 if args.dtype == "float32" else 1e-9)

    data, vocab = encode(stdlib_text(args.corpus_chars))
    batches = make_batches(data, args.steps, args.batch, args.seq_len, args.seed)
    models = build_models(args, len(vocab), device, dtype)
    print(f"char LM: {data.numel()} characters of stdlib source, vocabulary {len(vocab)}; embed {args.embed}, "
          f"{args.layers}-layer LSTM H={args.hidden}, batch {args.batch} x {args.seq_len} chars, {args.steps} steps, "
          f"Adam lr {args.lr}, {args.dtype} on {device.type}, threads {torch.get_num_threads()}", flush=True)

    started = time.time()
    runs = train(args, models, batches, device)
    result = summarize(runs, models, args.warmup_steps, args.batch * args.seq_len)
    ok = result["max_abs_loss_diff"] <= tolerance
    print(f"\nms/step (median after {args.warmup_steps} warm-up steps): torch.nn {result['torch_nn']['median_step_ms']:.1f}, "
          f"fused_rnn {result['fused']['median_step_ms']:.1f}  -> speedup {result['speedup']:.2f}x")
    print(f"final loss: torch.nn {result['torch_nn']['loss'][-1]:.5f}, fused_rnn {result['fused']['loss'][-1]:.5f}")
    print(f"max |loss difference| over the run: {result['max_abs_loss_diff']:.2e} "
          f"({'within' if ok else 'ABOVE'} tolerance {tolerance:g}); "
          f"max |final parameter difference|: {result['max_abs_final_param_diff']:.2e}")

    out_dir = args.out or os.path.join(REPO, "bench", "results", f"latest-{device.type}")
    os.makedirs(out_dir, exist_ok=True)
    meta = {"command": shlex.join(["python", "bench/char_lm.py", *argv]),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "hostname": socket.gethostname(), "torch_version": torch.__version__,
            "fused_rnn_version": fused_rnn.__version__, "threads": torch.get_num_threads(),
            "device": device.type, "gpu_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "elapsed_s": time.time() - started, "settings": vars(args), "vocab_size": len(vocab),
            "corpus_chars": data.numel(), "tolerance": tolerance, "within_tolerance": ok}
    with open(os.path.join(out_dir, "char_lm.json"), "w") as f:
        json.dump({"meta": meta, "result": result}, f, indent=1)
        f.write("\n")
    wrote = ["char_lm.json"] + (["char_lm.png"] if plot(os.path.join(out_dir, "char_lm.png"), result) else [])
    print(f"wrote {', '.join(wrote)} to {out_dir} ({meta['elapsed_s']:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
