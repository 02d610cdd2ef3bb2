"""What step_cost.py and module_times.py share: the module classes they compare, and the
best-of-batches timing of back-to-back calls (the least disturbed batch counts)."""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import fused_rnn  # noqa: E402

CLASSES = {"lstm": (fused_rnn.LSTM, torch.nn.LSTM), "gru": (fused_rnn.GRU, torch.nn.GRU),
           "rnn_tanh": (fused_rnn.RNN, torch.nn.RNN)}
CELL_CLASSES = {"lstm": (fused_rnn.LSTMCell, torch.nn.LSTMCell), "gru": (fused_rnn.GRUCell, torch.nn.GRUCell),
                "rnn_tanh": (fused_rnn.RNNCell, torch.nn.RNNCell)}


def best_seconds(call, calls, batches, warmup):
    """Seconds per call of the fastest of `batches` batches of `calls` calls, after
    `warmup` untimed calls."""
    for _ in range(warmup):
        call()
    best = float("inf")
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - start) / calls)
    return best
