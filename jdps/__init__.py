"""jdps: data point selection in JAX."""

__version__ = "0.1.0"
