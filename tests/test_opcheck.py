"""torch.library.opcheck on every operator of the library (schema, autograd registration,
fake kernel, AOT dispatch with dynamic shapes), with realistic arguments: unpacked and
packed batch_sizes, both directions, biases present and None, LSTM with projection."""
import pytest
import torch
from torch.library import opcheck

import fused_rnn  # noqa: F401  (registers torch.ops.fused_rnn)
from helpers import OP_CASE_IDS, OP_CASES, backward_args, layer_args, op_kind

ops = torch.ops.fused_rnn


@pytest.mark.parametrize("kind, batches, bias, proj, reverse", OP_CASES, ids=OP_CASE_IDS)
def test_opcheck_forward(kind, batches, bias, proj, reverse):
    args = layer_args(kind, batches, bias=bias, proj=proj, reverse=reverse)
    opcheck(getattr(ops, f"{op_kind(kind)}_forward").default, args)


@pytest.mark.parametrize("keep_workspace", [True, False], ids=["keep-workspace", "no-workspace"])
@pytest.mark.parametrize("kind, batches, bias, proj, reverse", OP_CASES, ids=OP_CASE_IDS)
def test_opcheck_forward_without_grad(kind, batches, bias, proj, reverse, keep_workspace):
    """keep_workspace=False is what the modules pass when no backward can follow."""
    args = layer_args(kind, batches, bias=bias, proj=proj, reverse=reverse, requires_grad=False)
    opcheck(getattr(ops, f"{op_kind(kind)}_forward").default, args + (keep_workspace,))


@pytest.mark.parametrize("kind, batches, bias, proj, reverse", OP_CASES, ids=OP_CASE_IDS)
def test_opcheck_backward(kind, batches, bias, proj, reverse):
    args = layer_args(kind, batches, bias=bias, proj=proj, reverse=reverse, requires_grad=False)
    opcheck(getattr(ops, f"{op_kind(kind)}_backward").default, backward_args(kind, args))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_every_op_is_checked(kind):
    """Both ops of each cell type exist with the schema this file exercises."""
    for direction in ("forward", "backward"):
        op = getattr(ops, f"{kind}_{direction}").default
        assert op._schema.name == f"fused_rnn::{kind}_{direction}"
