"""torch.ops.fused_rnn.phase_times, the profiling switch behind bench/profiling/phase_times.py
(csrc/phase_timer.h): off by default, it sums each phase of the layer ops' C++ work while on,
and returns and resets the sums when switched."""
import torch

import fused_rnn

FORWARD, BACKWARD = slice(0, 3), slice(3, 8)


def run_lstm(calls, backward):
    module = fused_rnn.LSTM(8, 16)
    x = torch.randn(5, 3, 8, requires_grad=backward)
    for _ in range(calls):
        out, _ = module(x)
        if backward:
            out.sum().backward()


def test_phase_times_counts_and_resets():
    torch.ops.fused_rnn.phase_times(False)  # clear whatever an earlier test left
    run_lstm(2, backward=True)  # off: nothing is summed
    assert torch.ops.fused_rnn.phase_times(True).abs().sum().item() == 0
    run_lstm(3, backward=True)
    times = torch.ops.fused_rnn.phase_times(False)
    assert times.dtype == torch.float64 and times.shape == (10,)
    assert times[-2].item() == 3 and times[-1].item() == 3  # forward and backward calls
    assert (times[FORWARD] > 0).all() and (times[BACKWARD] >= 0).all() and times[BACKWARD].sum() > 0
    assert torch.ops.fused_rnn.phase_times(False).abs().sum().item() == 0  # reset


def test_phase_times_forward_only_leaves_backward_phases_empty():
    torch.ops.fused_rnn.phase_times(True)
    with torch.no_grad():
        run_lstm(2, backward=False)
    times = torch.ops.fused_rnn.phase_times(False)
    assert times[-2].item() == 2 and times[-1].item() == 0
    assert times[FORWARD].sum() > 0 and times[BACKWARD].sum() == 0
