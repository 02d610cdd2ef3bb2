"""Each implementation's median time split by what ran just before it, per row of a
results.json: the measurement behind bench/README.md "What we learned" 28. Rows record the
order their calls ran in (call_order); for runs from before that field, the order is
rebuilt from the rotation the benchmark used then (round r: the implementations rotated
left by r % their count).

    python bench/profiling/predecessors.py bench/results/cpu-2026-11-27-run13/results.json --match "lstm T=100 N=1 "
"""
import argparse
import json
import statistics
from collections import defaultdict
from typing import Dict, List, Tuple

IMPLS = ("fused", "torch_nn", "cell_loop")


def rotation_order(row: dict) -> List[str]:
    """The call order of a run made before call_order was recorded."""
    names = [n for n in IMPLS if row["impls"].get(n, {}).get("samples")]
    order = []
    for r in range(row["repeats"]):
        shift = r % len(names)
        order += [n for n in names[shift:] + names[:shift] if r % row["impls"][n]["every"] == 0]
    return order


def split_by_predecessor(row: dict) -> Dict[Tuple[str, str], List[float]]:
    order = row.get("call_order") or rotation_order(row)
    seen = defaultdict(int)
    split = defaultdict(list)
    previous = None
    for name in order:
        sample = row["impls"][name]["times_ms"][seen[name]]
        seen[name] += 1
        if previous is not None:
            split[name, previous].append(sample)
        previous = name
    return split


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a results.json of bench/throughput.py")
    parser.add_argument("--match", default="", help="only rows whose label contains this")
    args = parser.parse_args()
    with open(args.results) as f:
        rows = json.load(f)["rows"]
    for row in rows:
        if args.match not in row["label"] or not row.get("repeats"):
            continue
        split = split_by_predecessor(row)
        parts = []
        for name in ("fused", "torch_nn"):
            cells = [f"after {before} {statistics.median(times):.3f} ms ({len(times)})"
                     for (who, before), times in sorted(split.items()) if who == name]
            parts.append(f"{name}: " + ", ".join(cells))
        print(f"{row['label']} {row['mode']}: " + " | ".join(parts))


if __name__ == "__main__":
    main()
