"""Property tests: hypothesis draws whole module configurations (cell kind, sizes down to 1,
1-3 layers, bidirectional, batch_first, bias, LSTM proj_size, padded / packed with
enforce_sorted either way / unbatched input, hx given or not, float32 / float64) and
checks that fused_rnn matches torch.nn on forward values and on the gradients of input,
states and every parameter (helpers.assert_parity: max|fused - torch.nn| <= tol *
max(1, max|torch.nn|), tol 1e-10 in float64 and 1e-5 in float32).

Settings profiles (tests/hypothesis_profiles.py): "ci" by default (25 examples per test,
derandomized: the same examples on every run), "long" (500 random examples) with
FUSED_RNN_HYPOTHESIS_PROFILE=long or `pytest --hypothesis-profile long`."""
import os
import subprocess
import sys

import pytest

# Only a bare `pytest` without hypothesis skips these; `make test` installs it or fails.
hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (make test installs it)")

import hypothesis_profiles  # noqa: E402  (registers the profiles; loads ci or the one asked for)
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from helpers import CELLS, MODES, assert_parity, cell_case, sequence_case  # noqa: E402

DTYPES = st.sampled_from([torch.float32, torch.float64])


@st.composite
def sequence_configs(draw):
    """Keyword arguments of helpers.sequence_case."""
    kind = draw(st.sampled_from(MODES))
    H = draw(st.integers(1, 5))
    config = dict(kind=kind, I=draw(st.integers(1, 5)), H=H, layers=draw(st.integers(1, 3)),
                  bidirectional=draw(st.booleans()), batch_first=draw(st.booleans()), bias=draw(st.booleans()),
                  hx=draw(st.booleans()), dtype=draw(DTYPES), seed=draw(st.integers(0, 2**16)))
    if kind == "LSTM" and H > 1 and draw(st.booleans()):
        config["proj_size"] = draw(st.integers(1, H - 1))
    T = draw(st.integers(1, 6))
    layout = draw(st.sampled_from(["padded", "packed", "unbatched"]))
    config.update(T=T, N=draw(st.integers(1, 4)))
    if layout == "packed":
        lengths = draw(st.lists(st.integers(1, T), min_size=1, max_size=4))
        enforce_sorted = draw(st.booleans())
        config.update(lengths=sorted(lengths, reverse=True) if enforce_sorted else lengths,
                      enforce_sorted=enforce_sorted, N=len(lengths))
    elif layout == "unbatched":
        config["unbatched"] = True
    return config


@st.composite
def cell_configs(draw):
    """Keyword arguments of helpers.cell_case."""
    return dict(kind=draw(st.sampled_from(CELLS)), batched=draw(st.booleans()), hx=draw(st.booleans()),
                bias=draw(st.booleans()), N=draw(st.integers(1, 4)), I=draw(st.integers(1, 5)),
                H=draw(st.integers(1, 5)), dtype=draw(DTYPES), seed=draw(st.integers(0, 2**16)))


@given(config=sequence_configs())
def test_sequence_module_matches_torch_nn(config):
    ref, fused, leaves, make_args = sequence_case(**config)
    assert_parity(ref, fused, leaves, make_args)


@given(config=cell_configs())
def test_cell_matches_torch_nn(config):
    ref, fused, leaves, make_args = cell_case(**config)
    assert_parity(ref, fused, leaves, make_args)


# ---- the profiles themselves ---------------------------------------------------------------

def expected_profile(config) -> str:
    return (config.getoption("--hypothesis-profile", default=None)
            or os.environ.get(hypothesis_profiles.ENV_VAR) or hypothesis_profiles.DEFAULT)


def test_active_profile(request):
    name = expected_profile(request.config)
    print("PROFILE", settings.get_current_profile_name(), settings.default.max_examples)
    assert settings.get_current_profile_name() == name
    if name == "ci":
        assert settings.default.max_examples == 25 and settings.default.derandomize
        assert settings.default.deadline is None
    elif name == "long":
        assert settings.default.max_examples == 500 and not settings.default.derandomize


@pytest.mark.parametrize("how", ["option", "env"])
def test_long_profile_can_be_selected(how):
    """`--hypothesis-profile long` and FUSED_RNN_HYPOTHESIS_PROFILE=long both reach the tests
    (the option only works because the root conftest.py registers the profiles early)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != hypothesis_profiles.ENV_VAR}
    args = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
            "tests/test_property.py::test_active_profile"]
    if how == "option":
        args += ["--hypothesis-profile", "long"]
    else:
        env[hypothesis_profiles.ENV_VAR] = "long"
    proc = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PROFILE long 500" in proc.stdout and "1 passed" in proc.stdout, proc.stdout
