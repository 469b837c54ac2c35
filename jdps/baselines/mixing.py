"""The mixing baselines: train on a subset of Dt together with copies of the meta set Dm.

With N training and M meta examples, rows 0..N-1 of the mix are Dt and rows N..N+M-1 are Dm:

    uniform    all of Dt + Dm once (the paper's "mixing")
    meta_only  Dm once, no Dt
    dup_meta   all of Dt + Dm k times, k = dup_factor; by default k = max(1, round(N / M)), so the
               meta copies are about as many as the training examples: about half of the mix, and of
               every batch in expectation
    random     k examples of Dt drawn without replacement from the key (k = budget, or ceil(fraction N):
               pass the number BADS keeps) + Dm once
    oracle     the clean examples of Dt (`clean` [N] bool, or the data's `corrupted` column) + Dm once;
               it needs the truth, so it is for experiments only

Each is trained by `jdps.train.train` (unweighted, minibatches drawn from the mix with its duplicates)
for the budget of steps of `jdps.baselines.common`. The result's weights [N] are 1 for the Dt
examples in the mix and 0 for the rest.
"""

from __future__ import annotations

import jax
import numpy as np
import optax

from jdps import loop
from jdps.baselines.common import BaselineResult, concat, passes, step_budget
from jdps.data.dataset import Dataset, host_arrays
from jdps.errors import InputError
from jdps.selection import random_subset
from jdps.task import Task
from jdps.train import train as train_loop
from jdps.validate import as_key

METHODS = ("uniform", "meta_only", "dup_meta", "random", "oracle")


def training_set(name: str, n_train: int, n_meta: int, *, key=None, budget: int | None = None,
                 fraction: float | None = None, clean=None, dup_factor: int | None = None) -> np.ndarray:
    """The rows of the mix [Dt; Dm] that `name` trains on -> int [S] (Dm rows are N..N+M-1; dup_meta
    repeats them). `key` draws the random subset; see the module docstring for each method."""
    meta = np.arange(n_train, n_train + n_meta)
    if name == "uniform":
        return np.arange(n_train + n_meta)
    if name == "meta_only":
        return meta
    if name == "dup_meta":
        k = max(1, round(n_train / n_meta)) if dup_factor is None else dup_factor
        if int(k) != k or k < 1:
            raise InputError(f"dup_factor must be a positive integer (copies of the meta set), got {dup_factor}")
        return np.concatenate([np.arange(n_train), np.tile(meta, int(k))])
    if name == "random":
        if budget is None and fraction is None:
            raise InputError("random needs the size of its subset: pass budget=k (e.g. the number of examples "
                             "BADS keeps) or fraction=f")
        return np.concatenate([random_subset(key, n_train, budget=budget, fraction=fraction), meta])
    if name == "oracle":
        if clean is None:
            raise InputError("oracle needs the truth: pass clean (bool [N], True for clean examples), or a "
                             "training Dataset with a 'corrupted' column")
        clean = np.asarray(clean)
        if clean.shape != (n_train,) or clean.dtype != bool:
            raise InputError(f"clean must be a bool array with one entry per training example ({n_train},), got "
                             f"{clean.dtype} {clean.shape}")
        if not clean.any():
            raise InputError("clean marks no training example as clean; the oracle would train on Dm alone "
                             "(that is meta_only)")
        return np.concatenate([np.flatnonzero(clean), meta])
    raise InputError(f"{name!r} is not a mixing baseline; choose one of {METHODS}")


def run_mixing(name: str, task: Task, params, train, meta, *, key, epochs: int, batch_size: int,
               optimizer: optax.GradientTransformation | None = None, budget: int | None = None,
               fraction: float | None = None, clean=None, dup_factor: int | None = None,
               checkpoints=None, on_epoch=None) -> BaselineResult:
    """Train `params` on the `training_set` of `name` for epochs * ceil(N / batch_size) steps (to within half
    a pass over the mix). `key`: a jax key or an integer seed (the random subset and the batch order);
    optimizer: optax, default adam(1e-3). info: method, steps, passes, size (rows of the mix, with
    duplicates), train_examples (distinct Dt examples), meta_copies."""
    dt, dm = host_arrays(train, "train"), host_arrays(meta, "meta")
    n, m = len(dt["x"]), len(dm["x"])
    if clean is None and name == "oracle" and isinstance(train, Dataset) and "corrupted" in train.columns:
        clean = ~np.asarray(train.columns["corrupted"], bool)
    k_select, k_train = jax.random.split(as_key(key))
    rows = training_set(name, n, m, key=k_select, budget=budget, fraction=fraction, clean=clean,
                        dup_factor=dup_factor)
    steps = step_budget(n, epochs, batch_size)
    p = passes(steps, len(rows), batch_size)
    result = train_loop(task, params, concat(dt, dm), key=k_train, epochs=p, batch_size=batch_size,
                        optimizer=optimizer, indices=rows, checkpoints=checkpoints, on_epoch=on_epoch)
    weights = np.zeros(n, np.float32)
    weights[rows[rows < n]] = 1.0
    run_steps = loop.schedule(len(rows), min(int(batch_size), len(rows)), epochs=p, remainder="pad").steps
    info = {"method": name, "steps": run_steps, "passes": p, "size": len(rows),
            "train_examples": int(weights.sum()), "meta_copies": int((rows >= n).sum()) // m}
    return BaselineResult(result.params, weights, dict(result.history), info)
