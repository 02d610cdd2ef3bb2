"""The weight gradients of one LSTM/RNN layer as the CPU op computes them on AVX2 (two MKL
products, dgates^T x and dgates^T h_prev, the first step's rows from h0 added after),
against one product over [x | h_prev] side by side: with the copies in and out that one
product needs, and alone (inputs already side by side, result left as one matrix). The
variants take turns, round by round, in one process (bench/README.md, "What we learned on
an AVX2 CPU", item 23).

    python bench/profiling/weight_grad_products.py --shapes 50,32,512 100,64,256 200,16,64 100,1,128
"""
import argparse
import statistics
import time

import torch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["50,32,512"], help="T,N,H each (I = H, an LSTM: 4 H gates)")
    parser.add_argument("--gates", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for shape in args.shapes:
        T, N, H = map(int, shape.split(","))
        R, GH, I = T * N, args.gates * H, H
        dgates, x, out, h0 = torch.randn(R, GH), torch.randn(R, I), torch.randn(R, H), torch.randn(N, H)
        side_by_side, product = torch.empty(R, I + H), torch.empty(GH, I + H)

        def two_products():
            grad_w_ih = dgates.t().mm(x)
            grad_w_hh = dgates[N:].t().mm(out[:-N])
            grad_w_hh.addmm_(dgates[:N].t(), h0)
            return grad_w_ih, grad_w_hh

        def one_product_with_copies():
            side_by_side[:, :I].copy_(x)
            side_by_side[:N, I:].copy_(h0)
            side_by_side[N:, I:].copy_(out[:-N])
            torch.mm(dgates.t(), side_by_side, out=product)
            return product[:, :I].contiguous(), product[:, I:].contiguous()

        def one_product_alone():
            torch.mm(dgates.t(), side_by_side, out=product)

        for got, want in zip(one_product_with_copies(), two_products()):
            torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-2)
        variants = {"two products": two_products, "one with copies": one_product_with_copies,
                    "one alone": one_product_alone}
        times = {name: [] for name in variants}
        for r in range(args.rounds):
            order = list(variants.items())
            for name, run in order if r % 2 else reversed(order):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        medians = {name: statistics.median(t) for name, t in times.items()}
        base = medians["two products"]
        print(f"({shape}): " + " | ".join(f"{name} {ms * 1e3:.2f} ms ({ms / base:.3f})" for name, ms in medians.items()),
              flush=True)


if __name__ == "__main__":
    main()
