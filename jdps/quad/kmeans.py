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

On a mesh (`mesh=`, axis 'data') the rows of x are split over the devices and never gathered: each device
assigns its own rows; the cluster sums and counts, the k-means++ potential sum D^2 and the candidate
counts of its inverse-CDF draw (a global searchsorted is the sum of the shards' searchsorted counts)
are all-reduced; a chosen row is read by an all-reduce of masked reads, and the farthest points for
empty clusters are merged from each shard's top K. Labels and distances stay sharded [N / D].
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jax import lax
from jax.sharding import PartitionSpec as P

from jdps import distributed as dist
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


def _sharded_kmeans(key, x, tol, *, n: int, k: int, restarts: int, max_iter: int, mesh):
    """`_kmeans` on x [N_pad, F] sharded over the mesh's 'data' axis (rows >= n are padding)."""
    axis = dist.DATA

    def local(key, x, tol):
        n_loc = x.shape[0]
        offset = lax.axis_index(axis) * n_loc
        gidx = offset + jnp.arange(n_loc, dtype=jnp.int32)
        valid = gidx < n
        fvalid = valid.astype(x.dtype)

        def rows(i):  # global rows i int [L] -> x[i] [L, F], by an all-reduce of masked reads
            here = i - offset
            own = (here >= 0) & (here < n_loc)
            return lax.psum(jnp.where(own[:, None], x[jnp.clip(here, 0, n_loc - 1)], 0.0), axis)

        def seeds(key):
            trials = 2 + int(math.log(k))
            k_first, k_rest = jax.random.split(key)
            first = rows(jax.random.randint(k_first, (1,), 0, n))[0]
            closest = sq_distances(x, first[None])[:, 0] * fvalid

            def step(c, carry):
                centres, closest = carry
                cum_local = jnp.cumsum(closest)
                totals = lax.all_gather(cum_local[-1], axis)                       # [D] shard masses
                total = totals.sum()
                cum = cum_local + (jnp.cumsum(totals) - totals)[lax.axis_index(axis)]
                u = jax.random.uniform(jax.random.fold_in(k_rest, c), (trials,), cum.dtype)
                count = lax.psum(jnp.searchsorted(cum, u * total, side="right").astype(jnp.int32), axis)
                cand = jnp.minimum(jnp.where(total > 0, count, (u * n).astype(jnp.int32)), n - 1)
                chosen = rows(cand)                                                 # [L, F]
                new = jnp.minimum(closest[None], sq_distances(x, chosen).T) * fvalid  # [L, N / D]
                best = jnp.argmin(lax.psum(new.sum(1), axis))
                return centres.at[c].set(chosen[best]), new[best]

            centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
            return lax.fori_loop(1, k, step, (centres, closest))[0]

        def update(c):
            labels, d2 = assign(x, c)
            counts = lax.psum(jnp.zeros(k, x.dtype).at[labels].add(fvalid), axis)
            sums = lax.psum(jax.ops.segment_sum(x * fvalid[:, None], labels, num_segments=k), axis)
            means = sums / jnp.maximum(counts, 1.0)[:, None]
            empty = counts == 0
            v, pos = lax.top_k(jnp.where(valid, d2, -jnp.inf), min(k, n_loc))    # this shard's farthest
            v, far = lax.all_gather(v, axis, tiled=True), lax.all_gather(gidx[pos], axis, tiled=True)
            farthest = far[lax.top_k(v, k)[1]]                                      # shard order = index order
            rank = jnp.cumsum(empty) - 1
            return jnp.where(empty[:, None], rows(farthest[jnp.clip(rank, 0, k - 1)]), means)

        mean = lax.psum((x * fvalid[:, None]).sum(0), axis) / n
        var = lax.psum((jnp.square(x - mean) * fvalid[:, None]).sum(0), axis) / n
        tol_abs = tol * var.mean()

        def run(key):
            def body(carry):
                c, _, it = carry
                new = update(c)
                return new, ((new - c) ** 2).sum(), it + 1

            init = (seeds(key), jnp.asarray(jnp.inf, x.dtype), jnp.asarray(0, jnp.int32))
            c, _, it = lax.while_loop(lambda s: (s[2] < max_iter) & (s[1] > tol_abs), body, init)
            labels, d2 = assign(x, c)
            return c, labels, lax.psum((d2 * fvalid).sum(), axis), it

        c, labels, inertia, it = jax.vmap(run)(jax.random.split(key, restarts))
        best = jnp.argmin(inertia)
        return c[best], labels[best], inertia[best], it[best]

    out = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(axis), P()), out_specs=(P(), P(axis), P(), P()),
                        check_vma=False)(key, x, tol)
    return KMeans(*out)


_sharded = jax.jit(_sharded_kmeans, static_argnames=("n", "k", "restarts", "max_iter", "mesh"))


def kmeans(key, x, k: int, *, restarts: int = 4, max_iter: int = 300, tol: float = 1e-4, mesh=None) -> KMeans:
    """Cluster x [N, F] into k clusters: the best of `restarts` greedy-k-means++-seeded Lloyd runs.

    key: a jax key or an integer seed; the same key gives the same clustering. mesh: split the rows over
    its 'data' axis (see the module docstring); the result comes back to every process (labels [N] as
    numpy) and equals the one-device clustering up to float rounding of the sums.
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
    if mesh is not None:
        n = x.shape[0]
        padded = np.zeros((dist.round_up(n, mesh), x.shape[1]), x.dtype)
        padded[:n] = x
        out = _sharded(as_key(key), dist.put_rows(padded, mesh), np.asarray(tol, x.dtype), n=n, k=int(k),
                       restarts=int(restarts), max_iter=int(max_iter), mesh=mesh)
        return KMeans(out.centroids, dist.to_host(out.labels)[:n], out.inertia, out.iterations)
    x = jnp.asarray(x)
    return _kmeans(as_key(key), x, jnp.asarray(tol, x.dtype), k=int(k), restarts=int(restarts),
                   max_iter=int(max_iter))
