"""Ways to keep the calling thread busy for a while before a timed call, shared by
cold_call.py --busy and core_warmup_probe.py: the work that ran before decides how fast a
core runs FMAs next (bench/README.md, "What we learned on an AVX2 CPU", item 21)."""
import time

import torch


def python_for(ms: float) -> None:
    """Keeps the calling thread busy in the interpreter, without vector work, for ms."""
    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        pass


def small_products_for(ms: float, a: torch.Tensor) -> None:
    """Keeps the calling thread busy with products a @ a (too small for a parallel region)."""
    end = time.perf_counter() + ms / 1e3
    while time.perf_counter() < end:
        torch.mm(a, a)
