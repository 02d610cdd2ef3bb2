"""fused_rnn: LSTM, GRU and vanilla RNN on fused C++/CUDA kernels, as drop-in
replacements for the torch.nn modules of the same names."""
import torch

__version__ = "0.1.0"

try:
    from . import _C  # noqa: F401  (registers the torch.ops.fused_rnn.* operators)
except ImportError as error:  # missing, or built against another torch
    raise ImportError(
        f"fused_rnn: the compiled extension fused_rnn._C could not be loaded with torch "
        f"{torch.__version__} ({error}). Rebuild it in the repository root with `make build` "
        f"(or `python setup.py build_ext --inplace`) using this same Python and torch."
    ) from error

from . import ops  # noqa: E402,F401
from .cells import GRUCell, LSTMCell, RNNCell  # noqa: E402
from .modules import GRU, LSTM, RNN  # noqa: E402
from .convert import convert, to_torch  # noqa: E402

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "convert", "to_torch", "ops"]
