"""The CPU kernels keep the buffers of their internal temporaries between calls
(csrc/cpu/buffer_pool.h: packed weights, the backward's gate gradients and gathered
states, the inference projection's chunk): whatever sizes come in whatever order, and
however the weights change in place between calls, every call computes with its own
weights and inputs."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from helpers import assert_close, make_pair, output_tensors, randn

F32 = torch.float32


def forward_and_grads(module, x, lengths):
    x = x.clone().requires_grad_(True)
    arg = pack_padded_sequence(x, lengths, enforce_sorted=False) if lengths is not None else x
    out = output_tensors(module(arg)[0])[0]
    grads = torch.autograd.grad((out * out).sum(), [x] + list(module.parameters()))
    with torch.no_grad():  # the inference path (chunked projection) too
        inference = output_tensors(module(arg)[0])[0]
    return [out.detach(), inference] + list(grads)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_sizes_in_turn_and_weights_changed_in_place_match_torch_nn(kind, packed):
    # (I, H): packed weights of 64 KB to 4 MB and gate gradients of 100 KB to 1 MB, so that
    # buffers are reused, outgrown and held by several tensors of one call at once
    sizes = [(64, 128), (256, 256), (64, 128), (512, 512), (256, 256), (64, 64)]
    pairs = {size: make_pair(kind, *size, dtype=F32, seed=i) for i, size in enumerate(sorted(set(sizes)))}
    T, N = 20, 8
    for call, (I, H) in enumerate(sizes):
        ref, fused = pairs[(I, H)]
        with torch.no_grad():  # in place, as an optimizer step changes them
            for module in (ref, fused):
                for p in module.parameters():
                    p.mul_(-0.9)
        x = randn(T, N, I, dtype=F32, seed=call)
        lengths = torch.tensor([T - (3 * j + call) % T for j in range(N)]) if packed else None
        for k, (actual, expected) in enumerate(zip(forward_and_grads(fused, x, lengths),
                                                   forward_and_grads(ref, x, lengths))):
            assert_close(actual, expected, what=f"call {call}, (I, H) = {(I, H)}, result {k}")
