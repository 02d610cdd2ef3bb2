"""DistributedDataParallel (gloo, 2 CPU processes started with torch.multiprocessing.spawn)
over a model of fused_rnn.LSTM + fused_rnn.GRU: each rank trains on its half of every batch;
the gradients of the first step and the parameters after a few SGD steps equal those of one
process training on the whole batch (DDP averages gradients; the loss is a batch mean)."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

import fused_rnn

WORLD = 2
STEPS = 4
BATCH = 6  # per step, split evenly over the ranks


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = fused_rnn.LSTM(5, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = fused_rnn.GRU(16, 6, batch_first=True)
        self.head = nn.Linear(6, 1)

    def forward(self, x):
        y, _ = self.lstm(x)
        _, h = self.gru(y)
        return self.head(h[-1])


def make_model():
    torch.manual_seed(0)
    return Model().double()


def batches():
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 7, 5, generator=gen, dtype=torch.float64),
             torch.randn(BATCH, 1, generator=gen, dtype=torch.float64)) for _ in range(STEPS)]


def train(model, data, rank=0, world=1):
    """SGD steps on this rank's share of each batch; returns the first step's gradients."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    first_grads = None
    share = BATCH // world
    for x, y in data:
        x, y = x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]
        optimizer.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        if first_grads is None:
            first_grads = [p.grad.detach().clone() for p in model.parameters()]
        optimizer.step()
    return first_grads


def worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        model = nn.parallel.DistributedDataParallel(make_model())
        first_grads = train(model, batches(), rank, WORLD)
        state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
        torch.save({"grads": first_grads, "state": state}, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_ddp_two_processes_match_single_process_training(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    model = make_model()
    names = [n for n, _ in model.named_parameters()]
    expected_grads = train(model, batches())
    expected_state = model.state_dict()
    assert any("lstm" in n for n in names) and any("gru" in n for n in names)

    for rank, result in enumerate(results):
        assert len(result["grads"]) == len(expected_grads)
        for name, g, e in zip(names, result["grads"], expected_grads):
            torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12, msg=f"rank {rank}: first-step grad of {name}")
        assert result["state"].keys() == expected_state.keys()
        for name, v in result["state"].items():
            torch.testing.assert_close(v, expected_state[name], rtol=1e-9, atol=1e-12,
                                       msg=f"rank {rank}: {name} after {STEPS} steps")
    # the training moved the weights: the comparison is not between two untouched copies
    assert not torch.equal(expected_state["lstm.weight_hh_l0"], make_model().state_dict()["lstm.weight_hh_l0"])
