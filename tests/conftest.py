import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global RNG state (dropout, initialisation)."""
    torch.manual_seed(0)
    yield


@pytest.fixture
def full_precision_float32():
    """GPU float32 GEMMs at full precision: TF32 (cuDNN's and cuBLAS's default for RNNs, and
    so fused_rnn's) would make them accurate to ~1e-3 only."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture
def two_threads():
    """Two threads, so that the CPU kernels split their work (this machine may have more)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(saved)
