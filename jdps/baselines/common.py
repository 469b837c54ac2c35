"""What every baseline shares: its result, the budget of steps, and the host arrays of Dt and Dm.

Every baseline trains the same model from the same initial parameters for the same number of
optimizer steps as BADS: `epochs * ceil(N / b)` for N training examples (Dt) and batch size b (the last
batch of an epoch padded, `jdps.loop`; a batch size above N is cut to N). A baseline whose training set
has another size S takes `round(steps / ceil(S / b))` passes over it (at least one), so its step count is
within half a pass of the budget; the steps it took are in `info["steps"]`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jdps.errors import InputError


class BaselineResult(NamedTuple):
    """The trained `params`, one `weights` value per training example [N] (what each baseline gave
    that example; see its `run_*`), the `history` of training losses and an `info` dict (method,
    steps taken, and what the method reports)."""

    params: Any
    weights: np.ndarray
    history: dict[str, np.ndarray]
    info: dict[str, Any]


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
    """epochs * ceil(N / b): the optimizer steps BADS takes on N training examples."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value}")
    return int(epochs) * -(-n_train // min(int(batch_size), n_train))


def passes(steps: int, size: int, batch_size: int) -> int:
    """Passes over a training set of `size` examples that come nearest to `steps` steps (at least 1)."""
    return max(1, round(steps / -(-size // min(int(batch_size), size))))


