"""Influence of training examples on a query set, and its cheap directional-derivative form.

    I(z, Q) = +grad L(Q)^T (C + lambda I)^{-1} grad l(z)       higher: up-weighting z lowers L(Q) more

with L(Q) the mean loss over the query set Q and C the curvature of `jdps.influence.ihvp` (the textbook influence on
the loss is the negative), over the leaves a parameter filter selects. Two phases:

    fitted = fit(task, params, data, ihvp=ihvp.ekfac(1e-3, key=key))      the curvature of `data`, once
    scores(fitted, query, train)        [n_query, n_train]: S_ij = v_i . g_j with v_i = (C + lambda I)^{-1} g(q_i);
                                        the g_j by chunked vmap(grad), S = V G^T chunk by chunk
    query_vectors, train_scores         its two halves: V [n_query, p] once, then S^T [rows, n_query] for any
                                        part of the training set (a score matrix too large for memory is
                                        written block by block: jdps.store)
    query_scores(fitted, query, train)  [n_train]: s_j = v . g_j with v = (C + lambda I)^{-1} grad L(Q) formed
                                        once; s_j = d/de l_j(theta + e v) at e = 0, so ONE forward-mode jax.jvp
                                        of the per-example losses along v scores a whole batch (`jvp_scores`),
                                        with no per-example gradient
    normalize=True                      cosines v . g / (|v| |g|); in query_scores |g_j| comes from ghost norms
                                        (jdps.gradients.factored.grad_norms)
    ihvp=ihvp.identity()                gradient dot products; `tracin` sums them over checkpoints weighted by
                                        their learning rates: sum_t eta_t grad l(z; theta_t) . grad L(Q; theta_t)

Query, train and curvature data are a Dataset, a dict of arrays [N, ...], or a list of batches carrying
'index' (and 'mask', False on padding); results come in ascending global index (0..N-1 for a Dataset or dict).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdps import distributed as dist
from jdps.data import batching
from jdps.gradients import factored as fa
from jdps.influence import ihvp as ih
from jdps.gradients import param_filter as pf
from jdps.errors import InputError
from jdps.gradients.per_example import check_finite_rows, flatten, per_example_grads
from jdps.progress import Batches
from jdps.progress import enabled as progress_enabled
from jdps.task import Task


@dataclass(frozen=True)
class Fitted:
    """What `fit` returns: the task, the parameters, the selected leaves, the iHVP method and its state,
    and the mesh every later step splits its batches over (None: one device)."""

    task: Task
    params: Any
    paths: tuple[str, ...]
    ihvp: ih.IHVP
    state: Any
    mesh: Any = None


def _read(data, batch_size: int, name: str):
    """(first batch, an iterator over every batch) of `data`; raises if it holds no batch."""
    batches = iter(batching.scoring_batches(data, batch_size, name))
    first = next(batches, None)
    if first is None:
        raise InputError(f"the {name} holds no batch; pass at least one example")
    if "index" not in first:
        raise InputError(f"each batch of the {name} needs batch['index'] (global example ids); pass a Dataset or "
                         "a dict of arrays, or batches from jdps.data.batching")
    return first, itertools.chain([first], batches)


def _mask(batch):
    return batch["mask"] if "mask" in batch else jnp.ones(len(batch["index"]), bool)


def _collect(step, data, batch_size: int, name: str, mesh=None):
    """step(batch) -> tree of [B, ...] over every batch, real rows only, sorted by global index; with a
    mesh each batch is split over its 'data' axis and the rows come back to every process."""
    _, batches = _read(data, dist.round_up(batch_size, mesh), name)
    rows, index = [], []
    for batch in batches:
        mask = np.asarray(_mask(batch), bool)
        out = jax.tree.map(dist.to_host, step(dist.on_mesh(batch, mesh)))
        for leaf in jax.tree.leaves(out):
            check_finite_rows(f"scores of the {name}", leaf, batch["index"], mask)
        rows.append(jax.tree.map(lambda a, keep=mask: a[keep], out))
        index.append(np.asarray(batch["index"])[mask])
    index = np.concatenate(index)
    if index.size == 0:
        raise InputError(f"the {name} is empty (every mask is False); pass at least one example")
    order = np.argsort(index, kind="stable")
    return jax.tree.map(lambda *parts: np.concatenate(parts)[order], *rows)


def fit(task, params, data, *, ihvp: ih.IHVP, param_filter=None, batch_size: int = 256, state=None,
        progress=None, mesh=None) -> Fitted:
    """Fit `ihvp` on `data` (the curvature's examples) over the leaves `param_filter` selects.

    state: a state fitted before (e.g. factors from `jdps.influence.curvature.load_factors`): then nothing is refit.
    progress: True (or a label) draws a bar over each pass of K-FAC / EK-FAC over the data (jdps.progress).
    mesh: a `jax.sharding.Mesh` with axis 'data' (`jdps.distributed.make_mesh`): K-FAC / EK-FAC sums, the
    query gradient and every score batch are split over it (batch_size rounded up to a multiple of its
    'data' shards); the results are those of one device, up to float rounding.
    """
    task = fa.as_task(task)
    batch_size = dist.round_up(batch_size, mesh)
    first, _ = _read(data, batch_size, "curvature data")
    paths = tuple(ih.selected_paths(ihvp, task, params, first, param_filter))
    if state is None:
        if ihvp.dense_only and progress_enabled(progress):    # K-FAC / EK-FAC stream the batches: show each pass
            data = Batches(batching.scoring_batches(data, batch_size, "curvature data"), progress, "curvature")
        state = ihvp.fit(task, params, data, paths, batch_size, mesh=mesh)
    if mesh is not None:
        params = dist.put_params(params, mesh)
    return Fitted(task, params, paths, ihvp, state, mesh)


@partial(jax.jit, static_argnums=(0, 1))
def _gradient_sum(task, paths, params, batch):
    """(sum_i mask_i grad l_i over the leaves `paths`, sum_i mask_i) of one batch."""
    def total(s):
        losses = task.loss_fn(pf.put(params, s), batch)
        return (losses * _mask(batch).astype(losses.dtype)).sum()
    return jax.grad(total)(pf.take(params, paths)), _mask(batch).sum()


def query_gradient(fitted: Fitted, query, *, batch_size: int = 256) -> dict[str, jax.Array]:
    """grad L(Q) = (1/|Q|) sum_{q in Q} grad l(q) over the selected leaves, {path: leaf}."""
    _, batches = _read(query, dist.round_up(batch_size, fitted.mesh), "query set")
    total, n = None, 0
    for batch in batches:
        g, count = _gradient_sum(fitted.task, fitted.paths, fitted.params, dist.on_mesh(batch, fitted.mesh))
        total = g if total is None else jax.tree.map(jnp.add, total, g)
        n += int(count)
    if n == 0:
        raise InputError("the query set is empty (every mask is False); pass at least one query example")
    return {p: total[p] / n for p in fitted.paths}


@partial(jax.jit, static_argnums=0)
def _solve(solve, state, v):
    """solve(state, v), compiled once per iHVP method (its `solve`) and shapes."""
    return solve(state, v)


@partial(jax.jit, static_argnums=0)
def _solve_rows(solve, state, g):
    """solve(state, g_i) for every row i of the leaves of g [n, ...]."""
    return jax.vmap(solve, in_axes=(None, 0))(state, g)


def query_vector(fitted: Fitted, query, *, batch_size: int = 256) -> dict[str, jax.Array]:
    """v = (C + lambda I)^{-1} grad L(Q): the query gradient preconditioned once, {path: leaf}."""
    v = _solve(fitted.ihvp.solve, fitted.state, query_gradient(fitted, query, batch_size=batch_size))
    return {p: v[p] for p in fitted.paths}


def jvp_scores(task, params, v: dict[str, jax.Array], batch, *, normalize: bool = False) -> jax.Array:
    """[B]: g_i . v for each example of `batch` (g_i = grad l_i over the leaves of v), by one jax.jvp of the
    per-example losses along v; normalize: the cosine g_i . v / (|g_i| |v|), |g_i| by ghost norms. Pure."""
    task = fa.as_task(task)
    selected = pf.take(params, list(v))
    _, dots = jax.jvp(lambda s: task.loss_fn(pf.put(params, s), batch), (selected,), (v,))
    if not normalize:
        return dots
    norms = fa.grad_norms(task, params, batch, param_filter=tuple(v))
    v_norm = jnp.sqrt(sum(jnp.vdot(a, a) for a in v.values()))
    return dots / jnp.maximum(norms * v_norm, jnp.finfo(dots.dtype).tiny)


_jvp_scores = jax.jit(jvp_scores, static_argnums=0, static_argnames="normalize")


def query_scores(fitted: Fitted, query, train, *, normalize: bool = False, batch_size: int = 256) -> np.ndarray:
    """[n_train]: the influence I(z, Q) of every training example on the whole query set (or its cosine)."""
    v = query_vector(fitted, query, batch_size=batch_size)
    return _collect(lambda batch: _jvp_scores(fitted.task, fitted.params, v, batch, normalize=normalize),
                    train, batch_size, "training set", fitted.mesh)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _gradients(task, paths, chunk_size, params, batch, v=None):
    """Per-example gradients {path: [B, ...]}; with v [n_query, p]: (g_i . v_q [B, n_query], |g_i| [B])."""
    def dots(g):
        g = flatten({p: g[p] for p in paths})
        return g @ v.T, jnp.linalg.norm(g, axis=1)
    return per_example_grads(task.loss_fn, params, batch, param_filter=paths, chunk_size=chunk_size,
                             transform=None if v is None else dots)


def query_vectors(fitted: Fitted, query, *, batch_size: int = 256, chunk_size: int | None = None) -> jax.Array:
    """V [n_query, p]: v_i = (C + lambda I)^{-1} g(q_i) for every query example, flattened over the leaves."""
    task, params, paths = fitted.task, fitted.params, fitted.paths
    g_query = _collect(lambda batch: _gradients(task, paths, chunk_size, params, batch), query, batch_size,
                       "query set", fitted.mesh)
    v = _solve_rows(fitted.ihvp.solve, fitted.state, g_query)
    return flatten({p: v[p] for p in paths})


def train_scores(fitted: Fitted, v, train, *, normalize: bool = False, batch_size: int = 256,
                 chunk_size: int | None = None) -> np.ndarray:
    """[n_train, n_query]: S^T, g_j . v_i for every training example j of `train` and query vector v_i of
    V [n_query, p] (`query_vectors`), or the cosines; rows of any part of the training set at a time."""
    s, g_norm = _collect(lambda batch: _gradients(fitted.task, fitted.paths, chunk_size, fitted.params, batch, v),
                         train, batch_size, "training set", fitted.mesh)
    if normalize:
        v_norm = np.linalg.norm(np.asarray(v), axis=1)
        s = s / np.maximum(g_norm[:, None] * v_norm[None, :], np.finfo(s.dtype).tiny)
    return s


def scores(fitted: Fitted, query, train, *, normalize: bool = False, batch_size: int = 256,
           chunk_size: int | None = None) -> np.ndarray:
    """[n_query, n_train]: the influence I(z_j, {q_i}) of every training example on every query example
    (or the cosine of g_j with v_i); per-example gradients in vmap(grad) chunks of `chunk_size`."""
    v = query_vectors(fitted, query, batch_size=batch_size, chunk_size=chunk_size)
    return train_scores(fitted, v, train, normalize=normalize, batch_size=batch_size, chunk_size=chunk_size).T


def tracin(task, checkpoints: Sequence[Any], learning_rates: Sequence[float], query, train, *,
           param_filter=None, normalize: bool = False, batch_size: int = 256) -> np.ndarray:
    """[n_train]: sum_t eta_t grad l(z; theta_t) . grad L(Q; theta_t) (normalize: cosines) over checkpoints."""
    if len(checkpoints) == 0 or len(checkpoints) != len(learning_rates):
        raise InputError(f"tracin needs one learning rate per checkpoint and at least one checkpoint; got "
                         f"{len(checkpoints)} checkpoints and {len(learning_rates)} learning rates")
    total = 0.0
    for params, lr in zip(checkpoints, learning_rates):
        fitted = fit(task, params, query, ihvp=ih.identity(), param_filter=param_filter, batch_size=batch_size)
        total = total + lr * query_scores(fitted, query, train, normalize=normalize, batch_size=batch_size)
    return total
