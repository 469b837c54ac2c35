"""k-means clustering of a feature matrix x [N, F] (e.g. MiniLM embeddings) in JAX.

Minimises the inertia  sum_i min_c |x_i - mu_c|^2  over K centres mu [K, F]:

    init      greedy k-means++: the first centre uniformly; each next one the best of L = 2 + floor(ln K)
              candidates drawn with probability D(x)^2 / sum D^2 (D: distance to the nearest chosen
              centre), best meaning the smallest resulting sum D^2 (as scikit-learn does)
    Lloyd     labels_i = argmin_c |x_i - mu_c|^2, then mu_c = mean of its points, in a lax.while_loop until
              the squared centre shift sum_c |mu_c' - mu_c|^2 <= tol * mean_f var(x_f) (scikit-learn's
              tolerance) or `max_iter` steps
    empty     a centre left with no point is re-seeded at the point farthest from its own centre (the j-th
              empty centre at the j-th farthest point); the next assignment moves that point over
    restarts  `restarts` independent runs from keys split off `key` (vmapped); the lowest inertia wins,
              a tie going to the first run

K, restarts and max_iter are static: one compilation per (N, F, K). Distances use
|x|^2 - 2 x.mu + |mu|^2, clipped at 0; memory O(restarts N K).
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jdps.errors import InputError
from jdps.validate import as_key, check_finite, is_whole


class KMeans(NamedTuple):
    """centroids [K, F], labels int32 [N] (the nearest centroid), inertia [] and the Lloyd steps taken []."""

    centroids: jax.Array
    labels: jax.Array
    inertia: jax.Array
    iterations: jax.Array


def sq_distances(x, centroids) -> jax.Array:
    """|x_i - mu_c|^2: x [N, F], centroids [K, F] -> [N, K], >= 0."""
    cross = jnp.dot(x, centroids.T, precision=jax.lax.Precision.HIGHEST)
    d2 = (x * x).sum(1)[:, None] - 2.0 * cross + (centroids * centroids).sum(1)[None, :]
    return jnp.maximum(d2, 0.0)


def assign(x, centroids) -> tuple[jax.Array, jax.Array]:
    """(labels int32 [N], squared distance of each point to its nearest centroid [N])."""
    d2 = sq_distances(x, centroids)
    labels = jnp.argmin(d2, axis=1).astype(jnp.int32)
    return labels, jnp.take_along_axis(d2, labels[:, None], axis=1)[:, 0]


def kmeans_plusplus(key, x, k: int) -> jax.Array:
    """Greedy k-means++ seeds [K, F] (see the module docstring)."""
    x = jnp.asarray(x)
    n = x.shape[0]
    trials = 2 + int(math.log(k))
    k_first, k_rest = jax.random.split(key)
    first = x[jax.random.randint(k_first, (), 0, n)]
    closest = sq_distances(x, first[None])[:, 0]                                  # D^2 [N]

    def step(c, carry):
        centres, closest = carry
        cum = jnp.cumsum(closest)
        u = jax.random.uniform(jax.random.fold_in(k_rest, c), (trials,), cum.dtype)
        cand = jnp.where(cum[-1] > 0, jnp.searchsorted(cum, u * cum[-1], side="right"),  # P(i) = D_i^2 / sum D^2
                         (u * n).astype(jnp.int32))                               # all points alike: uniform
        cand = jnp.minimum(cand, n - 1)
        new = jnp.minimum(closest[None], sq_distances(x, x[cand]).T)               # [L, N]
        best = jnp.argmin(new.sum(1))
        return centres.at[c].set(x[cand[best]]), new[best]

    centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    return jax.lax.fori_loop(1, k, step, (centres, closest))[0]


def _update(x, centroids):
    """One Lloyd step with empty-cluster re-seeding -> new centroids [K, F]."""
    k = centroids.shape[0]
    labels, d2 = assign(x, centroids)
    counts = jnp.zeros(k, x.dtype).at[labels].add(1.0)
    means = jax.ops.segment_sum(x, labels, num_segments=k) / jnp.maximum(counts, 1.0)[:, None]
    empty = counts == 0
    farthest = jnp.argsort(-d2, stable=True)[: k]                                  # K <= N
    rank = jnp.cumsum(empty) - 1
    return jnp.where(empty[:, None], x[farthest[jnp.clip(rank, 0, k - 1)]], means)


@partial(jax.jit, static_argnames="max_iter")
def lloyd(x, centroids, *, max_iter: int = 300, tol=1e-4) -> KMeans:
    """Lloyd's iterations from `centroids` [K, F] (see the module docstring) -> the converged `KMeans`."""
    x = jnp.asarray(x)
    tol_abs = tol * jnp.var(x, axis=0).mean()

    def cond(carry):
        _, shift, it = carry
        return (it < max_iter) & (shift > tol_abs)

    def body(carry):
        c, _, it = carry
        new = _update(x, c)
        return new, ((new - c) ** 2).sum(), it + 1

    init = (jnp.asarray(centroids, x.dtype), jnp.asarray(jnp.inf, x.dtype), jnp.asarray(0, jnp.int32))
    centroids, _, iterations = jax.lax.while_loop(cond, body, init)
    labels, d2 = assign(x, centroids)
    return KMeans(centroids, labels, d2.sum(), iterations)


@partial(jax.jit, static_argnames=("k", "restarts", "max_iter"))
def _kmeans(key, x, tol, *, k: int, restarts: int, max_iter: int) -> KMeans:
    def run(key):
        return lloyd(x, kmeans_plusplus(key, x, k), max_iter=max_iter, tol=tol)

    runs = jax.vmap(run)(jax.random.split(key, restarts))
    best = jnp.argmin(runs.inertia)
    return jax.tree.map(lambda a: a[best], runs)


def kmeans(key, x, k: int, *, restarts: int = 4, max_iter: int = 300, tol: float = 1e-4) -> KMeans:
    """Cluster x [N, F] into k clusters: the best of `restarts` greedy-k-means++-seeded Lloyd runs.

    key: a jax key or an integer seed; the same key gives the same clustering.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(f"k-means needs a feature matrix x [N, F] with N, F >= 1, got shape {x.shape}; "
                         "reshape each example to one row of features")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    check_finite("the k-means features", x)
    for name, value, low in (("k", k, 1), ("restarts", restarts, 1), ("max_iter", max_iter, 1)):
        if not is_whole(value) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    if k > x.shape[0]:
        raise InputError(f"k = {k} clusters exceed the {x.shape[0]} points; pass k <= {x.shape[0]}")
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, (int, float, np.integer, np.floating)) or not tol >= 0:
        raise InputError(f"tol must be >= 0 (a relative centre shift), got {tol}")
    x = jnp.asarray(x)
    return _kmeans(as_key(key), x, jnp.asarray(tol, x.dtype), k=int(k), restarts=int(restarts),
                   max_iter=int(max_iter))
