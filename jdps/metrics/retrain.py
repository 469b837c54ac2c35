"""The retraining harness: M models trained on M subsets with the one training loop, vmapped over models.

    stacked = train_many(task, params, data, subsets, key=0, epochs=10, batch_size=128, optimizer=adam)
    f = margins(task, stacked, query)                    # [M, Q] correct-class margins of every model

Model m trains on the rows subsets[m] (int [M, k]: every subset of one size, so the models share one
compiled epoch) from its own key fold_in(key, m): epoch e of model m is exactly the epoch e of
`jdps.train.train(task, params_m, data, key=fold_in(key, m), indices=subsets[m], ...)` (the one step,
`jdps.train.train_step`, under the one epoch driver, `jdps.loop.epoch`), run for `models_per_batch` models at
once under jax.vmap. `params` is one pytree (every model starts there) or a list of M pytrees (one init
each). With `checkpoints` (a `jdps.checkpoint.Checkpoints`) the stacked state is saved after every epoch
and a killed run resumes from the latest good epoch to the uninterrupted result.

    leave_one_out(task, theta, data, removed, ...)       theta*(all but r_k) for each removed r_k: full-batch
                                                          steps warm-started at the optimum theta*(all), so
                                                          nothing but the removal differs
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdps import loop
from jdps.data.batching import device_arrays, gather, scoring_indices
from jdps.data.dataset import host_arrays
from jdps.errors import InputError, TrainingDivergedError
from jdps.losses import margin
from jdps.train import DEFAULT_OPTIMIZER, train_step
from jdps.validate import as_key


def stack(trees) -> Any:
    """A list of M pytrees of one structure -> one pytree with a leading axis [M]."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(stacked) -> list:
    """A pytree with a leading axis [M] -> a list of M pytrees."""
    m = jax.tree.leaves(stacked)[0].shape[0]
    return [jax.tree.map(lambda leaf, i=i: leaf[i], stacked) for i in range(m)]


def _check_subsets(subsets, n: int) -> np.ndarray:
    s = np.asarray(subsets)
    if s.ndim != 2 or not np.issubdtype(s.dtype, np.integer) or 0 in s.shape:
        raise InputError(f"subsets must be int [M, k] (M subsets of k example indices, one size for all), got "
                         f"{s.dtype} {s.shape}")
    if s.min() < 0 or s.max() >= n:
        raise InputError(f"subset indices must lie in [0, {n}) (rows of the data), got min {s.min()}, max {s.max()}")
    return s.astype(np.int32)


@partial(jax.jit, static_argnames=("step", "batch_size", "num_steps", "remainder"))
def _epochs(step, keys, states, arrays, subsets, *, batch_size, num_steps, remainder):
    """One epoch of every model of a group: vmap of `jdps.loop.epoch` over (key, state, subset)."""
    def one(key, state, subset):
        return loop.epoch(step, key, state, arrays, subset, batch_size=batch_size, num_steps=num_steps,
                          remainder=remainder)
    return jax.vmap(one, in_axes=(0, (0, 0, None), 0), out_axes=((0, 0, None), 0))(keys, states, subsets)


def train_many(task, params, data, subsets, *, key, epochs: int | None = None, steps: int | None = None,
               batch_size: int, optimizer=None, normalize: str = "batch", remainder: str = "pad",
               models_per_batch: int | None = None, checkpoints=None, progress=None):
    """Train M models, model m on the rows subsets[m] of `data` from key fold_in(key, m), for `epochs`
    epochs or `steps` steps (see the module docstring) -> their parameters stacked [M, ...].

    optimizer: optax (default adam(1e-3)); models_per_batch: models run at once (default all);
    progress(epoch, epochs): after every epoch. Raises TrainingDivergedError naming the model and epoch."""
    host = host_arrays(data, "data")
    n = len(host["x"])
    subsets = _check_subsets(subsets, n)
    m, k = subsets.shape
    b = min(int(batch_size), k)
    plan = loop.schedule(k, b, epochs=epochs, steps=steps, remainder=remainder)
    group = m if models_per_batch is None else max(1, min(int(models_per_batch), m))
    optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    step = train_step(task.loss_fn, optimizer, normalize)
    if isinstance(params, (list, tuple)):
        if len(params) != m:
            raise InputError(f"params holds {len(params)} initial pytrees but there are {m} subsets; pass one "
                             "pytree (shared) or one per subset")
        stacked = stack(params)
    else:
        stacked = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (m, *jnp.shape(leaf))), params)
    opt_state = jax.vmap(optimizer.init)(stacked)
    weights = jnp.ones(n, jnp.float32)
    state = (stacked, opt_state)
    start = 0
    if checkpoints is not None:
        done, state = loop.resume(checkpoints, state, plan.epochs)
        start = done or 0
    arrays, base = device_arrays(host), as_key(key)
    model_keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(m))
    padded = -(-m // group) * group                       # the last group padded with the last model
    rows = np.minimum(np.arange(padded), m - 1)
    for e in range(start, plan.epochs):
        cut = plan.last_steps if e == plan.epochs - 1 and plan.last_steps < plan.steps_per_epoch else None
        epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(model_keys, e)
        parts, losses = [], []
        for g in range(0, padded, group):
            idx = rows[g:g + group]
            sub_state = jax.tree.map(lambda leaf, rows_=idx: leaf[rows_], state)
            (p, o, _), loss = _epochs(step, epoch_keys[idx], (*sub_state, weights), arrays, jnp.asarray(subsets[idx]),
                                      batch_size=b, num_steps=cut, remainder=remainder)
            parts.append((p, o))
            losses.append(np.asarray(loss))
        state = jax.tree.map(lambda *leaves: jnp.concatenate(leaves)[:m], *parts)
        loss = np.concatenate(losses)[:m]
        bad = ~np.isfinite(loss).all(axis=1)
        if bad.any():
            model = int(np.argmax(bad))
            raise TrainingDivergedError(f"model {model} (of {m}) diverged at epoch {e + 1}: its loss became NaN or Inf; "
                                        "lower the learning rate, or clip gradients, and check the inputs are scaled")
        if checkpoints is not None:
            checkpoints.save(e + 1, state)
        if progress is not None:
            progress(e + 1, plan.epochs)
    return state[0]


@partial(jax.jit, static_argnames=("task",))
def _margins(task, stacked, arrays, grid):
    def one(params):
        def rows(_, index):
            batch = gather(arrays, index)
            return None, margin(task.model.apply(params, batch["x"]), batch["y"])
        return jax.lax.scan(rows, None, grid)[1].reshape(-1)
    return jax.lax.map(one, stacked)


def margins(task, params, data, *, stacked: bool = True, batch_size: int = 1024) -> np.ndarray:
    """The correct-class margin log p_y - log(1 - p_y) on every example of `data` (x and labels y): [M, Q] for
    models stacked [M, ...] (`train_many`'s), [Q] for one pytree (stacked=False)."""
    if task.model is None:
        raise InputError("margins need the model's logits: build the task with Task.from_model(model, output_loss)")
    host = host_arrays(data, "data")
    if "y" not in host:
        raise InputError("margins need the labels y of the query examples")
    n = len(host["x"])
    models = params if stacked else jax.tree.map(lambda leaf: jnp.asarray(leaf)[None], params)
    out = np.asarray(_margins(task, models, device_arrays(host), jnp.asarray(scoring_indices(n, min(batch_size, n)))))
    return out[:, :n] if stacked else out[0, :n]


def loo_subsets(n: int, removed) -> np.ndarray:
    """int32 [K, n - 1]: row k holds every example index but removed[k]."""
    removed = np.asarray(removed)
    if removed.ndim != 1 or len(np.unique(removed)) != len(removed) or removed.min() < 0 or removed.max() >= n:
        raise InputError(f"removed must be distinct example indices in [0, {n}), got {removed[:10]}")
    full = np.arange(n)
    return np.stack([np.delete(full, r) for r in removed]).astype(np.int32)


def leave_one_out(task, theta, data, removed, *, key, epochs: int, optimizer, models_per_batch: int | None = None,
                  checkpoints=None):
    """theta*(all but removed[k]) for each removed example, stacked [K, ...]: `epochs` full-batch steps (one step
    an epoch, so no minibatch noise) warm-started at `theta`, the optimum on all of `data`, so nothing but the
    removal differs. Meant for convex, regularised models trained to convergence (e.g. softmax regression
    under optax.chain(optax.add_decayed_weights(l2), optax.sgd(lr, momentum=0.9, nesterov=True)))."""
    host = host_arrays(data, "data")
    n = len(host["x"])
    return train_many(task, theta, host, loo_subsets(n, removed), key=key, epochs=epochs, batch_size=n - 1,
                      optimizer=optimizer, models_per_batch=models_per_batch, checkpoints=checkpoints)
