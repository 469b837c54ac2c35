"""Fixtures shared by the test files."""

import jax
import pytest


@pytest.fixture(scope="module")
def x64():
    """Run a module in float64 (`pytestmark = pytest.mark.usefixtures("x64")`), for tight references."""
    with jax.enable_x64(True):
        yield
