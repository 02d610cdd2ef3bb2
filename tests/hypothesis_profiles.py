"""Hypothesis settings profiles of the property tests (tests/test_property.py):

  ci    the default: 25 examples per test, derandomized (the same examples on every run
        and machine, no example database), no deadline (a first call may compile/warm up)
  long  500 random examples per test, for a soak run

Pick one with `FUSED_RNN_HYPOTHESIS_PROFILE=long` or `pytest --hypothesis-profile long`.
The option is read before pytest imports any test module, so the repository's root
conftest.py registers these profiles (by running this file) ahead of it."""
import os

from hypothesis import HealthCheck, settings

ENV_VAR = "FUSED_RNN_HYPOTHESIS_PROFILE"
DEFAULT = "ci"


def register() -> None:
    """Registers the profiles; loads $FUSED_RNN_HYPOTHESIS_PROFILE (or ci) unless a profile
    was chosen already (by --hypothesis-profile, or by an earlier call)."""
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("ci", max_examples=25, derandomize=True, database=None, **common)
    # Explicit derandomize=False: a new profile inherits the active settings, and with CI=true
    # in the environment hypothesis starts from its own derandomized "ci" profile.
    settings.register_profile("long", max_examples=500, derandomize=False, **common)
    # "ci" too: hypothesis loads its built-in profile of that name when it detects a CI run.
    if settings.get_current_profile_name() in ("default", "ci"):
        settings.load_profile(os.environ.get(ENV_VAR) or DEFAULT)


register()
