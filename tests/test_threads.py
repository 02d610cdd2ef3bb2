"""Several Python threads running forward and backward of the SAME fused module on different
inputs at once get the results a sequential run gets: no state shared between calls (packed
weight panels, workspaces, thread pools) leaks from one call into another."""
import threading

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import fused_rnn
from helpers import assert_close, output_tensors, randn

THREADS = 4
CALLS_PER_THREAD = 3

# (fused class, constructor kwargs); sizes large enough for the multi-threaded GEMM and
# pointwise paths in float32 (AVX-512 packed weights) as well as the small-size paths.
MODULES = {
    "LSTM": (fused_rnn.LSTM, dict(input_size=24, hidden_size=48, num_layers=2, bidirectional=True)),
    "LSTM-proj": (fused_rnn.LSTM, dict(input_size=24, hidden_size=48, proj_size=16)),
    # float32 W_hh packed is 256 KB: its buffer comes from the CPU buffer pool (buffer_pool.h),
    # which concurrent calls share
    "LSTM-H128": (fused_rnn.LSTM, dict(input_size=24, hidden_size=128)),
    "GRU": (fused_rnn.GRU, dict(input_size=24, hidden_size=48, num_layers=2)),
    "RNN-relu": (fused_rnn.RNN, dict(input_size=24, hidden_size=48, nonlinearity="relu", bidirectional=True)),
    "LSTMCell": (fused_rnn.LSTMCell, dict(input_size=24, hidden_size=48)),
    "GRUCell": (fused_rnn.GRUCell, dict(input_size=24, hidden_size=48)),
}


def make_inputs(kind, dtype, count):
    """Different inputs per call: batch sizes, lengths (packed for sequence modules every
    other call) and values all vary."""
    calls = []
    for k in range(count):
        N = 3 + k % 5
        if kind.endswith("Cell"):
            calls.append((randn(N, 24, dtype=dtype, seed=k), None))
            continue
        T = 6 + (k * 7) % 11
        x = randn(T, N, 24, dtype=dtype, seed=k)
        lengths = [T - (j * 3) % T for j in range(N)] if k % 2 else None
        calls.append((x, lengths))
    return calls


def run(module, x, lengths):
    """Outputs and the gradients (w.r.t. input and every parameter) of a fixed function of
    them; torch.autograd.grad, so that nothing accumulates in the shared parameters."""
    x = x.clone().requires_grad_(True)
    arg = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False) if lengths else x
    out = module(arg)
    tensors = output_tensors(out)  # a PackedSequence contributes its data
    loss = sum((t * torch.linspace(-1, 1, t.numel(), dtype=t.dtype).view(t.shape)).sum() for t in tensors)
    grads = torch.autograd.grad(loss, [x] + list(module.parameters()))
    return [t.detach() for t in tensors] + list(grads)


def run_concurrently(worker, count):
    errors = []
    barrier = threading.Barrier(count)

    def guarded(index):
        try:
            barrier.wait()
            worker(index)
        except BaseException as error:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kind", list(MODULES))
def test_concurrent_calls_equal_sequential(kind, dtype):
    cls, kwargs = MODULES[kind]
    torch.manual_seed(0)
    module = cls(**kwargs).to(dtype)
    calls = make_inputs(kind, dtype, THREADS * CALLS_PER_THREAD)
    expected = [run(module, *c) for c in calls]

    results = [None] * len(calls)

    def worker(thread):
        for index in range(thread, len(calls), THREADS):
            results[index] = run(module, *calls[index])

    run_concurrently(worker, THREADS)
    for index, (got, want) in enumerate(zip(results, expected)):
        assert got is not None, f"call {index} produced nothing"
        assert len(got) == len(want)
        for k, (a, e) in enumerate(zip(got, want)):
            assert_close(a, e, what=f"call {index} tensor {k}")


def test_concurrent_backward_accumulates_like_sequential():
    """loss.backward() from several threads into the same parameters' .grad: the sum of the
    per-call gradients, as when the calls run one after another."""
    torch.manual_seed(0)
    module = fused_rnn.GRU(8, 16, num_layers=2, bidirectional=True).double()
    inputs = [randn(5 + k, 3, 8, seed=10 + k) for k in range(THREADS * 2)]

    def step(x):
        out, h = module(x)
        (out.pow(2).sum() + h.sum()).backward()

    for x in inputs:
        step(x)
    expected = [p.grad.clone() for p in module.parameters()]
    module.zero_grad(set_to_none=True)

    run_concurrently(lambda t: [step(x) for x in inputs[t::THREADS]], THREADS)
    for (name, p), e in zip(module.named_parameters(), expected):
        assert_close(p.grad, e, what=f"accumulated grad of {name}")
