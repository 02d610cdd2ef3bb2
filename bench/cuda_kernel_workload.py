"""Every CUDA code path of fused_rnn once, on small shapes, for compute-sanitizer
(gpu_device_check.sh runs it under memcheck and racecheck; the pytest suite is too slow
under the sanitizer to fit a device lease). Forward and backward of each module kind, in
each dtype, plain, packed (unsorted lengths, so batch sizes shrink along time),
bidirectional and stacked, projected LSTM, and the cells. Exits non-zero if any result is
not finite or differs from the CPU kernels by more than the dtype's tolerance."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the in-place build

import torch  # noqa: E402
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence  # noqa: E402

import fused_rnn  # noqa: E402

TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 3e-2, torch.bfloat16: 1e-1}
MODULES = [
    ("LSTM", {}), ("LSTM", {"proj_size": 3}), ("GRU", {}),
    ("RNN", {"nonlinearity": "tanh"}), ("RNN", {"nonlinearity": "relu"}),
]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double().cpu(), expected.double()
    return float((actual - expected).norm() / expected.norm().clamp_min(1e-30))


def run(module: torch.nn.Module, x, device: str, dtype: torch.dtype):
    """Output and input gradient of module(x) on device in dtype (packed inputs included)."""
    module = module.to(device=device, dtype=dtype)
    packed = isinstance(x, PackedSequence)
    x = x.to(device)  # a PackedSequence moves its index tensors too (batch_sizes stays on the CPU)
    leaf = (x.data if packed else x).to(device=device, dtype=dtype).detach().requires_grad_()
    out = module(PackedSequence(leaf, x.batch_sizes, x.sorted_indices, x.unsorted_indices) if packed else leaf)
    y = out[0] if isinstance(out, tuple) else out
    y = y.data if isinstance(y, PackedSequence) else y
    y.float().square().sum().backward()
    return y.detach(), leaf.grad


def main(device: str = "cuda") -> int:
    """device: cuda (the point), or cpu to check this script itself on a machine without a GPU."""
    assert device != "cuda" or torch.cuda.is_available(), "no GPU"
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    failures = []
    T, N, I, H = 7, 5, 6, 8
    lengths = torch.tensor([3, 7, 1, 5, 6])
    for dtype in TOLERANCE:
        # H = 8: the persistent kernel reads rows of h in 16-byte pieces (every dtype);
        # H = 5 (float32 only, for time): element by element.
        for kind, extra, hidden in [(k, e, h) for k, e in MODULES for h in ([H, 5] if dtype == torch.float32 else [H])]:
            module = getattr(fused_rnn, kind)(I, hidden, num_layers=2, bidirectional=True, **extra)
            padded = torch.randn(T, N, I)
            for name, x in (("plain", padded),
                            ("packed", pack_padded_sequence(padded, lengths, enforce_sorted=False))):
                gpu = run(module, x, device, dtype)
                cpu = run(module, x, "cpu", torch.float64)
                for what, a, e in zip(("output", "grad_input"), gpu, cpu):
                    err = relative_error(a, e)
                    if not err <= TOLERANCE[dtype]:  # NaN fails too
                        failures.append(f"{kind}{extra} H={hidden} {name} {dtype} {what}: relative error {err:.2e}")
        for cell_kind in ("LSTMCell", "GRUCell", "RNNCell"):
            cell = getattr(fused_rnn, cell_kind)(I, H)
            x = torch.randn(N, I)
            gpu = run(cell, x, device, dtype)
            cpu = run(cell, x, "cpu", torch.float64)
            for what, a, e in zip(("output", "grad_input"), gpu, cpu):
                err = relative_error(a, e)
                if not err <= TOLERANCE[dtype]:
                    failures.append(f"{cell_kind} {dtype} {what}: relative error {err:.2e}")
    if device == "cuda":
        torch.cuda.synchronize()
    for line in failures:
        print("FAIL", line)
    print(f"cuda kernel workload: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
