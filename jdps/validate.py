"""Input checks shared by every entry point; each error names the problem and the fix (jax is imported
only by `as_key`, so the command lines check their inputs before loading it)."""

from __future__ import annotations

import math

import numpy as np

from jdps.errors import InputError


def check_finite(name: str, array) -> None:
    """Raise if `array` holds NaN or Inf, naming the first offending rows."""
    a = np.asarray(array)
    if not np.issubdtype(a.dtype, np.floating):
        return
    bad = ~np.isfinite(a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1)).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(
            f"{name} holds NaN or Inf in {len(rows)} row(s), first at index {rows[:5].tolist()}; "
            "drop or repair those rows before passing the data")


def check_labels(name: str, y, num_classes: int | None = None) -> np.ndarray:
    """Labels must be a 1-d integer array in [0, num_classes)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise InputError(f"{name} must be a 1-d array of class ids, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            raise InputError(f"{name} has dtype {y.dtype}; labels must be integers: pass y.astype(int)")
        raise InputError(f"{name} has dtype {y.dtype}; labels must be integer class ids")
    if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise InputError(
            f"{name} holds labels outside [0, {num_classes}) (min {y.min()}, max {y.max()}); "
            f"relabel to 0..{num_classes - 1} or pass the right num_classes")
    return y


def check_same_length(**arrays) -> int:
    """All arrays share their first dimension; returns it."""
    lengths = {k: len(v) for k, v in arrays.items() if v is not None}
    if len(set(lengths.values())) > 1:
        raise InputError(f"mismatched lengths {lengths}: every per-example array needs one row per example")
    return next(iter(lengths.values()), 0)


def is_whole(value) -> bool:
    """An integer (not a bool), or a finite float with an integer value."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, (float, np.floating)) and math.isfinite(value) and value == int(value)


def positive_int(name: str, value) -> int:
    """`value` as an int >= 1 (an integer, or a float with an integer value), else InputError naming `name`."""
    if not is_whole(value) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_fraction(fraction: float, name: str = "fraction") -> float:
    """A fraction of a pool must lie in (0, 1]."""
    if isinstance(fraction, (bool, np.bool_)) or not isinstance(fraction, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number in (0, 1], got {fraction!r}")
    f = float(fraction)
    if not (0.0 < f <= 1.0) or math.isnan(f):
        raise InputError(f"{name} must lie in (0, 1], got {fraction}; to select k examples pass budget=k")
    return f


def budget_from(n: int, *, budget: int | None = None, fraction: float | None = None) -> int:
    """Number of examples to select from a pool of n: `budget`, or ceil(fraction * n)."""
    if (budget is None) == (fraction is None):
        raise InputError("give exactly one of budget (a count) or fraction (in (0, 1])")
    if not is_whole(n):
        raise InputError(f"the pool size must be a whole number of examples, got {n!r}")
    if n < 1:
        raise InputError(f"the pool is empty (n = {n}): there is nothing to select; pass a pool of at least one "
                         "example")
    if fraction is not None:
        return max(1, math.ceil(check_fraction(fraction) * n))
    if not is_whole(budget) or budget < 1:
        raise InputError(f"budget must be a positive integer, got {budget}")
    if budget > n:
        raise InputError(f"budget {budget} is larger than the pool of {n} examples; pass budget <= {n}")
    return int(budget)


def rng(seed) -> np.random.Generator:
    """numpy's Generator from a seed: an integer >= 0 or a Generator (passed through)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"a seed must be an integer >= 0 or a numpy.random.Generator, got "
                         f"{type(seed).__name__} {seed!r}; pass e.g. seed=0")
    return np.random.default_rng(int(seed))


def as_key(key_or_seed):
    """A jax PRNG key from a key (typed or raw uint32 [2]) or an integer seed >= 0."""
    import jax

    if isinstance(key_or_seed, (bool, np.bool_)):
        raise InputError(f"a seed must be an integer >= 0 or a jax.random.key, got {key_or_seed!r}")
    if isinstance(key_or_seed, (int, np.integer)):
        if key_or_seed < 0 or key_or_seed >= 2**63:
            raise InputError(f"a seed must be an integer in [0, 2**63), got {key_or_seed}; pass e.g. 0")
        return jax.random.key(int(key_or_seed))
    if isinstance(key_or_seed, jax.Array) and (jax.dtypes.issubdtype(key_or_seed.dtype, jax.dtypes.prng_key)
                                                or (key_or_seed.dtype == np.uint32 and key_or_seed.shape == (2,))):
        return key_or_seed
    raise InputError(f"a seed must be an integer >= 0 or a jax.random.key, got {type(key_or_seed).__name__} "
                     f"{key_or_seed!r}; pass e.g. key=0 or key=jax.random.key(0)")
