"""Projected per-example gradients of a whole pool, in global-index order.

phi_i = P^T g_i for every example i, g_i the gradient of l_i w.r.t. the leaves a parameter filter selects:

    method='vmap'      g_i by chunked vmap(grad), then the blockwise dense projection [p, d]
                       (projection.py): phi_i [d];
    method='factored'  per selected Dense layer vec(P_in^T g_i P_out) from the layer taps (factored.py),
                       k_in = k_out = k = floor(sqrt(d / L)) for L layers: phi_i [L k^2], L k^2 <= d.

Both preserve inner products in expectation. The pool is scored in fixed-shape batches (padded, masked),
each jit-compiled once; the projection depends only on (key, the selected shapes, d), never on
`batch_size` or `chunk_size`.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from functools import partial

import jax
import numpy as np

from jdps import distributed as dist
from jdps.gradients import factored as fa
from jdps.gradients import param_filter as pf
from jdps.data.batching import scoring_batches
from jdps.progress import bar as progress_bar
from jdps.errors import InputError
from jdps.gradients.per_example import check_finite_rows, flatten, per_example_grads
from jdps.gradients.projection import check_kind, project
from jdps.validate import as_key

METHODS = ("vmap", "factored")
CHUNK_FLOATS = 1 << 26  # default vmap(grad) chunk: at most 64M gradient floats (256 MB) at once


@dataclass(frozen=True)
class Features:
    """features [N, d] (row r belongs to example index[r]), index [N] ascending, how they were made."""

    features: np.ndarray
    index: np.ndarray
    method: str
    paths: tuple[str, ...]


@partial(jax.jit, static_argnames=("task", "paths", "chunk_size", "d", "kind"))
def _vmap_step(params, batch, key, *, task, paths, chunk_size, d, kind):
    """[B, d]: the batch's per-example gradients (vmap(grad) in chunks), projected with `key`."""
    return per_example_grads(task.loss_fn, params, batch, param_filter=paths, chunk_size=chunk_size,
                             transform=lambda g: project(flatten(g), key, d, kind))


@partial(jax.jit, static_argnames=("task", "paths", "k", "kind"))
def _factored_step(params, batch, key, *, task, paths, k, kind):
    """[B, L k^2]: the batch's factored (per-layer P_in^T g P_out) projections with `key`."""
    return fa.factored_features(task, params, batch, key=key, k=k, param_filter=paths, kind=kind)


def per_example_features(task, params, data, *, d: int, key, method: str = "vmap", param_filter=None,
                         kind: str = "rademacher", batch_size: int = 256,
                         chunk_size: int | None = None, mesh=None, progress=None) -> Features:
    """Projected per-example gradient features of every example of `data`, sorted by global index.

    task: a `Task` (or a bare loss_fn(params, batch) -> [B]); data: a `Dataset`, a dict of arrays [N, ...]
    (cut into scoring batches of `batch_size`), or an iterable of batches that carry `index` (and `mask`,
    False on padding), e.g. `jdps.data.batching.stream(source, B)`. key: a `jax.random` key or an integer seed;
    d: the feature width; chunk_size: examples per vmap(grad) chunk (method 'vmap'; default: as many as
    keep a chunk's gradients within CHUNK_FLOATS). A task without a model view cannot use 'factored'
    and falls back to 'vmap' with a warning. progress: True (or a label) draws a bar over the batches
    (jdps.progress). mesh: a `jax.sharding.Mesh` with axis 'data' (and 'model'):
    each batch (its size rounded up to a multiple of the 'data' shards) is split over 'data', every device
    computing its own rows' features (`jdps.distributed`); the rows come back to every process.
    """
    task = fa.as_task(task)
    key = as_key(key)
    check_kind(kind)
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; pass one of {METHODS}")
    if int(d) != d or d < 1:
        raise InputError(f"d must be a positive integer, got {d!r}")
    if method == "factored" and task.model is None:
        warnings.warn("method='factored' needs a task built with Task.from_model(model, output_loss); "
                      "this one has only a loss_fn, so features come from vmap(grad) and a dense projection",
                      stacklevel=2)
        method = "vmap"

    batched = scoring_batches(data, dist.round_up(batch_size, mesh))
    batches = iter(batched)
    first = next(batches, None)
    if first is None:
        raise InputError("data holds no batch; pass at least one example")
    if "index" not in first:
        raise InputError("each batch needs batch['index'] (global example ids); pass a Dataset or a dict of "
                         "arrays, or batches from jdps.data.batching")

    if method == "vmap":
        paths = pf.select(param_filter, params, loss_fn=task.loss_fn, batch=first)
        if chunk_size is None:
            p = sum(int(np.prod(np.shape(leaf))) for leaf in pf.take(params, paths).values())
            chunk_size = max(1, CHUNK_FLOATS // p)

        step = partial(_vmap_step, task=task, paths=tuple(paths), chunk_size=chunk_size, d=d, kind=kind)
    else:
        paths, dense, _ = fa.dense_selection(task, params, first, param_filter, "per_example_features")
        k = math.isqrt(d // len(dense))
        if k < 1:
            raise InputError(f"d={d} is smaller than the {len(dense)} selected Dense layers; factored features "
                             f"need d >= {len(dense)} (each layer gives k x k features, k = floor(sqrt(d / L)))")
        step = partial(_factored_step, task=task, paths=tuple(paths), k=k, kind=kind)

    rows, index = [], []
    device_params = params if mesh is None else dist.put_params(params, mesh)
    total = len(batched) if hasattr(batched, "__len__") else None
    shown = progress_bar(progress, total=total, desc="per-example features", unit="batch")
    for batch in itertools.chain([first], batches):
        phi = dist.to_host(step(device_params, dist.on_mesh(batch, mesh), key))
        shown.update(1)
        idx = np.asarray(batch["index"])
        mask = np.asarray(batch["mask"], bool) if "mask" in batch else np.ones(len(idx), bool)
        check_finite_rows("per-example gradients (projected)", phi, idx, mask)
        rows.append(phi[mask])
        index.append(idx[mask])
    shown.close()
    index = np.concatenate(index)
    order = np.argsort(index, kind="stable")
    return Features(np.concatenate(rows)[order], index[order], method, tuple(paths))
