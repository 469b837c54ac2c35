"""OMP and CoSaMP as (init, step) pairs over a fixed-size support, and the loops that drive them.

A state holds the support as an index buffer int32 [k] (-1 past `count`), its rows [k, D], weights [k],
the residual r = b - A_S^T w [D], `stop` (an index into STOP_REASONS, 0 while running) and `iterations`.
`step(state, values, rows, atoms, b, tol_abs, nonneg, ridge)` takes the scan's candidates (values [m],
rows [m], atoms [m, D]) and returns the next state; nonneg and ridge are traced, so one compilation serves
non-negative and signed OMP and GradMatch. The loop is a `lax.while_loop` inside one jit for A on the
device(s) (`run_device`), a host loop around the same jitted step for A streamed from disk (`run_streamed`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import cho_solve, solve_triangular

from jdps.gtp.pursuit.nnls import (
    cholesky_row,
    compact,
    dependent_rtol,
    least_squares,
    masked_cholesky,
    nnls,
    noise_floor,
    put,
)
from jdps.gtp.pursuit.rows import StreamedRows, device_rows

STOP_REASONS = ("running", "budget", "tolerance", "no_positive_correlation", "rank_limit", "max_iterations")
RUNNING, BUDGET, TOLERANCE, NO_CORRELATION, RANK_LIMIT, MAX_ITERATIONS = range(6)
_BIG = np.iinfo(np.int32).max


class _OMPState(NamedTuple):
    index: jax.Array      # int32 [k], rows of A in the support, -1 past count
    atoms: jax.Array      # [k, D] those rows
    gram: jax.Array       # [k, k] A_S A_S^T (zero past count)
    chol: jax.Array       # [k, k] lower Cholesky factor of A_S A_S^T + ridge I (identity past count)
    h: jax.Array          # [k] A_S b
    weights: jax.Array    # [k]
    residual: jax.Array   # [D] b - A_S^T w
    count: jax.Array
    stop: jax.Array
    iterations: jax.Array


class _CoSaMPState(NamedTuple):
    index: jax.Array
    atoms: jax.Array
    weights: jax.Array
    residual: jax.Array
    count: jax.Array
    stop: jax.Array
    iterations: jax.Array


def _omp_init(b, k: int) -> _OMPState:
    dt, zero = b.dtype, jnp.int32(0)
    return _OMPState(jnp.full(k, -1, jnp.int32), jnp.zeros((k, b.shape[0]), dt), jnp.zeros((k, k), dt),
                     jnp.eye(k, dtype=dt), jnp.zeros(k, dt), jnp.zeros(k, dt), b, zero, zero, zero)


def _cosamp_init(b, k: int) -> _CoSaMPState:
    zero = jnp.int32(0)
    return _CoSaMPState(jnp.full(k, -1, jnp.int32), jnp.zeros((k, b.shape[0]), b.dtype), jnp.zeros(k, b.dtype),
                        b, zero, zero, zero)


def _omp_nnls(s: _OMPState, w_old, b, ridge) -> _OMPState:
    """Lawson-Hanson on the support (warm from the previous weights); zero-weight atoms leave it."""
    k = s.index.shape[0]
    eye = jnp.eye(k, dtype=b.dtype)
    gtol = noise_floor(b.dtype) * jnp.linalg.norm(b) * jnp.sqrt(jnp.maximum(jnp.diagonal(s.gram), 0.0))
    w = nnls(s.gram + ridge * eye, s.h, active=jnp.arange(k) < s.count, w0=w_old, gtol=gtol)
    keep = w > 0
    perm, (index, atoms, h, w) = compact(keep, s.index, s.atoms, s.h, w)
    kept = keep[perm]
    both = kept[:, None] & kept[None, :]
    gram = jnp.where(both, s.gram[perm][:, perm], 0.0)
    return s._replace(index=jnp.where(kept, index, -1), atoms=jnp.where(kept[:, None], atoms, 0.0), gram=gram,
                      chol=masked_cholesky(gram + ridge * eye, kept), h=jnp.where(kept, h, 0.0),
                      weights=jnp.where(kept, w, 0.0), count=kept.sum().astype(jnp.int32))


def _omp_step(s: _OMPState, values, rows, atoms, b, tol_abs, nonneg, ridge, *, max_iter: int) -> _OMPState:
    """One OMP step: append the chosen row (values[0] = -inf: none) and refit (NNLS if nonneg; + ridge)."""
    k, d = s.atoms.shape
    j, a = rows[0], atoms[0]
    found = values[0] > -jnp.inf
    v = s.atoms @ a
    z = solve_triangular(s.chol, v, lower=True)
    nn = a @ a
    d2 = nn + ridge - z @ z
    independent = (ridge > 0) | (d2 > dependent_rtol(b.dtype) * nn)

    def add(s):
        t = s.count
        col = put(v, t, nn)
        chol, h = cholesky_row(s.chol, z, t, d2), put(s.h, t, a @ b)
        gram = put(put(s.gram, t, col).T, t, col)
        new = s._replace(index=put(s.index, t, j), atoms=put(s.atoms, t, a), chol=chol, h=h, gram=gram,
                         weights=cho_solve((chol, True), h), count=t + 1)
        feasible = jnp.all((new.weights > 0) | (jnp.arange(k) > t))
        new = lax.cond(nonneg & ~feasible, lambda x: _omp_nnls(x, s.weights, b, ridge), lambda x: x, new)
        return new._replace(residual=b - new.atoms.T @ new.weights)

    s = lax.cond(found & independent, add, lambda s: s, s)
    it = s.iterations + 1
    stop = jnp.select([~found, ~independent, s.count == k, (ridge == 0) & (s.count >= d),
                       jnp.linalg.norm(s.residual) <= tol_abs, it >= max_iter],
                      [NO_CORRELATION, RANK_LIMIT, BUDGET, RANK_LIMIT, TOLERANCE, MAX_ITERATIONS], RUNNING)
    return s._replace(stop=stop.astype(jnp.int32), iterations=it)


def _cosamp_step(s: _CoSaMPState, values, rows, atoms, b, tol_abs, nonneg, ridge, *,
                 max_iter: int) -> _CoSaMPState:
    """One CoSaMP iteration: union of the support and the new top-2k, solve, prune to k, refit."""
    k, d = s.atoms.shape
    m = rows.shape[0]
    fresh = (values > -jnp.inf) & ~(rows[:, None] == s.index[None, :]).any(1)
    found = fresh.any()
    floor = noise_floor(b.dtype)

    def ranked(z):  # union positions by decreasing weight (signed: |weight|), -inf where zero
        return jnp.where(nonneg, jnp.where(z > 0, z, -jnp.inf), jnp.where(z != 0, jnp.abs(z), -jnp.inf))

    def iterate(s):
        index = jnp.concatenate([s.index, jnp.where(fresh, rows, -1)])
        order = jnp.argsort(jnp.where(index >= 0, index, _BIG))  # by row index: ties go to the lowest
        index = index[order]
        union = jnp.concatenate([s.atoms, jnp.where(fresh[:, None], atoms, 0.0)])[order]
        w0 = jnp.concatenate([s.weights, jnp.zeros(m, b.dtype)])[order]
        gram, h = union @ union.T, union @ b
        gtol = floor * jnp.linalg.norm(b) * jnp.sqrt(jnp.maximum(jnp.diagonal(gram), 0.0))

        def solve(p, z):  # round 0: solve on the union; round 1: prune to the k largest and refit on them
            top, pos = lax.top_k(ranked(z), k)
            pruned = ((jnp.arange(z.shape[0])[:, None] == pos) & (top > -jnp.inf)).any(1)
            active = jnp.where(p == 0, index >= 0, pruned)
            start = jnp.where(p == 0, w0, jnp.where(pruned, z, 0.0))
            return lax.cond(nonneg, lambda: nnls(gram, h, active=active, w0=start, gtol=gtol),
                            lambda: least_squares(gram, h, active))

        w = lax.fori_loop(0, 2, solve, w0)
        top, pos = lax.top_k(ranked(w), k)
        kept = top > -jnp.inf
        new = s._replace(index=jnp.where(kept, index[pos], -1), atoms=jnp.where(kept[:, None], union[pos], 0.0),
                         weights=jnp.where(kept, w[pos], 0.0), count=kept.sum().astype(jnp.int32))
        return new._replace(residual=b - new.atoms.T @ new.weights)

    new = lax.cond(found, iterate, lambda s: s, s)
    stable = jnp.all(jnp.sort(new.index) == jnp.sort(s.index))
    it = s.iterations + 1
    stop = jnp.select([~found, (new.count < k) & (new.count >= d), jnp.linalg.norm(new.residual) <= tol_abs,
                       stable & (new.count == k), stable, it >= max_iter],
                      [NO_CORRELATION, RANK_LIMIT, TOLERANCE, BUDGET, NO_CORRELATION, MAX_ITERATIONS], RUNNING)
    return new._replace(stop=stop.astype(jnp.int32), iterations=it)


class _Spec(NamedTuple):
    init: Callable
    step: Callable
    m: int         # candidates per scan


def _spec(method: str, k: int, n: int, max_iter: int) -> _Spec:
    if method == "cosamp":
        return _Spec(_cosamp_init, partial(_cosamp_step, max_iter=max_iter), min(2 * k, n))
    return _Spec(_omp_init, partial(_omp_step, max_iter=max_iter), 1)


_NONE = np.full(1, -1, np.int32)  # no row excluded


def _excluded(method: str, s):
    """Rows a scan must not offer: OMP's support (with a ridge refit, GradMatch, a support row can keep a
    positive correlation and would be chosen twice); CoSaMP merges its candidates with its support itself."""
    return _NONE if method == "cosamp" else s.index


def _levels(b, tol):
    """tau (a correlation counts when c_i > tau |a_i|, tau = sqrt(eps) |b|) and the residual to stop at."""
    floor, b_norm = noise_floor(b.dtype), jnp.linalg.norm(b)
    return floor * b_norm, jnp.maximum(tol, floor) * b_norm


@partial(jax.jit, static_argnames=("method", "k", "n", "max_iter", "score", "mesh"))
def run_device(a, norms, b, tol, nonneg, ridge, *, method, k, n, max_iter, score, mesh):
    access = device_rows(a, norms, n, mesh)
    tau, tol_abs = _levels(b, tol)
    if method == "topk":
        return access.scan(b, tau, False, k, score, _NONE)
    spec = _spec(method, k, n, max_iter)

    def body(s):
        values, rows = access.scan(s.residual, tau, ~nonneg, spec.m, "gated", _excluded(method, s))
        return spec.step(s, values, rows, access.gather(rows), b, tol_abs, nonneg, ridge)
    return lax.while_loop(lambda s: s.stop == RUNNING, body, spec.init(b, k))


@partial(jax.jit, static_argnames=("method", "k", "n", "max_iter"))
def _streamed_step(s, values, rows, atoms, b, tol, nonneg, ridge, *, method, k, n, max_iter):
    return _spec(method, k, n, max_iter).step(s, values, rows, atoms, b, _levels(b, tol)[1], nonneg, ridge)


def run_streamed(source: StreamedRows, b, tol, nonneg, ridge, *, method, k, n, max_iter, score):
    tau = _levels(b, tol)[0]
    if method == "topk":
        return source.scan(b, tau, False, k, score, _NONE)
    spec = _spec(method, k, n, max_iter)
    s = spec.init(b, k)
    while int(s.stop) == RUNNING:
        values, rows = source.scan(s.residual, tau, not nonneg, spec.m, "gated", _excluded(method, s))
        s = _streamed_step(s, values, rows, source.gather(rows), b, tol, nonneg, ridge, method=method, k=k, n=n,
                           max_iter=max_iter)
    return s
