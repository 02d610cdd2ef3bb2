#!/usr/bin/env python
"""Throughput of fused_rnn against torch.nn and a Python loop over torch.nn cells.

Examples (from the repository root):
  python bench/throughput.py                       # the default sweep of the device (make bench)
  python bench/throughput.py --sweep smoke         # seconds: checks that everything runs
  python bench/throughput.py --cell lstm gru -T 100 -N 16 -H 128 --mode fwdbwd
  python bench/throughput.py --sweep cuda --device cuda
  python bench/throughput.py --sweep targets --targets   # only the CPU target problems, PASS/MISS

See bench/README.md for the methodology.
"""
import argparse
import datetime
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

_HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(_HERE)
for _path in (REPO, _HERE):  # the in-place build of fused_rnn, and the sibling modules
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch  # noqa: E402

import fused_rnn  # noqa: E402
from fused_rnn.__main__ import cpuinfo_field  # noqa: E402
import configs  # noqa: E402
import impls  # noqa: E402
import report  # noqa: E402
import targets  # noqa: E402
import timing  # noqa: E402
from configs import Config  # noqa: E402


def say(*parts) -> None:
    print(*parts, flush=True)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time fused_rnn against torch.nn and a Python loop over torch.nn cells "
                    "(same weights, interleaved repeats, median and IQR).",
        epilog="Without --sweep and without size arguments the device's default sweep runs "
               "('default' on cpu, 'cuda' on cuda). Giving any of -T/-N/-I/-H/--layers/"
               "--bidirectional/--packed runs that one problem for each --cell instead.")
    p.add_argument("--sweep", choices=sorted(configs.SWEEPS),
                   help="a predefined list of problems: smoke (seconds, tiny sizes), default (the CPU "
                        "targets plus speedup vs batch and vs hidden size; `make bench` on cpu), targets "
                        "(the CPU targets only), cuda (GPU reference problem, latency, large batch)")
    p.add_argument("--cell", nargs="+", choices=configs.CELLS,
                   help="cells to run (single problem: default lstm gru rnn_tanh; sweep: filter)")
    p.add_argument("--group", nargs="+", metavar="GROUP",
                   help="keep only these row groups of the sweep (e.g. reference latency large on cuda, "
                        "target batch hidden on cpu)")
    p.add_argument("-T", "--seq-len", type=int, help="time steps (single problem; default 100)")
    p.add_argument("-N", "--batch", type=int, help="batch size (default 16)")
    p.add_argument("-I", "--input-size", type=int, help="input features (default: = hidden size)")
    p.add_argument("-H", "--hidden-size", type=int, help="hidden size (default 128)")
    p.add_argument("--layers", type=int, help="stacked layers (default 1)")
    p.add_argument("--bidirectional", action="store_true", default=None, help="two directions")
    p.add_argument("--packed", action="store_true", default=None,
                   help="PackedSequence input, lengths uniform in [1, T] (fixed seed)")
    p.add_argument("--dtype", choices=configs.DTYPES, default="float32",
                   help="dtype of problems that do not fix their own (default %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu",
                   help="default: cuda if available, else cpu (here: %(default)s)")
    p.add_argument("--mode", choices=("forward", "fwdbwd", "both"), default="both",
                   help="forward under torch.no_grad(), forward+backward, or both (default %(default)s)")
    p.add_argument("--threads", type=int, default=available_cores(), help="torch.set_num_threads (default: all cores available, here %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up calls per implementation (cell loop: 1) (default %(default)s)")
    p.add_argument("--budget", type=float, default=2.0,
                   help="seconds of timed calls aimed at per problem and mode; sets the repeats (default %(default)s)")
    p.add_argument("--min-repeats", type=int, default=5, help="fewest interleaved rounds (default %(default)s)")
    p.add_argument("--repeats", type=int, default=50, help="most interleaved rounds (default %(default)s)")
    p.add_argument("--cell-loop", choices=("auto", "always", "never"), default="auto",
                   help="auto: the cell loop joins every k-th round only, so that it takes about half "
                        "the budget (at least 3 samples), and is dropped when one call takes longer "
                        "than --cell-loop-max-s; always: every round; never: not run (default %(default)s)")
    p.add_argument("--cell-loop-max-s", type=float, default=2.0, help="(default %(default)s)")
    p.add_argument("--gemm-size", type=int, help="n of the n x n torch.mm for the peak (default 1024 cpu, 4096 cuda)")
    p.add_argument("--targets", nargs="?", const="builtin", metavar="FILE",
                   help="check targets: the built-in CPU table, or a JSON list of targets.Target fields "
                        "(on by default for --sweep default/targets on cpu)")
    p.add_argument("--no-targets", action="store_true", help="never check targets")
    p.add_argument("--out", help="output folder (default bench/results/latest-<device>)")
    p.add_argument("--seed", type=int, default=0, help="weights, inputs and packed lengths (default %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="list the problems and the time estimate, then stop")
    return p.parse_args(argv)


def select_configs(args: argparse.Namespace, device: torch.device):
    """(sweep name, configs with their dtype filled in)."""
    sizes = (args.seq_len, args.batch, args.input_size, args.hidden_size, args.layers,
             args.bidirectional, args.packed)
    if args.sweep is None and any(v is not None for v in sizes):
        hidden = args.hidden_size or 128
        chosen = configs.single(args.cell or configs.TARGET_CELLS, args.seq_len or 100, args.batch or 16,
                                args.input_size or hidden, hidden, args.layers or 1,
                                bool(args.bidirectional), bool(args.packed))
        return "single", configs.with_dtype(chosen, args.dtype)
    name = args.sweep or ("cuda" if device.type == "cuda" else "default")
    return name, configs.with_dtype(configs.sweep(name, args.cell, args.group), args.dtype)


def tf32_settings() -> dict:
    """Whether float32 GEMMs may run in TF32 (GPU): cuDNN allows it by default, cuBLAS
    matmuls do not, so float32 comparisons on a GPU depend on these."""
    settings = {}
    for name, backend in (("cudnn", torch.backends.cudnn), ("matmul", torch.backends.cuda.matmul)):
        try:
            settings[f"{name}_allow_tf32"] = bool(backend.allow_tf32)
            settings[f"{name}_fp32_precision"] = getattr(backend, "fp32_precision", None)
        except (AttributeError, RuntimeError):
            pass
    return settings


def load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def git_commit() -> str:
    """HEAD's short hash (-dirty with uncommitted changes to tracked files), or
    $FUSED_RNN_GIT_COMMIT where set: a copy of the tree whose .git lags behind it (the GPU
    machine's copy) is told the commit by whoever sent it."""
    if os.environ.get("FUSED_RNN_GIT_COMMIT"):
        return os.environ["FUSED_RNN_GIT_COMMIT"]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) if sha else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


def metadata(args, argv: Sequence[str], device: torch.device, sweep_name: str, gemm_size: int) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "command": shlex.join(["python", "bench/throughput.py", *argv]),
        "argv": list(argv),
        "sweep": sweep_name,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "gpu_name": gpu,
        "device": device.type,
        "device_name": gpu or f"{cpu_model()}, {torch.get_num_threads()} threads",
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "tf32": tf32_settings(),
        "python_version": platform.python_version(),
        "fused_rnn_version": fused_rnn.__version__,
        "git_commit": git_commit(),
        "threads": torch.get_num_threads(),
        "cores_available": available_cores(),
        "gemm_size": gemm_size,
        "peak_gflops": {},
        "peak_gflops_measurements": {},
        "failed_problems": [],
        "settings": {k: getattr(args, k) for k in ("mode", "warmup", "budget", "min_repeats", "repeats",
                                                   "cell_loop", "cell_loop_max_s", "seed", "dtype")},
    }


class Peaks:
    """Peak GEMM GFLOP/s per dtype: measured the first time a dtype is asked for and again at
    the end of the run (remeasure); the higher of the two counts, both are kept in `runs`."""

    def __init__(self, device: torch.device, size: int, timer: timing.Timer, store: Dict[str, Optional[float]],
                 runs: Dict[str, list]):
        self.device, self.size, self.timer, self.store, self.runs = device, size, timer, store, runs

    def _measure(self, dtype: str, when: str) -> Optional[float]:
        by_gemm = timing.peak_gemm_gflops(getattr(torch, dtype), self.device, self.size, self.timer)
        self.runs.setdefault(dtype, []).append(by_gemm)
        measured = [v for v in by_gemm.values() if v is not None]
        value = max(measured) if measured else None
        shown = ", ".join(f"{name} {'n/a' if v is None else f'{v:.1f}'}" for name, v in by_gemm.items())
        say(f"peak GEMM {dtype} ({self.size}x{self.size}, {self.device.type}, {when}): {shown} GFLOP/s")
        return value

    def __call__(self, dtype: str) -> Optional[float]:
        if dtype not in self.store:
            self.store[dtype] = self._measure(dtype, "start")
        return self.store[dtype]

    def remeasure(self) -> None:
        for dtype in list(self.store):
            if self.store[dtype] is not None:
                again = self._measure(dtype, "end")
                self.store[dtype] = max(self.store[dtype], again or 0.0)


def estimate_seconds(work: Sequence[Config], modes: Sequence[str], args, peaks: Peaks) -> float:
    """The cost model of configs.py run through the same repeat planning as the real run."""
    total = 0.0
    for cfg in work:
        for mode in modes:
            est = configs.estimate_call_seconds(cfg, mode, peaks.store.get(cfg.dtype) or peaks.store.get("float32"))
            loop = est["cell_loop"]
            if args.cell_loop == "never" or (args.cell_loop == "auto" and loop > args.cell_loop_max_s):
                est.pop("cell_loop")
            total += args.warmup * (est["fused"] + est["torch_nn"]) + loop * (args.cell_loop != "never")
            if mode == "forward":  # the output check
                total += est["fused"] + est["torch_nn"]
            repeats, every = plan_for(est, args)
            total += sum(math.ceil(repeats / every[n]) * t for n, t in est.items())
    return total


def plan_for(call_s: Dict[str, float], args):
    repeats, every = timing.plan_repeats(call_s, args.budget, args.min_repeats, args.repeats)
    if args.cell_loop == "always" and "cell_loop" in every:
        every["cell_loop"] = 1
    return repeats, every


def measure_mode(mode: str, modules, inputs, failed: Dict[str, str], args, timer) -> dict:
    """Warm-up, repeat planning and interleaved timing of one mode of one problem.
    Returns {impl: summary (+ error)}, the plan and the order the calls ran in."""
    make = impls.forward_runner if mode == "forward" else impls.fwdbwd_runner
    errors = dict(failed)
    runners, call_s = {}, {}
    for name, module in modules.items():
        if name in errors:
            continue
        fn = make(module, inputs)
        try:
            for _ in range(1 if name == "cell_loop" else max(1, args.warmup)):
                call_s[name] = timer(fn)
        except (RuntimeError, TypeError, NotImplementedError) as error:
            errors[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            continue
        runners[name] = fn
    if "cell_loop" in runners and args.cell_loop == "auto" and call_s["cell_loop"] > args.cell_loop_max_s:
        errors["cell_loop"] = f"skipped: one call took {call_s['cell_loop']:.1f} s > --cell-loop-max-s"
        del runners["cell_loop"], call_s["cell_loop"]
    repeats, every = plan_for(call_s, args) if runners else (0, {})
    times, order = timing.interleaved(runners, repeats, every, timer) if runners else ({}, [])
    stats = {}
    for name in impls.IMPLS:
        stats[name] = timing.summarize(times.get(name, []))
        stats[name]["every"] = every.get(name)
        if name in errors:
            stats[name]["error"] = errors[name]
    return {"impls": stats, "repeats": repeats, "call_order": order}


def make_row(cfg: Config, mode: str, device: torch.device, inputs, measured: dict, diffs: Dict[str, float],
             peak: Optional[float]) -> dict:
    stats = measured["impls"]

    def median(name):
        return stats[name].get("median_ms") if not stats[name].get("error") else None

    fused, nn_ms, loop = median("fused"), median("torch_nn"), median("cell_loop")
    flops = configs.mode_flops(cfg, inputs.tokens, mode)
    gflops = flops / (fused * 1e-3) / 1e9 if fused else None
    return {
        "label": cfg.label(), "config": cfg.as_dict(), "mode": mode, "device": device.type, "dtype": cfg.dtype,
        "tokens": inputs.tokens, "flops": flops, "repeats": measured["repeats"], "impls": stats,
        "call_order": measured["call_order"],
        "speedup_nn": nn_ms / fused if fused and nn_ms else None,
        "speedup_loop": loop / fused if fused and loop else None,
        "tokens_per_s": inputs.tokens / (fused * 1e-3) if fused else None,
        "gflops": gflops, "peak_gflops": peak,
        "peak_fraction": gflops / peak if gflops and peak else None,
        "max_abs_diff_vs_torch_nn": diffs,
    }


def measure_config(cfg: Config, modes: Sequence[str], device: torch.device, args, timer, peaks: Peaks) -> List[dict]:
    dtype = getattr(torch, cfg.dtype)
    modules = impls.build_modules(cfg, dtype, device, args.seed)
    if args.cell_loop == "never":
        del modules["cell_loop"]
    inputs = impls.make_inputs(cfg, dtype, device, args.seed)
    outputs, failed = impls.first_outputs(modules, inputs)
    if args.cell_loop == "never":
        failed["cell_loop"] = "skipped: --cell-loop never"
    diffs = impls.max_abs_diff(outputs)
    del outputs
    tolerance = {"float64": 1e-9, "float32": 1e-4}.get(cfg.dtype, 5e-2)
    for name, diff in diffs.items():
        if not diff <= tolerance * max(1.0, cfg.layers):
            say(f"  WARNING: {impls.DISPLAY[name]} output differs from torch.nn by {diff:.3g} on {cfg.label()}")
    rows = [make_row(cfg, mode, device, inputs, measure_mode(mode, modules, inputs, failed, args, timer),
                     diffs, peaks(cfg.dtype)) for mode in modes]
    del modules, inputs
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def progress(k: int, total: int, row: dict, started: float, remaining_est: float) -> str:
    parts = []
    for name in impls.IMPLS:
        s = row["impls"][name]
        if s.get("error"):
            shown = "skipped" if s["error"].startswith("skipped") else "error"
        else:
            shown = f"{s['median_ms']:.3g} ms" if s.get("samples") else "-"
        parts.append(f"{impls.DISPLAY[name]} {shown}")
    speed = "-" if row["speedup_nn"] is None else f"{row['speedup_nn']:.2f}x"
    return (f"[{k}/{total}] {row['label']} {row['mode']}: " + ", ".join(parts)
            + f"; speedup vs torch.nn {speed}  ({time.time() - started:.0f} s elapsed, ~{remaining_est:.0f} s left)")


def target_checks(args, sweep_name: str, device: torch.device, rows: Sequence[dict]):
    """(results, text) of the target check, or (None, None) when not asked for."""
    wanted = args.targets
    if wanted is None and not args.no_targets and device.type == "cpu" and sweep_name in ("default", "targets"):
        wanted = "builtin"
    if wanted is None or args.no_targets:
        return None, None
    results = targets.check(targets.load(wanted), rows)
    return results, targets.format_table(results)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        say("error: --device cuda but torch.cuda.is_available() is False")
        return 2
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    sweep_name, work = select_configs(args, device)
    modes = ["forward", "fwdbwd"] if args.mode == "both" else [args.mode]
    gemm_size = args.gemm_size or (4096 if device.type == "cuda" else 1024)
    meta = metadata(args, argv, device, sweep_name, gemm_size)
    timer = timing.Timer(device)
    peaks = Peaks(device, gemm_size, timer, meta["peak_gflops"], meta["peak_gflops_measurements"])

    say(f"fused_rnn {fused_rnn.__version__} (git {meta['git_commit']}), torch {torch.__version__}, "
        f"device {meta['device_name']}")
    say(f"threads: {torch.get_num_threads()} (torch.set_num_threads; {available_cores()} cores available)")
    meta["load_start"] = load_average()
    if device.type == "cpu" and meta["load_start"] is not None and meta["load_start"] > 0.5:
        say(f"WARNING: load average {meta['load_start']:.2f}: another process is using the CPU, "
            f"timings will be noisy (and OpenMP threads wait on each other)")
    for dtype in dict.fromkeys(c.dtype for c in work):
        peaks(dtype)
    estimate = estimate_seconds(work, modes, args, peaks)
    say(f"sweep '{sweep_name}': {len(work)} problems x {len(modes)} modes = {len(work) * len(modes)} rows; "
        f"estimated run time ~{estimate / 60:.1f} min ({estimate:.0f} s, rough)")
    if args.dry_run:
        for cfg in work:
            say("  " + cfg.label())
        return 0

    out_dir = report.ensure_dir(args.out or os.path.join(REPO, "bench", "results", f"latest-{device.type}"))
    started, rows, total = time.time(), [], len(work) * len(modes)
    try:
        for index, cfg in enumerate(work):
            try:
                new_rows = measure_config(cfg, modes, device, args, timer, peaks)
            except (RuntimeError, TypeError, ValueError) as error:  # e.g. out of memory building it
                reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                meta["failed_problems"].append({"label": cfg.label(), "config": cfg.as_dict(), "error": reason})
                say(f"[{cfg.label()}] could not be set up: {reason}")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            for row in new_rows:
                rows.append(row)
                done_frac = (index + 1) / len(work)
                left = (time.time() - started) * (1 - done_frac) / done_frac
                say(progress(len(rows), total, row, started, left))
    except KeyboardInterrupt:
        say(f"interrupted: writing the {len(rows)} rows measured so far")
    meta["elapsed_s"] = time.time() - started
    meta["load_end"] = load_average()
    peaks.remeasure()
    for row in rows:  # the fraction of the final peak (the higher of start and end)
        row["peak_gflops"] = peaks.store.get(row["dtype"])
        row["peak_fraction"] = row["gflops"] / row["peak_gflops"] if row["gflops"] and row["peak_gflops"] else None

    say("")
    say(report.format_table(rows))
    for line in report.errors(rows):
        say(f"  could not run: {line}")
    target_results, target_text = target_checks(args, sweep_name, device, rows)
    if target_text:
        say("")
        say("Targets:")
        say(target_text)
    report.write_json(os.path.join(out_dir, "results.json"), meta, rows, target_results)
    report.write_markdown(os.path.join(out_dir, "results.md"), meta, rows, target_text)
    wrote = ["results.json", "results.md"]
    if report.plot_speedup(os.path.join(out_dir, "speedup.png"), rows):
        wrote.append("speedup.png")
    say(f"\nwrote {', '.join(wrote)} to {out_dir} ({meta['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
