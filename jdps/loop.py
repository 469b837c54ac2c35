"""The one epoch driver: plain training, BADS and the bi-level baselines all run through `run`.

A step is a pure function `step(key, state, batch, meta_batch) -> (state, info)`; `batch` is
`jdps.data.batching.gather`'s dict (per-example arrays [B, ...], `index` [B] global rows, `mask` [B]),
`meta_batch` the same for `meta_batch_size` distinct meta examples (None without a meta set), and `info`
a pytree of per-step values. An epoch is one jit-compiled `lax.scan` over the batches of the rows
`subset` [n] of `arrays`, every random draw from the epoch's key (so a run resumed at epoch e goes on
exactly as an uninterrupted one):

    k_order, k_steps = split(fold_in(key, e))
    order    epoch_indices(k_order, n, B, remainder): a permutation of the subset cut into batches
    step s   k_meta, k_step = split(split(k_steps, S)[s]); meta rows choice(k_meta, M, (B_m,), replace=False)

remainder="pad" (the default) takes ceil(n / B) batches, the last padded with masked rows, so every example
is visited every epoch; a step scales its estimators by the batch's valid count (mask.sum()).
remainder="drop" takes n // B full batches (the last partial batch is dropped).

The run length is `epochs` E or `steps` S (ceil(S / steps per epoch) epochs, the last one cut short).
Between compiled epochs, on the host (never inside the scan, so they cost no step time):

    check(info) -> bool [steps]       a step is good when every float leaf of its info is finite and
                                      every bool leaf True (the default); the first bad step raises
                                      `diverged(epoch, step, global_step)`'s exception
    checkpoint(epoch, state)          the checkpoint hook, after every epoch (epoch = epochs done);
                                      resume with `start_epoch` and the restored state
    checkpoints                       a `jdps.checkpoint.Checkpoints`: the run restores its latest good
                                      step (epochs done) and saves the state after every epoch, so the
                                      same call after a kill resumes to the uninterrupted result
    progress(epoch, epochs, step, info)   after every epoch, with that epoch's per-step info; or True /
                                      a label: an epoch bar with rate and ETA (jdps.progress)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jdps.data.batching import epoch_indices, gather
from jdps.errors import InputError, TrainingDivergedError
from jdps.progress import epochs as progress_hook
from jdps.validate import as_key, positive_int

REMAINDERS = ("drop", "pad")


class Schedule(NamedTuple):
    """How a run is cut: `epochs` compiled epochs of `steps_per_epoch` steps, the last of `last_steps`."""

    epochs: int
    steps_per_epoch: int
    last_steps: int

    @property
    def steps(self) -> int:
        return (self.epochs - 1) * self.steps_per_epoch + self.last_steps


def steps_per_epoch(n: int, batch_size: int, remainder: str = "pad") -> int:
    """Batches in one epoch over n examples: n // B (drop) or ceil(n / B) (pad)."""
    if remainder not in REMAINDERS:
        raise InputError(f"remainder must be one of {REMAINDERS}, got {remainder!r}")
    return n // batch_size if remainder == "drop" else -(-n // batch_size)


def schedule(n: int, batch_size: int, *, epochs: int | None = None, steps: int | None = None,
             remainder: str = "pad") -> Schedule:
    """The epochs of a run of `epochs` epochs or `steps` steps (give exactly one) over n examples."""
    if (epochs is None) == (steps is None):
        raise InputError("give the run length as exactly one of epochs or steps "
                         f"(got epochs={epochs}, steps={steps})")
    b = positive_int("batch_size", batch_size)
    if n < 1:
        raise InputError("the training set is empty; a run needs at least one example")
    if b > n:
        raise InputError(f"batch_size {b} is larger than the {n} training examples; pass batch_size <= {n}")
    per_epoch = steps_per_epoch(n, b, remainder)
    if epochs is not None:
        e = positive_int("epochs", epochs)
        return Schedule(e, per_epoch, per_epoch)
    s = positive_int("steps", steps)
    e = math.ceil(s / per_epoch)
    return Schedule(e, per_epoch, s - (e - 1) * per_epoch)


def all_good(info) -> np.ndarray:
    """bool [steps]: every float leaf finite and every bool leaf True, per step (leading axis)."""
    good = None
    for leaf in jax.tree.leaves(info):
        a = np.asarray(leaf)
        if a.dtype == bool:
            ok = a.reshape(len(a), -1).all(axis=1)
        elif np.issubdtype(a.dtype, np.floating):
            ok = np.isfinite(a.reshape(len(a), -1)).all(axis=1)
        else:
            continue
        good = ok if good is None else good & ok
    return good


def _diverged(epoch: int, step: int, global_step: int) -> Exception:
    return TrainingDivergedError(
        f"the run diverged at epoch {epoch}, step {step} (step {global_step} of the run): a loss or a state "
        "variable became NaN or Inf; lower the learning rate, clip gradients, and check the inputs are scaled")


@partial(jax.jit, static_argnames=("step", "batch_size", "meta_batch_size", "num_steps", "remainder",
                                   "batch_sharding"))
def epoch(step: Callable, key, state, arrays, subset, meta_arrays=None, *, batch_size: int,
          meta_batch_size: int | None = None, num_steps: int | None = None, remainder: str = "pad",
          batch_sharding=None):
    """One compiled epoch of `step` over the rows `subset` int32 [n] of `arrays` (see the module
    docstring), `num_steps` of its batches (default all) -> (state, info stacked [steps, ...])."""
    n, n_rows = subset.shape[0], len(next(iter(arrays.values())))
    k_order, k_steps = jax.random.split(key)
    grid = epoch_indices(k_order, n, batch_size, remainder=remainder)
    if num_steps is not None:
        grid = grid[:num_steps]

    def body(s, inputs):
        positions, k = inputs
        k_meta, k_step = jax.random.split(k)
        rows = jnp.where(positions < n, subset[jnp.minimum(positions, n - 1)], n_rows)  # padding -> masked
        batch = gather(arrays, rows)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        meta_batch = None
        if meta_arrays is not None:
            m = len(next(iter(meta_arrays.values())))
            meta_batch = gather(meta_arrays, jax.random.choice(k_meta, m, (meta_batch_size,), replace=False))
        return step(k_step, s, batch, meta_batch)

    return jax.lax.scan(body, state, (grid, jax.random.split(k_steps, grid.shape[0])))


def _lengths(arrays: Mapping, name: str) -> int:
    if not isinstance(arrays, Mapping) or not arrays:
        raise InputError(f"{name} must be a non-empty dict of per-example arrays (jdps.data.batching.device_arrays)")
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"{name}: mismatched lengths {lengths}; every per-example array needs one row per example")
    return next(iter(lengths.values()))


def resume(checkpoints, state, epochs: int):
    """(epochs done or None, state) from the latest save in `checkpoints` (a `jdps.checkpoint.Checkpoints`);
    a save of more than `epochs` epochs is refused, naming the fix."""
    done, state = checkpoints.restore_latest(state)
    if done is not None and done > epochs:
        raise InputError(f"{checkpoints.directory} holds a run of {done} epochs, more than the {epochs} asked; "
                         "pass the run length it was made with, or another directory")
    return done, state


def run(step: Callable, state, arrays: Mapping, *, key, batch_size: int, epochs: int | None = None,
        steps: int | None = None, subset=None, meta_arrays: Mapping | None = None,
        meta_batch_size: int | None = None, remainder: str = "pad", batch_sharding=None, start_epoch: int = 0,
        check: Callable = all_good, diverged: Callable[[int, int, int], Exception] = _diverged,
        checkpoint: Callable[[int, Any], None] | None = None,
        progress: Callable[[int, int, int, Any], None] | bool | str | None = None,
        checkpoints=None) -> tuple[Any, Any]:
    """Run `step` for `epochs` epochs or `steps` steps over the rows `subset` (default all) of `arrays`
    (device arrays [N, ...]); see the module docstring. key: a jax key or an integer seed. Returns the
    state and the per-step info of the epochs run here, stacked [steps, ...] (numpy)."""
    n_rows = _lengths(arrays, "arrays")
    subset = jnp.arange(n_rows, dtype=jnp.int32) if subset is None else jnp.asarray(subset, jnp.int32)
    plan = schedule(int(subset.shape[0]), batch_size, epochs=epochs, steps=steps, remainder=remainder)
    if meta_arrays is not None:
        m = _lengths(meta_arrays, "meta_arrays")
        if meta_batch_size is None or int(meta_batch_size) != meta_batch_size or not 1 <= meta_batch_size <= m:
            raise InputError(f"meta_batch_size must be an integer in [1, {m}] (the meta set's size), "
                             f"got {meta_batch_size}")
        meta_batch_size = int(meta_batch_size)
    if int(start_epoch) != start_epoch or not 0 <= start_epoch <= plan.epochs:
        raise InputError(f"start_epoch must be an integer in [0, {plan.epochs}], got {start_epoch}")
    key = as_key(key)
    progress = progress_hook(progress)
    if checkpoints is not None:
        done, state = resume(checkpoints, state, plan.epochs)
        start_epoch = start_epoch if done is None else done
        user_hook = checkpoint

        def checkpoint(epoch, state):
            checkpoints.save(epoch, state)
            if user_hook is not None:
                user_hook(epoch, state)
    infos = []
    for e in range(int(start_epoch), plan.epochs):
        cut = plan.last_steps if e == plan.epochs - 1 and plan.last_steps < plan.steps_per_epoch else None
        state, info = epoch(step, jax.random.fold_in(key, e), state, arrays, subset, meta_arrays,
                            batch_size=int(batch_size), meta_batch_size=meta_batch_size, num_steps=cut,
                            remainder=remainder, batch_sharding=batch_sharding)
        info = jax.tree.map(np.asarray, info)
        good = check(info)
        if good is not None and not good.all():
            bad = int(np.argmin(good))
            raise diverged(e + 1, bad + 1, e * plan.steps_per_epoch + bad + 1)
        infos.append(info)
        if checkpoint is not None:
            checkpoint(e + 1, state)
        if progress is not None:
            progress(e + 1, plan.epochs, e * plan.steps_per_epoch + (cut or plan.steps_per_epoch), info)
    stacked = jax.tree.map(lambda *xs: np.concatenate(xs), *infos) if infos else None
    return state, stacked
