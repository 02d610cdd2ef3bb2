"""Performance targets and their PASS / MISS check against measured rows. Every target gets
a line: one that was not measured in the run shows NOT RUN, never disappears."""
import json
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence


@dataclass(frozen=True)
class Target:
    cell: str
    T: int
    N: int
    I: int  # noqa: E741
    H: int
    mode: str                 # forward | fwdbwd
    minimum: float
    metric: str = "speedup"   # speedup (torch.nn ms / fused ms) | peak_fraction (fused GFLOP/s / peak GEMM)
    packed: bool = False
    layers: int = 1
    bidirectional: bool = False
    dtype: str = "float32"
    device: str = "cpu"

    def label(self) -> str:
        what = (f"speedup >= {self.minimum:g}x" if self.metric == "speedup"
                else f">= {100 * self.minimum:.0f}% of peak GEMM")
        extra = " packed" if self.packed else ""
        return f"{self.cell}{extra} ({self.T},{self.N},{self.I},{self.H}) {self.mode}: {what}"


def _cpu_targets() -> List[Target]:
    minimums = {(100, 1, 128, 128): {"lstm": 1.5, "gru": 4.0, "rnn_tanh": 2.0},
                (200, 16, 64, 64): {"lstm": 1.5, "gru": 4.0, "rnn_tanh": 2.0},
                (100, 64, 256, 256): {"lstm": 1.0, "gru": 1.0, "rnn_tanh": 1.0},
                (50, 32, 512, 512): {"lstm": 1.0, "gru": 1.0, "rnn_tanh": 1.0}}
    targets = [Target(cell, *size, mode=mode, minimum=m)
               for size, per_cell in minimums.items() for cell, m in per_cell.items()
               for mode in ("forward", "fwdbwd")]
    targets += [Target("lstm", 100, 16, 128, 128, mode=mode, minimum=3.0, packed=True)
                for mode in ("forward", "fwdbwd")]
    targets.append(Target("lstm", 50, 32, 512, 512, mode="fwdbwd", minimum=0.75, metric="peak_fraction"))
    return targets


CPU_TARGETS = _cpu_targets()


def load(path: Optional[str]) -> List[Target]:
    """The built-in CPU targets, or a JSON list of objects with Target's fields."""
    if path in (None, "", "builtin", "cpu"):
        return list(CPU_TARGETS)
    with open(path) as f:
        return [Target(**entry) for entry in json.load(f)]


def _matches(target: Target, row: dict) -> bool:
    c = row["config"]
    return (row["device"] == target.device and row["dtype"] == target.dtype and row["mode"] == target.mode
            and (c["cell"], c["T"], c["N"], c["I"], c["H"]) == (target.cell, target.T, target.N, target.I, target.H)
            and c["packed"] == target.packed and c["layers"] == target.layers
            and c["bidirectional"] == target.bidirectional)


def check(targets: Sequence[Target], rows: Sequence[dict]) -> List[dict]:
    """One result per target: the measured value and PASS, MISS or NOT RUN."""
    results = []
    for target in targets:
        row = next((r for r in rows if _matches(target, r)), None)
        value = None if row is None else row.get("speedup_nn" if target.metric == "speedup" else "peak_fraction")
        if row is None:
            status = "NOT RUN"
        elif value is None:
            status = "MISS"  # measured, but the fused or torch.nn run failed
        else:
            status = "PASS" if value >= target.minimum else "MISS"
        results.append({"target": asdict(target), "label": target.label(), "value": value, "status": status})
    return results


def shown_value(value: Optional[float], minimum: float, metric: str) -> str:
    """A measured value as the targets table prints it: 2 decimals (a percentage for
    peak_fraction), more where those would print the minimum itself, so that a 1.498x miss
    of a 1.5x target does not read "1.50x | MISS"."""
    if value is None:
        return "-"
    scale, unit, digits = (100, "%", 0) if metric == "peak_fraction" else (1, "x", 2)
    while f"{scale * value:.{digits}f}" == f"{scale * minimum:.{digits}f}" and value != minimum and digits < 6:
        digits += 1
    return f"{scale * value:.{digits}f}{unit}"


def format_table(results: Sequence[dict]) -> str:
    lines = ["| target | measured | status |", "|---|---:|---|"]
    for r in results:
        shown = shown_value(r["value"], r["target"]["minimum"], r["target"]["metric"])
        lines.append(f"| {r['label']} | {shown} | {r['status']} |")
    passed = sum(r["status"] == "PASS" for r in results)
    missed = sum(r["status"] == "MISS" for r in results)
    lines.append("")
    lines.append(f"{passed} PASS, {missed} MISS, {len(results) - passed - missed} NOT RUN of {len(results)} targets")
    return "\n".join(lines)
