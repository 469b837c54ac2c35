"""Small dense solves on a Gram system G = M M^T, h = M y: the refits of the pursuits.

    nnls            Lawson-Hanson: argmin_{w >= 0} |M^T w - y|^2 = argmin_{w >= 0} w^T G w / 2 - h^T w,
                    warm-started, restricted to an `active` mask, safe on a singular G (duplicate rows)
    least_squares   argmin_w |M^T w - y|^2 over a basis of the active rows (rows dependent on earlier ones,
                    e.g. duplicates, get weight 0)

plus the incremental Cholesky pieces the OMP refit uses. Shapes are static (m = len(h)); rows outside a
mask stay 0 and their factor rows are the identity, so one compiled solve serves every support size.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import cho_solve, solve_triangular


def noise_floor(dtype) -> float:
    """sqrt(eps): the relative level below which a correlation or a residual is not resolved."""
    return float(np.sqrt(np.finfo(dtype).eps))


def dependent_rtol(dtype) -> float:
    """A row whose squared distance to the span of others is <= this times its squared norm is dependent."""
    return 100.0 * float(np.finfo(dtype).eps)


def put(x, i, value):
    """x with entry (row) i replaced by value: a select, which compiles far faster than a scatter."""
    hit = jnp.arange(x.shape[0]) == i
    return jnp.where(hit.reshape(-1, *([1] * (x.ndim - 1))), value, x)


def cholesky_row(chol, z, i, d2):
    """Row i of a lower Cholesky factor (identity on rows not yet used), given z = L^-1 v: [z, sqrt(d2)]."""
    return put(chol, i, put(z, i, jnp.sqrt(jnp.maximum(d2, 0.0))))


def masked_cholesky(gram, mask):
    """Cholesky factor of G on mask x mask, identity elsewhere."""
    both = mask[:, None] & mask[None, :]
    return jnp.linalg.cholesky(jnp.where(both, gram, jnp.eye(len(mask), dtype=gram.dtype)))


@partial(jax.jit, static_argnames="max_iter")
def nnls(gram, h, *, active=None, w0=None, gtol=None, max_iter: int | None = None):
    """Lawson-Hanson NNLS on the Gram system: argmin_{w >= 0, w = 0 off active} w^T G w / 2 - h^T w.

    For G = M M^T, h = M y this is min_{w >= 0} |M^T w - y|^2 (scipy.optimize.nnls(M.T, y)). G [m, m]
    symmetric PSD, h [m]; active bool [m] (default all); w0 [m] >= 0 a warm start (default 0). A variable
    enters when its gradient g_i = h_i - (G w)_i exceeds gtol_i (default sqrt(eps) sqrt(G_ii) max_j
    h_j / sqrt(G_jj)); among gradients equal up to rounding the lowest index enters; one whose Gram row is
    dependent on the passive set (a duplicate) never enters, so a singular G is fine. Jit-compatible.
    """
    m = h.shape[0]
    dt = h.dtype
    eps = jnp.finfo(dt).eps
    idx = jnp.arange(m)
    active = jnp.ones(m, bool) if active is None else active
    diag = jnp.maximum(jnp.diagonal(gram), 0.0)
    if gtol is None:
        scale = jnp.max(jnp.where(active & (diag > 0), jnp.abs(h) / jnp.sqrt(jnp.where(diag > 0, diag, 1.0)), 0.0))
        gtol = noise_floor(dt) * jnp.sqrt(diag) * scale
    w = jnp.zeros(m, dt) if w0 is None else jnp.where(active, jnp.maximum(w0, 0.0), 0.0).astype(dt)
    max_iter = 3 * m + 10 if max_iter is None else max_iter

    def body(state):
        w, passive, skip, it, _ = state
        chol = masked_cholesky(gram, passive)
        z = jnp.where(passive, cho_solve((chol, True), jnp.where(passive, h, 0.0)), 0.0)
        negative = passive & (z <= 0)

        def step_back(_):  # move from w towards z until the first weight reaches 0; it leaves the passive set
            ratio = jnp.where(negative, w / jnp.where(negative, w - z, 1.0), jnp.inf)
            first = jnp.argmin(ratio)
            w_new = jnp.where(passive, w + ratio[first] * (z - w), 0.0)
            keep = passive & (w_new > 0) & (idx != first)
            return jnp.where(keep, w_new, 0.0), keep, skip, False

        def enter(_):  # z is feasible: accept it and let the variable of largest gradient enter
            g = h - gram @ z
            cand = active & ~passive & ~skip & (g > gtol)
            best = jnp.max(jnp.where(cand, g, -jnp.inf))
            band = 32 * eps * jnp.max(jnp.abs(h) + jnp.abs(gram) @ jnp.abs(z))
            i = jnp.argmax(cand & (g >= best - band))  # lowest index among the (rounding-)equal best
            u = solve_triangular(chol, jnp.where(passive, gram[:, i], 0.0), lower=True)
            dependent = gram[i, i] - u @ u <= dependent_rtol(dt) * gram[i, i]
            found = cand.any()
            return (z, put(passive, i, passive[i] | (found & ~dependent)),
                    put(skip, i, skip[i] | (found & dependent)), ~found)

        w, passive, skip, done = lax.cond(negative.any(), step_back, enter, None)
        return w, passive, skip, it + 1, done

    def cond(state):
        return ~state[4] & (state[3] < max_iter)

    init = (w, active & (w > 0), jnp.zeros(m, bool), 0, False)
    return lax.while_loop(cond, body, init)[0]


def least_squares(gram, h, active):
    """Least squares on the Gram system over a basis of the active rows: rows are taken in index order and
    one dependent on those before it (a duplicate) gets weight 0. Returns w [m]."""
    dt = h.dtype
    m = h.shape[0]

    def add(i, carry):
        chol, basis = carry
        v = jnp.where(basis, gram[:, i], 0.0)
        z = solve_triangular(chol, v, lower=True)
        d2 = gram[i, i] - z @ z
        ok = active[i] & (d2 > dependent_rtol(dt) * gram[i, i])
        chol = jnp.where(ok, cholesky_row(chol, z, i, d2), chol)
        return chol, put(basis, i, ok)

    chol, basis = lax.fori_loop(0, m, add, (jnp.eye(m, dtype=dt), jnp.zeros(m, bool)))
    return jnp.where(basis, cho_solve((chol, True), jnp.where(basis, h, 0.0)), 0.0)


def compact(keep, *arrays):
    """Move the kept entries (in order) to the front: permute the leading axis of each array; returns the
    permutation and the permuted arrays (Gram matrices are permuted on both axes by the caller)."""
    n = keep.shape[0]
    perm = jnp.argsort(jnp.where(keep, jnp.arange(n), n + jnp.arange(n)))
    return perm, tuple(a[perm] for a in arrays)
