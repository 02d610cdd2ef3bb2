"""Repository-wide pytest set-up, with one job: register the hypothesis settings profiles
(tests/hypothesis_profiles.py) before pytest reads `--hypothesis-profile`, which happens
before any test module is imported. Does nothing when hypothesis is not installed."""
import importlib.util
import os

if importlib.util.find_spec("hypothesis") is not None:
    _path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests", "hypothesis_profiles.py")
    _spec = importlib.util.spec_from_file_location("_fused_rnn_hypothesis_profiles", _path)
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
