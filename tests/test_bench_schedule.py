"""bench/timing.py's interleaved schedule: each implementation must run right after each
other one equally often (what ran just before a call changes its time on a CPU, and the
earlier rotation put the cell loop before fused_rnn twice as often as before torch.nn)."""
import os
import sys
from collections import Counter

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import timing  # noqa: E402  (bench/ is not a package)


def schedule(names, repeats, every):
    fns = {name: (lambda: None) for name in names}
    times, order = timing.interleaved(fns, repeats, every, timer=lambda fn: fn() or 0.0)
    assert [len(times[n]) for n in names] == [order.count(n) for n in names]
    return order


def predecessor_counts(order):
    return Counter(zip(order, order[1:]))


@pytest.mark.parametrize("repeats", [4, 11, 50])
def test_every_ordered_pair_follows_equally_often(repeats):
    names = ["fused", "torch_nn", "cell_loop"]
    order = schedule(names, repeats, {n: 1 for n in names})
    assert len(order) == 3 * repeats
    pairs = predecessor_counts(order)
    assert set(pairs) == {(a, b) for a in names for b in names if a != b}
    assert max(pairs.values()) - min(pairs.values()) <= 1


def test_subsampled_cell_loop_precedes_both_others_alike():
    names = ["fused", "torch_nn", "cell_loop"]
    order = schedule(names, 48, {"fused": 1, "torch_nn": 1, "cell_loop": 4})
    assert order.count("cell_loop") == 12
    pairs = predecessor_counts(order)
    assert pairs["cell_loop", "fused"] == pairs["cell_loop", "torch_nn"] == 6
    assert pairs["fused", "cell_loop"] == pairs["torch_nn", "cell_loop"] == 6


def test_two_implementations_alternate():
    assert schedule(["fused", "torch_nn"], 4, {"fused": 1, "torch_nn": 1}) == ["fused", "torch_nn"] * 4
