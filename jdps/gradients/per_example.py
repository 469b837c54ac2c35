"""Per-example gradients by vmap(grad) on any per-example loss, in chunks, for the selected leaves.

For `loss_fn(params, batch) -> l [B]` (batch: a dict of arrays with leading axis B) and the leaves S picked
by a parameter filter,

    g_i = d l_i / d theta_S,   as {path: [B, *leaf.shape]}  (or [B, p] by `flatten`, p = sum of leaf sizes),

each example run as a batch of one, the unselected leaves closed over (no gradient is formed for them).
With `chunk_size` c the batch is cut into ceil(B / c) chunks of c (the last padded with copies of the
batch's last row), looped over with `lax.map`, so memory is O(c p) and one shape is compiled; `transform`
maps each chunk's gradients to what is kept (a projection, a norm) so [B, p] is never held.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdps.gradients import param_filter as pf
from jdps.errors import InputError

Batch = dict[str, Any]


def flatten(grads: dict[str, jax.Array]) -> jax.Array:
    """{path: [B, ...]} -> [B, p], leaves concatenated in dict order."""
    return jnp.concatenate([g.reshape(g.shape[0], -1) for g in grads.values()], axis=1)


def batch_size_of(batch: Batch) -> int:
    sizes = {k: np.shape(v)[0] if np.ndim(v) else None for k, v in batch.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1:
        raise InputError(f"every array of a batch needs the same leading (example) axis; got {sizes}")
    return next(iter(sizes.values()))


def per_example_grads(loss_fn: Callable[[Any, Batch], jax.Array], params, batch: Batch, *,
                      param_filter=None, chunk_size: int | None = None,
                      transform: Callable[[dict[str, jax.Array]], Any] | None = None):
    """Per-example gradients {path: [B, ...]} of the selected leaves (or `transform` of them, per chunk).

    `transform(grads_chunk) -> tree with leading axis c` is applied to each chunk's gradients; the
    results are stitched back to leading axis B. Jit-compatible (the filter is resolved while tracing).
    """
    paths = pf.select(param_filter, params, loss_fn=loss_fn, batch=batch)
    selected = pf.take(params, paths)

    def one(example):
        single = jax.tree.map(lambda a: a[None], example)
        return jax.grad(lambda s: loss_fn(pf.put(params, s), single)[0])(selected)

    def chunk_fn(chunk):
        grads = jax.vmap(one)(chunk)
        return grads if transform is None else transform(grads)

    b = batch_size_of(batch)
    if chunk_size is None or chunk_size >= b:
        return chunk_fn(batch)
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    n_chunks = -(-b // chunk_size)
    rows = jnp.minimum(jnp.arange(n_chunks * chunk_size), b - 1)  # pad with copies of the last row
    chunks = jax.tree.map(lambda a: a[rows].reshape(n_chunks, chunk_size, *a.shape[1:]), batch)
    out = jax.lax.map(chunk_fn, chunks)
    return jax.tree.map(lambda a: a.reshape(n_chunks * chunk_size, *a.shape[2:])[:b], out)


def check_finite_rows(name: str, values, index, mask=None) -> None:
    """Raise if any kept row of `values` [B, ...] holds NaN or Inf, naming those examples' indices."""
    v = np.asarray(values)
    bad = ~np.isfinite(v.reshape(len(v), -1)).all(axis=1)
    if mask is not None:
        bad &= np.asarray(mask, bool)
    if bad.any():
        idx = np.asarray(index)[bad]
        raise InputError(
            f"{name} are NaN or Inf for {len(idx)} example(s), index {idx[:10].tolist()}"
            f"{' ...' if len(idx) > 10 else ''}: inspect those examples (inputs, labels) and the parameters "
            "(a diverged checkpoint), or drop those examples from the pool")
