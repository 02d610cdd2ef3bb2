"""Benchmark problems (one Config per row of the results table), the predefined sweeps of
throughput.py, the GEMM flop count, and a rough cost model used to print a run-time
estimate before a sweep starts."""
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Sequence

CELLS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
DTYPES = ("float32", "float64", "float16", "bfloat16")
MODES = ("forward", "fwdbwd")


@dataclass(frozen=True)
class Config:
    """One problem: cell type and sizes (T time, N batch, I input, H hidden)."""

    cell: str
    T: int
    N: int
    I: int  # noqa: E741  (the shape legend of the project: T, N, I, H, G)
    H: int
    layers: int = 1
    bidirectional: bool = False
    packed: bool = False
    dtype: Optional[str] = None  # None: the run's --dtype
    group: str = ""  # what the row belongs to: target, batch, hidden, reference, latency, large

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def label(self) -> str:
        parts = [self.cell, f"T={self.T}", f"N={self.N}", f"I={self.I}", f"H={self.H}"]
        if self.layers > 1:
            parts.append(f"L={self.layers}")
        if self.bidirectional:
            parts.append("bidir")
        if self.packed:
            parts.append("packed")
        if self.dtype:
            parts.append(self.dtype)
        return " ".join(parts)

    def as_dict(self) -> dict:
        return asdict(self)


def expected_tokens(cfg: Config) -> float:
    """Time steps times sequences that the cells process; packed lengths are uniform in
    [1, T], so on average (T + 1) / 2 per sequence (throughput.py counts the real ones)."""
    return cfg.N * ((cfg.T + 1) / 2 if cfg.packed else cfg.T)


def forward_flops(cfg: Config, tokens: float) -> float:
    """GEMM flops of one forward pass: per layer and direction 2 * tokens * G * H * (I_l + H),
    the input projection plus the recurrent product (pointwise work is not counted)."""
    G, H = GATES[cfg.cell], cfg.H
    total = 0.0
    for layer in range(cfg.layers):
        layer_input = cfg.I if layer == 0 else H * cfg.directions
        total += cfg.directions * 2.0 * tokens * G * H * (layer_input + H)
    return total


def mode_flops(cfg: Config, tokens: float, mode: str) -> float:
    """Backward costs two GEMMs per forward GEMM (input and weight gradients): 3x forward."""
    return forward_flops(cfg, tokens) * (1 if mode == "forward" else 3)


# ---- sweeps ------------------------------------------------------------------------------

TARGET_SIZES = ((100, 1, 128, 128), (200, 16, 64, 64), (100, 64, 256, 256), (50, 32, 512, 512))
TARGET_CELLS = ("lstm", "gru", "rnn_tanh")


def _grid(cells: Sequence[str], sizes, group: str, **extra) -> List[Config]:
    return [Config(c, T, N, I, H, group=group, **extra) for (T, N, I, H) in sizes for c in cells]


def targets_sweep() -> List[Config]:
    """The CPU target problems of the project (see targets.py)."""
    configs = _grid(TARGET_CELLS, TARGET_SIZES, "target")
    configs.append(Config("lstm", 100, 16, 128, 128, packed=True, group="target"))
    return configs


def smoke_sweep() -> List[Config]:
    """Seconds-long: every cell, packed, stacked and bidirectional, tiny sizes."""
    configs = _grid(CELLS, [(5, 2, 8, 8)], "smoke")
    configs.append(Config("lstm", 6, 3, 8, 8, packed=True, group="smoke"))
    configs.append(Config("gru", 4, 2, 6, 8, layers=2, bidirectional=True, group="smoke"))
    configs.append(Config("rnn_tanh", 4, 3, 8, 8, layers=2, bidirectional=True, packed=True, group="smoke"))
    return configs


def default_sweep() -> List[Config]:
    """`make bench` on the CPU: the targets, then speedup vs batch (I=H=256) and vs hidden
    size (N=16), T=50, for the three cells of the targets."""
    batch = _grid(TARGET_CELLS, [(50, n, 256, 256) for n in (1, 4, 16, 64)], "batch")
    hidden = _grid(TARGET_CELLS, [(50, 16, h, h) for h in (64, 128, 256, 512)], "hidden")
    return _unique(targets_sweep() + batch + hidden)


def _unique(configs: Sequence[Config]) -> List[Config]:
    """Each problem once (the first group that lists it keeps it)."""
    seen, kept = set(), []
    for c in configs:
        key = replace(c, group="")
        if key not in seen:
            seen.add(key)
            kept.append(c)
    return kept


def cuda_sweep() -> List[Config]:
    """GPU: the published reference problem (T=1024, N=16, I=H=768) in three dtypes,
    small-batch latency (T=512, the run's dtype), and large batch with 2 bidirectional
    layers (T=256, bfloat16)."""
    reference = [Config(c, 1024, 16, 768, 768, dtype=d, group="reference")
                 for d in ("float32", "bfloat16", "float16") for c in ("lstm", "gru")]
    latency = _grid(TARGET_CELLS, [(512, n, h, h) for h in (256, 512, 768) for n in (1, 4, 8)], "latency")
    # Large-batch training in bfloat16, as such training runs (and a quarter of float32's time).
    large = _grid(TARGET_CELLS, [(256, n, h, h) for h in (512, 1024) for n in (64, 256)], "large",
                  layers=2, bidirectional=True, dtype="bfloat16")
    return reference + latency + large


SWEEPS = {
    "smoke": smoke_sweep,
    "default": default_sweep,
    "targets": targets_sweep,
    "cuda": cuda_sweep,
}


def sweep(name: str, cells: Optional[Sequence[str]] = None, groups: Optional[Sequence[str]] = None) -> List[Config]:
    configs = SWEEPS[name]()
    if cells:
        configs = [c for c in configs if c.cell in cells]
    if groups:
        configs = [c for c in configs if c.group in groups]
    return configs


def single(cells: Sequence[str], T: int, N: int, I: int, H: int, layers: int,  # noqa: E741
           bidirectional: bool, packed: bool) -> List[Config]:
    return [Config(c, T, N, I, H, layers=layers, bidirectional=bidirectional, packed=packed, group="cli")
            for c in cells]


def with_dtype(configs: Sequence[Config], dtype: str) -> List[Config]:
    """Fills in the run's dtype where a config does not fix its own."""
    return [c if c.dtype else replace(c, dtype=dtype) for c in configs]


# ---- cost model for the run-time estimate --------------------------------------------------

# Seconds of fixed cost per time step and layer-direction (dispatch, pointwise work, Python),
# rough figures from a 2-core CPU; the GEMM part comes from the measured peak. torch.nn's
# LSTM runs oneDNN's sequence kernel, its GRU and RNN a native loop of ATen ops per step.
_STEP_OVERHEAD = {
    ("fused", "forward"): 5e-6, ("fused", "fwdbwd"): 20e-6,
    ("torch_nn_lstm", "forward"): 10e-6, ("torch_nn_lstm", "fwdbwd"): 40e-6,
    ("torch_nn", "forward"): 60e-6, ("torch_nn", "fwdbwd"): 250e-6,
    ("cell_loop", "forward"): 40e-6, ("cell_loop", "fwdbwd"): 200e-6,
}
_GEMM_EFFICIENCY = 0.5


def estimate_call_seconds(cfg: Config, mode: str, peak_gflops: Optional[float]) -> Dict[str, float]:
    """Rough seconds of one call of each implementation."""
    peak = (peak_gflops or 20.0) * 1e9
    gemm = mode_flops(cfg, expected_tokens(cfg), mode) / (peak * _GEMM_EFFICIENCY)
    steps = cfg.T * cfg.layers * cfg.directions
    overhead = {name: _STEP_OVERHEAD[(name, mode)] for name in ("fused", "torch_nn", "cell_loop")}
    if cfg.cell == "lstm":
        overhead["torch_nn"] = _STEP_OVERHEAD[("torch_nn_lstm", mode)]
    return {name: gemm + steps * per_step for name, per_step in overhead.items()}
