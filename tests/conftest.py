"""Fixtures shared by the test files, and the hypothesis profile of the property-based tests."""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

# The property-based tests (tests/test_properties.py): at most 25 examples a test, the same ones every run
# (derandomize), no deadline (a first call compiles), over a few fixed shapes so compiled code is reused.
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("ci")

os.environ.setdefault("JDPS_PROGRESS", "0")     # progress bars are silent in tests (jdps.progress)


@pytest.fixture(scope="module")
def x64():
    """Run a module in float64 (`pytestmark = pytest.mark.usefixtures("x64")`), for tight references."""
    with jax.enable_x64(True):
        yield
