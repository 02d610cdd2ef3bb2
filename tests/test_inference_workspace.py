"""A forward that no backward can follow (no_grad, inference_mode, nothing requiring grad)
calls the ops with keep_workspace=False: the op returns an empty workspace, and the CPU
forward runs the input projection chunk by chunk into a buffer of one chunk (4 MB of
workspace rows, csrc/cpu/cpu_backend.h kProjectionChunkBytes) instead of materialising
the whole sequence's. The sizes below span several chunks, with packed sequences of
different lengths and both directions, so chunk boundaries fall inside the steps' row
ranges either way round."""
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from fused_rnn.ops import _WORKSPACE
from helpers import MODES, assert_close, layer_args, make_pair, op_kind

CHUNK_BYTES = 4 << 20
F32 = torch.float32


def sizes_for_chunks(kind, H, chunks):
    """(T, N) whose workspace is about `chunks` projection chunks."""
    rows = chunks * CHUNK_BYTES // (_WORKSPACE[op_kind(kind.lower())] * H * 4)
    N = 96
    return -(-rows // N), N


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "packed"])
@pytest.mark.parametrize("kind", MODES)
def test_forward_without_workspace_equals_training_forward(kind, packed):
    H = 32
    T, N = sizes_for_chunks(kind, H, 3)
    ref, fused = make_pair(kind, 4, H, bidirectional=True, dtype=F32)
    x = torch.randn(T, N, 4, generator=torch.Generator().manual_seed(0))
    lengths = torch.randint(1, T + 1, (N,), generator=torch.Generator().manual_seed(1))
    lengths[0] = T

    def run(module, grad):
        inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if packed else x
        with torch.set_grad_enabled(grad):
            out, state = module(inp)
        h = state[0] if kind == "LSTM" else state
        return (out.data if packed else out).detach(), h.detach()

    trained, inferred, reference = run(fused, True), run(fused, False), run(ref, False)
    with torch.inference_mode():
        in_inference_mode = run(fused, False)
    for name, kept, chunked, by_inference_mode, expected in zip(("output", "h_n"), trained, inferred,
                                                                 in_inference_mode, reference):
        # the same per-row arithmetic in either layout: bitwise equal
        assert torch.equal(chunked, kept), name
        assert torch.equal(by_inference_mode, kept), name
        assert_close(chunked, expected, tol=2e-5, what=name)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_op_returns_an_empty_workspace_when_not_kept(kind):
    args = layer_args(kind, "packed", requires_grad=False)
    op = getattr(torch.ops.fused_rnn, f"{op_kind(kind)}_forward")
    kept = op(*args)
    not_kept = op(*args, False)
    assert kept[-1].shape[0] == args[0].shape[0]
    assert not_kept[-1].shape == (0, kept[-1].shape[1])
    for a, b in zip(kept[:-1], not_kept[:-1]):
        assert torch.equal(a, b)
