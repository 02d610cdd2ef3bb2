"""Measurement helpers: timing one call on CPU or CUDA, choosing repeat counts within a time
budget, interleaved repeats, summary statistics, and the peak GEMM throughput."""
import gc
import math
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor


class Timer:
    """Seconds of one call. CPU: time.perf_counter around the call. CUDA: the device is
    synchronised first, then CUDA events bracket the call and the end event is waited on,
    so the figure covers host launch time and device time alike."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        start_s = time.perf_counter()
        fn()
        return time.perf_counter() - start_s


def plan_repeats(call_s: Dict[str, float], budget_s: float, min_repeats: int, max_repeats: int,
                 slow: Tuple[str, ...] = ("cell_loop",), min_slow_samples: int = 3) -> Tuple[int, Dict[str, int]]:
    """How many interleaved rounds to run, and for each implementation every how many rounds
    it takes part (1 = every round).

    The fast implementations (all but `slow`) get as many rounds as fit in the budget, within
    [min_repeats, max_repeats]. A slow one (the Python cell loop) joins every k-th round so that
    it takes at most about half of the budget, but at least min_slow_samples samples."""
    fast = sum(t for n, t in call_s.items() if n not in slow)
    repeats = int(budget_s / fast) if fast > 0 else max_repeats
    repeats = max(min_repeats, min(max_repeats, repeats))
    every = {n: 1 for n in call_s}
    for name in slow:
        if name not in call_s or call_s[name] <= 0:
            continue
        samples = int(0.5 * budget_s / call_s[name])
        samples = max(min(min_slow_samples, repeats), min(repeats, samples))
        every[name] = max(1, repeats // samples)
    return repeats, every


def round_order(participants: List[str], alternate: bool) -> List[str]:
    """The order of one round: as given, or (alternate) with all but the first reversed."""
    return participants[:1] + participants[:0:-1] if alternate else list(participants)


def interleaved(fns: Dict[str, Callable[[], object]], repeats: int, every: Dict[str, int],
                timer: Timer) -> Tuple[Dict[str, List[float]], List[str]]:
    """Round r times each implementation once (those with r % every == 0), back to back.
    Each implementation runs right after each other one equally often: the rounds with the
    same implementations alternate between two orders (round_order), so with three of them
    two rounds run A B C A C B and every ordered pair follows once, across the boundary
    between rounds too. What ran just before a call matters on a CPU (caches, an idle
    second core: bench/README.md item 28); the rotation used before (A B C, B C A, C A B)
    put C before A in two rounds of three, and C, the cell loop, is the costliest
    predecessor. Slow drifts (clock, other processes) still reach all implementations
    alike. The garbage collector is paused meanwhile. Returns each implementation's times
    and the names in the order the calls ran."""
    names = list(fns)
    times: Dict[str, List[float]] = {n: [] for n in names}
    rounds_of: Dict[Tuple[str, ...], int] = {}  # rounds run so far with each set of implementations
    order: List[str] = []
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            participants = tuple(name for name in names if r % every[name] == 0)
            count = rounds_of.get(participants, 0)
            rounds_of[participants] = count + 1
            for name in round_order(list(participants), alternate=count % 2 == 1):
                times[name].append(timer(fns[name]))
                order.append(name)
    finally:
        if was_enabled:
            gc.enable()
    return times, order


def noisy(stats: dict, limit: float = 0.25) -> bool:
    """IQR above `limit` of the median: the machine was busy or the timing is unstable."""
    return bool(stats.get("samples")) and stats["iqr_ms"] > limit * stats["median_ms"]


def summarize(seconds: List[float]) -> dict:
    """Median, quartiles and IQR in milliseconds, plus every sample."""
    ms = [s * 1e3 for s in seconds]
    if not ms:
        return {"samples": 0, "times_ms": []}
    if len(ms) >= 2:
        q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = q3 = ms[0]
    return {"median_ms": statistics.median(ms), "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1,
            "min_ms": min(ms), "samples": len(ms), "times_ms": ms}


def gemm_gflops(mm: Callable[[Tensor, Tensor], Tensor], dtype: torch.dtype, device: torch.device, size: int,
                timer: Timer, seconds: float = 0.5) -> Optional[float]:
    """GFLOP/s of a square size x size product mm(a, b) in dtype, from the fastest of as many
    calls as fit in about `seconds` (at least 3) after one warm-up call: a peak is what the
    machine can do, so the best call counts (a busy moment only slows calls down). None if
    that mm does not take the dtype here."""
    try:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        first = timer(lambda: mm(a, b))
    except (RuntimeError, TypeError, NotImplementedError):
        return None
    if first > seconds:  # a slow fallback (e.g. float16 on some CPUs): one more call is enough
        return 2.0 * size ** 3 / min(first, timer(lambda: mm(a, b))) / 1e9
    calls = max(3, min(100, math.ceil(seconds / max(first, 1e-6))))
    times = [timer(lambda: mm(a, b)) for _ in range(calls)]
    return 2.0 * size ** 3 / min(times) / 1e9


# The GEMMs whose best figure is the machine's peak: torch.mm (MKL on the CPU, cuBLAS on the
# GPU), and fused_rnn's own (on AVX-512 CPUs about twice MKL's, which runs its AVX2 path on
# AMD: bench/README.md "What we learned" 2). Dividing by torch.mm alone made the CPU's "% of
# peak GEMM" exceed 100%.
PEAK_GEMMS: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "torch.mm": torch.mm,
    "fused_rnn.mm": lambda a, b: torch.ops.fused_rnn.mm(a, b),
}


def peak_gemm_gflops(dtype: torch.dtype, device: torch.device, size: int, timer: Timer) -> Dict[str, Optional[float]]:
    """gemm_gflops of each of PEAK_GEMMS; the peak is the highest of them."""
    return {name: gemm_gflops(mm, dtype, device, size, timer) for name, mm in PEAK_GEMMS.items()}
