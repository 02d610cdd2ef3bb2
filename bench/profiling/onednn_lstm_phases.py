"""torch.nn.LSTM's forward and backward on the CPU as oneDNN times them (its verbose mode
prints each primitive's execution with its ms), beside the page faults each of the two
incurs: where torch.nn's forward+backward spends its time, to set against our phases
(phase_times.py). Prints oneDNN's lines as they come, then a faults line per call.

    python bench/profiling/onednn_lstm_phases.py --shape 50,32,512 | grep -E "exec,cpu,rnn|faults"
"""
import argparse
import resource
import sys

import torch


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="50,32,512", help="T,N,H (I = H)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    T, N, H = map(int, args.shape.split(","))
    module = torch.nn.LSTM(H, H)
    x, grad = torch.randn(T, N, H, requires_grad=True), torch.randn(T, N, H)
    wrt = [x] + list(module.parameters())
    torch.autograd.grad(module(x)[0], wrt, grad)  # warm-up, before the verbose output
    with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
        for call in range(args.calls):
            before = faults()
            output = module(x)[0]
            sys.stdout.flush()
            middle = faults()
            torch.autograd.grad(output, wrt, grad)
            sys.stdout.flush()
            print(f"call {call}: faults in the forward {middle - before}, in the backward {faults() - middle}",
                  flush=True)


if __name__ == "__main__":
    main()
