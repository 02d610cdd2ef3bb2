"""One LSTM/GRU/RNN forward (no_grad) on the GPU at a chosen size, for Nsight Compute to
profile the persistent forward kernel (gpu_device_check.sh's `profile` step):

    ncu --clock-control none --kernel-name regex:forward_kernel --launch-skip 2 --launch-count 1 \
        python3 bench/profiling/persistent_profile.py --cell lstm -N 16 -H 768

Runs three forwards (two to warm up, one to profile) and prints the module time of a
fourth, timed with CUDA events, so the same command also gives a plain timing without ncu."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

import fused_rnn  # noqa: E402

MODULES = {"lstm": fused_rnn.LSTM, "gru": fused_rnn.GRU, "rnn_tanh": fused_rnn.RNN}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cell", choices=sorted(MODULES), default="lstm")
    parser.add_argument("-T", type=int, default=64)
    parser.add_argument("-N", type=int, default=16)
    parser.add_argument("-H", type=int, default=768)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    module = MODULES[args.cell](args.H, args.H).to("cuda", dtype)
    x = torch.randn(args.T, args.N, args.H, device="cuda", dtype=dtype)
    with torch.no_grad():
        for _ in range(3):
            module(x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        module(x)
        end.record()
        torch.cuda.synchronize()
    ms = start.elapsed_time(end)
    print(f"{args.cell} T={args.T} N={args.N} H={args.H} {args.dtype}: {ms:.3f} ms, {1000 * ms / args.T:.2f} us/step")


if __name__ == "__main__":
    main()
