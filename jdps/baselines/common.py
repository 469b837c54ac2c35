"""What every baseline shares: its result, the budget of steps, and the host arrays of Dt and Dm.

Every baseline trains the same model from the same initial parameters for the same number of
optimizer steps as BADS: `epochs * (N // b)` for N training examples (Dt) and batch size b (a batch
size above N is cut to N). A baseline whose training set has another size S takes
`round(steps / (S // b))` passes over it (at least one), so its step count is within half a pass of
the budget; the steps it took are in `info["steps"]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from jdps.data.dataset import Dataset
from jdps.errors import InputError


class BaselineResult(NamedTuple):
    """The trained `params`, one `weights` value per training example [N] (what each baseline gave
    that example; see its `run_*`), the `history` of training losses and an `info` dict (method,
    steps taken, and what the method reports)."""

    params: Any
    weights: np.ndarray
    history: dict[str, np.ndarray]
    info: dict[str, Any]


def host_arrays(data, name: str) -> dict[str, np.ndarray]:
    """The numeric per-example arrays of a `Dataset` or dict (x, y, numeric columns) -> {name: [N, ...]}."""
    if isinstance(data, Dataset):
        arrays = data.arrays()
    elif isinstance(data, Mapping):
        arrays = dict(data)
    else:
        raise InputError(f"{name} must be a jdps Dataset or a dict of per-example arrays, got {type(data).__name__}")
    if "x" not in arrays:
        raise InputError(f"{name} has no 'x'; pass a dict with at least an 'x' array (and 'y' for labels)")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    arrays = {k: v for k, v in arrays.items() if v.dtype.kind in "biuf"}
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"{name} has mismatched lengths {lengths}: every per-example array needs one row per example")
    if lengths["x"] == 0:
        raise InputError(f"{name} is empty; pass at least one example")
    return arrays


def check_alike(train: dict, meta: dict) -> list[str]:
    """The names of the arrays Dt and Dm both hold, each with one per-example shape and kind of dtype."""
    keys = [k for k in train if k in meta]
    for k in keys:
        if train[k].shape[1:] != meta[k].shape[1:]:
            raise InputError(f"train '{k}' has per-example shape {train[k].shape[1:]} but meta '{k}' has "
                             f"{meta[k].shape[1:]}; the meta set must look like the training set")
        if (train[k].dtype.kind in "f") != (meta[k].dtype.kind in "f"):
            raise InputError(f"train '{k}' is {train[k].dtype} but meta '{k}' is {meta[k].dtype}; "
                             "give both the same kind of dtype (e.g. integer labels in both)")
    return keys


def concat(train: dict, meta: dict) -> dict[str, np.ndarray]:
    """Rows of Dt (0..N-1) then of Dm (N..N+M-1), for the arrays both hold -> {name: [N + M, ...]}."""
    keys = check_alike(train, meta)
    return {k: np.concatenate([train[k], meta[k]]).astype(np.result_type(train[k], meta[k])) for k in keys}


def step_budget(n_train: int, epochs: int, batch_size: int) -> int:
    """epochs * (N // b): the optimizer steps BADS takes on N training examples."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")
    return int(epochs) * (n_train // min(int(batch_size), n_train))


def passes(steps: int, size: int, batch_size: int) -> int:
    """Passes over a training set of `size` examples that come nearest to `steps` steps (at least 1)."""
    return max(1, round(steps / (size // min(int(batch_size), size))))


def as_key(key) -> jax.Array:
    """A jax key from a key or an integer seed."""
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    return key
