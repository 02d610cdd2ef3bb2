"""The CPU kernels keep the buffers of their packed weights between calls
(csrc/cpu/buffer_pool.h): whatever sizes come in whatever order, and however the weights
change in place between calls, every call computes with its own weights."""
import pytest
import torch

from helpers import assert_close, make_pair, randn

F32 = torch.float32


def forward_and_grads(module, x):
    x = x.clone().requires_grad_(True)
    out, _ = module(x)
    grads = torch.autograd.grad((out * out).sum(), [x] + list(module.parameters()))
    return [out.detach()] + list(grads)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_sizes_in_turn_and_weights_changed_in_place_match_torch_nn(kind):
    # (I, H): packed weights of 64 KB to 4 MB, so buffers are reused, outgrown and shared
    sizes = [(64, 128), (256, 256), (64, 128), (512, 512), (256, 256), (64, 64)]
    pairs = {size: make_pair(kind, *size, dtype=F32, seed=i) for i, size in enumerate(sorted(set(sizes)))}
    for call, (I, H) in enumerate(sizes):
        ref, fused = pairs[(I, H)]
        with torch.no_grad():  # in place, as an optimizer step changes them
            for module in (ref, fused):
                for p in module.parameters():
                    p.mul_(-0.9)
        x = randn(7, 3, I, dtype=F32, seed=call)
        for actual, expected in zip(forward_and_grads(fused, x), forward_and_grads(ref, x)):
            assert_close(actual, expected, what=f"call {call}, (I, H) = {(I, H)}")
