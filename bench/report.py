"""Presenting results: the console/markdown table, results.json, results.md and speedup.png."""
import json
import os
from typing import Dict, List, Optional, Sequence

from impls import DISPLAY, IMPLS
from timing import noisy


def _ms(stats: dict) -> str:
    if stats.get("error"):
        return "skipped" if stats["error"].startswith("skipped") else "error"
    if not stats.get("samples"):
        return "-"
    mark = "*" if noisy(stats) else ""
    return f"{stats['median_ms']:.3g} ±{stats['iqr_ms']:.2g}{mark}"


def _ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _count(value: Optional[float]) -> str:
    if value is None:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def table_header() -> str:
    impls = " | ".join(f"{DISPLAY[n]} ms" for n in IMPLS)
    return (f"| config | mode | {impls} | speedup vs torch.nn | speedup vs cell loop | "
            f"fused tokens/s | fused GFLOP/s | % of peak GEMM |\n"
            f"|---|---|{'---:|' * len(IMPLS)}---:|---:|---:|---:|---:|")


def table_row(row: dict) -> str:
    impls = " | ".join(_ms(row["impls"][n]) for n in IMPLS)
    gflops = "-" if row["gflops"] is None else f"{row['gflops']:.1f}"
    fraction = "-" if row["peak_fraction"] is None else f"{100 * row['peak_fraction']:.0f}%"
    return (f"| {row['label']} | {row['mode']} | {impls} | {_ratio(row['speedup_nn'])} | "
            f"{_ratio(row['speedup_loop'])} | {_count(row['tokens_per_s'])} | {gflops} | {fraction} |")


NOISE_NOTE = "\\* IQR above 25% of the median: the machine was busy or the timing is unstable."


def format_table(rows: Sequence[dict]) -> str:
    lines = [table_header()] + [table_row(r) for r in rows]
    if any(noisy(r["impls"][n]) for r in rows for n in IMPLS):
        lines += ["", NOISE_NOTE]
    return "\n".join(lines)


def errors(rows: Sequence[dict]) -> List[str]:
    """One line per implementation that could not run a problem, with the reason."""
    return [f"{r['label']} {r['mode']}: {DISPLAY[n]}: {r['impls'][n]['error']}"
            for r in rows for n in IMPLS if r["impls"][n].get("error")
            and not r["impls"][n]["error"].startswith("skipped: --cell-loop never")]


def write_json(path: str, meta: dict, rows: Sequence[dict], target_results: Optional[list]) -> None:
    with open(path, "w") as f:
        json.dump({"meta": meta, "rows": list(rows), "targets": target_results}, f, indent=1)
        f.write("\n")


def peak_gemm_names(meta: dict) -> List[str]:
    """The GEMMs timed for the peak (timing.PEAK_GEMMS), as the runs in results.json name them."""
    names: List[str] = []
    for runs in meta.get("peak_gflops_measurements", {}).values():
        for run in runs:
            names += [n for n in (run or {}) if n not in names]
    return names or ["torch.mm"]


def peak_text(meta: dict, dtype: str) -> str:
    """"float32: 480.1 GFLOP/s (fused_rnn.mm; torch.mm 215.3)": the peak, which GEMM gave it,
    and the best of each other GEMM over the start and end measurements."""
    peak = meta["peak_gflops"][dtype]
    if not peak:
        return f"{dtype}: n/a"
    best: Dict[str, float] = {}
    for run in meta.get("peak_gflops_measurements", {}).get(dtype, []):
        for name, value in (run or {}).items():
            if value is not None:
                best[name] = max(best.get(name, 0.0), value)
    if not best:
        return f"{dtype}: {peak:.1f} GFLOP/s"
    top = max(best, key=best.get)
    label = lambda name: name + float32_mode(meta, dtype, name)  # noqa: E731
    others = "; ".join(f"{label(name)} {value:.1f}" for name, value in best.items() if name != top)
    return f"{dtype}: {peak:.1f} GFLOP/s ({label(top)}{'; ' + others if others else ''})"


# Which TF32 flag each peak GEMM follows on a GPU: fused_rnn.mm the one torch.nn's cuDNN RNNs
# (and so the float32 rows) follow, torch.mm the matmul one.
_TF32_FLAG = {"fused_rnn.mm": "cudnn_allow_tf32", "torch.mm": "matmul_allow_tf32"}


def float32_mode(meta: dict, dtype: str, gemm: str) -> str:
    """" in TF32" where a float32 GEMM of a GPU run was allowed TF32, else ""."""
    if meta.get("device") != "cuda" or dtype != "float32":
        return ""
    return " in TF32" if meta.get("tf32", {}).get(_TF32_FLAG.get(gemm, ""), False) else " in float32"


def write_markdown(path: str, meta: dict, rows: Sequence[dict], target_text: Optional[str]) -> None:
    lines = [f"# fused_rnn throughput, {meta['device_name']}", "",
             f"- command: `{meta['command']}`",
             f"- date: {meta['date']}, host: {meta['hostname']}",
             f"- device: {meta['device_name']}; torch {meta['torch_version']}, fused_rnn "
             f"{meta['fused_rnn_version']} (git {meta['git_commit']}), threads: {meta['threads']}",
             f"- peak GEMM (square n={meta['gemm_size']}, the fastest of {', '.join(peak_gemm_names(meta))}): "
             + ", ".join(peak_text(meta, d) for d in meta["peak_gflops"]),
             f"- times: median ± IQR in ms of interleaved repeats; forward under torch.no_grad(), "
             f"fwdbwd = forward + backward of a random output gradient; speedup = other ms / fused ms; "
             f"GFLOP/s counts the GEMMs only (see bench/README.md)",
             f"- run time: {meta.get('elapsed_s', 0):.0f} s; load average (1 min) at start / end: "
             f"{meta.get('load_start', '?')} / {meta.get('load_end', '?')}", "",
             format_table(rows), ""]
    problems = errors(rows) + [f"{f['label']}: could not be set up: {f['error']}"
                               for f in meta.get("failed_problems", [])]
    if problems:
        lines += ["Implementations that could not run:", ""] + [f"- {p}" for p in problems] + [""]
    if target_text:
        lines += ["## Targets", "", target_text, ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def _series(rows: Sequence[dict], axis: str) -> Dict[str, List[tuple]]:
    """Lines of speedup against one size: rows that differ only in N (axis "N"), or only in
    H with I = H (axis "H"), at least two points each, labelled by what they hold fixed."""
    lines: Dict[str, List[tuple]] = {}
    for r in rows:
        c = r["config"]
        if r["speedup_nn"] is None or (axis == "H" and c["I"] != c["H"]):
            continue
        fixed = f"T={c['T']} " + (f"H={c['H']}" if axis == "N" else f"N={c['N']}")
        fixed += (f" L={c['layers']}" if c["layers"] > 1 else "") + (" bidir" if c["bidirectional"] else "")
        fixed += (" packed" if c["packed"] else "") + (f" {r['dtype']}" if r["dtype"] != "float32" else "")
        lines.setdefault(f"{c['cell']} {fixed}", []).append((c[axis], r["speedup_nn"]))
    return {k: sorted(v) for k, v in lines.items() if len({x for x, _ in v}) >= 2}


_CELL_COLOURS = {"lstm": "tab:blue", "gru": "tab:orange", "rnn_tanh": "tab:green", "rnn_relu": "tab:red"}


def plot_speedup(path: str, rows: Sequence[dict]) -> bool:
    """speedup (torch.nn ms / fused ms) vs batch size and vs hidden size, one line per cell
    and fixed sizes, one row of plots per mode; problems that form no line are left out.
    Returns False (with a printed note) when matplotlib is not importable."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not importable; speedup.png skipped", flush=True)
        return False
    modes = [m for m in ("forward", "fwdbwd") if any(r["mode"] == m for r in rows)]
    if not modes:
        return False
    fig, axes = plt.subplots(len(modes), 2, figsize=(13, 4.5 * len(modes)), squeeze=False)
    for i, mode in enumerate(modes):
        for j, (axis, title) in enumerate((("N", "batch size N"), ("H", "hidden size H (= I)"))):
            ax = axes[i][j]
            per_cell: Dict[str, int] = {}
            for label, pts in _series([r for r in rows if r["mode"] == mode], axis).items():
                cell = label.split()[0]  # colour by cell, marker and dash by the fixed sizes
                k = per_cell[cell] = per_cell.get(cell, -1) + 1
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=_CELL_COLOURS.get(cell, "black"),
                        marker="osD^v<>"[k % 7], linestyle=("-", "--", ":", "-.")[k % 4], label=label)
            ax.axhline(1.0, color="gray", linewidth=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xlabel(title)
            ax.set_ylabel("speedup vs torch.nn")
            ax.set_title(f"{mode}: fused_rnn speedup over torch.nn vs {title}")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
            else:
                ax.text(0.5, 0.5, "no sweep over this size", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path
