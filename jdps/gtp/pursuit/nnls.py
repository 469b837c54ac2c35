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
from typing import NamedTuple

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
    """Cholesky factor of G on mask x mask, identity elsewhere (NaN where that block is not positive
    definite)."""
    both = mask[:, None] & mask[None, :]
    return cholesky(jnp.where(both, gram, jnp.eye(len(mask), dtype=gram.dtype)))


def _triangular_inverse(chol):
    """L^-1 for a small lower-triangular L, row by row (row t = (e_t - L_t L^-1) / L_tt)."""
    n = chol.shape[0]
    eye = jnp.eye(n, dtype=chol.dtype)

    def row(t, inv):
        return lax.dynamic_update_index_in_dim(inv, (eye[t] - chol[t] @ inv) / chol[t, t], t, 0)

    return lax.fori_loop(0, n, row, jnp.zeros_like(chol))


def cholesky(a, block: int = 128):
    """Lower Cholesky factor of a symmetric positive definite A [m, m] (NaN where A is not), by blocks of
    at least `block` rows (at most 12 blocks): LAPACK on each diagonal block, matrix products for the rest.
    LAPACK (OpenBLAS) on all of A runs multi-threaded, and stalls for up to a second per call at m of a few
    hundred when another process holds a core; on blocks of up to about 200 rows it runs on one thread."""
    m = a.shape[0]
    size = max(block, -(-m // 12))
    if m <= size:
        return jnp.linalg.cholesky(a)
    panels = []
    for lo in range(0, m, size):
        b = min(size, m - lo)
        diag = jnp.linalg.cholesky(a[:b, :b])
        if lo + b < m:
            below = a[b:, :b] @ _triangular_inverse(diag).T  # L21 = A21 L11^-T
            a = a[b:, b:] - below @ below.T  # the trailing block's Schur complement
            diag = jnp.concatenate([diag, below])
        panels.append(jnp.pad(diag, ((lo, 0), (0, 0))))
    return jnp.concatenate(panels, 1)


def _blocks(m: int):
    """Row blocks of the blocked triangular solves: at least 64 rows, at most 12 blocks."""
    size = max(64, -(-m // 12))
    return [(lo, min(lo + size, m)) for lo in range(0, m, size)]


def _solve_lower(chol, b):
    """x with L x = b by blocks: a matvec on the rows of each block left of it and a LAPACK solve on its
    diagonal block. A LAPACK solve on all of L would first copy it to column-major order, on every call
    inside the pursuits' loops (XLA keeps their arrays row-major): three to four times the cost."""
    xs = []
    for lo, hi in _blocks(b.shape[0]):
        r = b[lo:hi] - chol[lo:hi, :lo] @ jnp.concatenate(xs) if lo else b[lo:hi]
        xs.append(solve_triangular(chol[lo:hi, lo:hi], r, lower=True))
    return jnp.concatenate(xs)


def _solve_lower_t(chol, y):
    """x with L^T x = y by blocks, from the last: each solved block adds its rows' share of L^T x to the
    blocks before it."""
    done = jnp.zeros_like(y)  # (L^T x) over the blocks solved so far, on the rows of the blocks before them
    xs = []
    for lo, hi in reversed(_blocks(y.shape[0])):
        x = solve_triangular(chol[lo:hi, lo:hi], y[lo:hi] - done[lo:hi], lower=True, trans=1)
        xs.insert(0, x)
        if lo:
            done = jnp.concatenate([done[:lo] + x @ chol[lo:hi, :lo], done[lo:]])
    return jnp.concatenate(xs)


def _column(chol, order, count, gram, i, blocked=True):
    """u = L^-1 G[order, i] over the positions < count of a factor kept in entry order (`order` int [m]:
    positions < count hold the factored indices in the order they entered, the rest the others; L the
    identity past count), and d2 = G_ii - |u|^2: row i's squared distance to their span. `blocked`: by
    `_solve_lower` (in the loop), else one LAPACK solve (fewer operations to compile)."""
    pos = jnp.arange(order.shape[0])
    v = jnp.where(pos < count, gram[order, i], 0.0)
    u = _solve_lower(chol, v) if blocked else solve_triangular(chol, v, lower=True)
    return u, gram[i, i] - u @ u


def _append(chol, order, count, i, u, d2, add):
    """Where `add`: the row [u, sqrt(d2)] goes to position count of L and index i moves there in `order`
    (swapped with the index that stood there: past count the order is free)."""
    pos = jnp.arange(order.shape[0])
    at = jnp.argmax(order == i)
    swapped = jnp.where(pos == count, i, jnp.where(pos == at, order[count], order))
    row = jnp.where(add, put(u, count, jnp.sqrt(jnp.maximum(d2, 0.0))), chol[count])
    return lax.dynamic_update_slice(chol, row[None, :], (count, 0)), jnp.where(add, swapped, order)


def _rank_one_update(chol, x, start, stop):
    """The lower factor L' (L' L'^T = L L^T + x x^T) of a lower factor L that is the identity from `stop` on,
    for x zero before `start` and from `stop` on: one Givens sweep over columns start..stop-1, O(m) each."""
    rows = jnp.arange(chol.shape[0])

    def sweep(k, carry):
        l, x = carry  # noqa: E741  (L, the factor)
        col = lax.dynamic_index_in_dim(l, k, 1, keepdims=False)
        lkk, xk = col[k], x[k]
        diag = jnp.sqrt(lkk * lkk + xk * xk)
        c, s = diag / lkk, xk / lkk
        tail = (rows > k) & (rows < stop)
        col = jnp.where(tail, (col + s * x) / c, jnp.where(rows == k, diag, col))
        # both vectors are finished before the column is written: else XLA copies L on every step
        col, x = lax.optimization_barrier((col, jnp.where(tail, c * x - s * col, x)))
        return lax.dynamic_update_index_in_dim(l, col, k, 1), x

    return lax.fori_loop(start, stop, sweep, (chol, x))[0]


def _remove(chol, order, count, p):
    """Remove position p < count from a factor in entry order: the positions after it move down one, keeping
    their entry order, and the removed index goes to the end of `order`. Rows of L before p are unchanged;
    the kept rows after it are those of L without column p, updated by that column (G_KK = L_K L_K^T + x x^T:
    one Givens sweep). O(m^2)."""
    m = order.shape[0]
    pos = jnp.arange(m)
    up = lambda v: jnp.concatenate([v[1:], v[:1]])  # v[q + 1], cyclically
    x = jnp.where((pos > p) & (pos < count), chol[:, p], 0.0)  # column p of L below the diagonal
    rows = jnp.where(pos[:, None] >= p, jnp.concatenate([chol[1:], chol[:1]], 0), chol)
    moved = jnp.where(pos[None, :] >= p, jnp.concatenate([rows[:, 1:], rows[:, :1]], 1), rows)
    last = count - 1
    moved = jnp.where((pos[:, None] >= last) | (pos[None, :] >= last), jnp.eye(m, dtype=chol.dtype), moved)
    order = jnp.where(pos == m - 1, order[p], jnp.where(pos >= p, up(order), order))
    return _rank_one_update(moved, jnp.where(pos >= p, up(x), x), p, last), order, last


class _State(NamedTuple):
    """Lawson-Hanson's loop state: the iterate and its passive set, the variables found dependent (`skip`),
    the passive block's factor L in entry order with `order` and `count`, y = L^-1 h[order], the last
    passive-set solution z (index order), the iteration count, and the flags done / step back due."""
    w: jax.Array
    passive: jax.Array
    skip: jax.Array
    chol: jax.Array
    order: jax.Array
    count: jax.Array
    y: jax.Array
    z: jax.Array
    it: jax.Array
    done: jax.Array
    back: jax.Array


@partial(jax.jit, static_argnames="max_iter")
def nnls(gram, h, *, active=None, w0=None, gtol=None, max_iter: int | None = None):
    """Lawson-Hanson NNLS on the Gram system: argmin_{w >= 0, w = 0 off active} w^T G w / 2 - h^T w.

    For G = M M^T, h = M y this is min_{w >= 0} |M^T w - y|^2 (scipy.optimize.nnls(M.T, y)). G [m, m]
    symmetric PSD, h [m]; active bool [m] (default all); w0 [m] >= 0 a warm start (default 0). A variable
    enters when its gradient g_i = h_i - (G w)_i exceeds gtol_i (default sqrt(eps) sqrt(G_ii) max_j
    h_j / sqrt(G_jj)); among gradients equal up to rounding the lowest index enters; one whose Gram row is
    dependent on the passive set (a duplicate) never enters, so a singular G is fine. Jit-compatible.

    The Cholesky factor L of the passive block is kept in the order the variables entered (`_append`:
    O(m^2) per entry; `_remove`: O(m^2) per variable that leaves), so an iteration costs O(m^2), not O(m^3).
    The warm start's passive set (active & w0 > 0) is factored once in index order; if it holds a dependent
    row (e.g. two copies), it is factored row by row instead and the dependent rows start at 0.
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
    abs_gram = jnp.abs(gram)

    def forward(chol, order, count):  # y = L^-1 h[order] over positions < count (at the start, on step backs)
        inside = idx < count
        return jnp.where(inside, solve_triangular(chol, jnp.where(inside, h[order], 0.0), lower=True), 0.0)

    # Entries run in a loop of their own inside the loop of step-backs, so that an entry holds no nested
    # loop: XLA copies the factor around a nested loop on every iteration, even one that runs zero times.
    def entries(s: _State) -> _State:  # z solves the passive set; if z is feasible accept it and let one in
        inside = idx < s.count
        z_entry = jnp.where(inside, _solve_lower_t(s.chol, s.y), 0.0)
        z = jnp.where(s.passive, z_entry[jnp.argsort(s.order)], 0.0)  # back to index order
        back = (s.passive & (z <= 0)).any()  # infeasible: `step_backs` takes the step back
        g = h - gram @ z
        cand = active & ~s.passive & ~s.skip & (g > gtol)
        best = jnp.max(jnp.where(cand, g, -jnp.inf))
        band = 32 * eps * jnp.max(jnp.abs(h) + abs_gram @ jnp.abs(z))
        i = jnp.argmax(cand & (g >= best - band))  # lowest index among the (rounding-)equal best
        found = ~back & cand.any()
        u, d2 = _column(s.chol, s.order, s.count, gram, i)
        add = found & (d2 > dependent_rtol(dt) * gram[i, i])  # a dependent row (a duplicate) never enters
        chol, order = _append(s.chol, s.order, s.count, i, u, d2, add)
        y = jnp.where(add, put(s.y, s.count, (h[i] - u @ s.y) / jnp.sqrt(jnp.maximum(d2, 0.0))), s.y)
        return _State(jnp.where(back, s.w, z), put(s.passive, i, s.passive[i] | add),
                      put(s.skip, i, s.skip[i] | (found & ~add)), chol, order, s.count + add, y, z, s.it + 1,
                      ~back & ~found, back)

    def step_backs(s: _State) -> _State:
        s = lax.while_loop(lambda s: ~s.done & ~s.back & (s.it < max_iter), entries, s)
        # move from w towards z until the first weight reaches 0; it (and any other at 0) leaves the passive set
        negative = s.back & s.passive & (s.z <= 0)
        ratio = jnp.where(negative, s.w / jnp.where(negative, s.w - s.z, 1.0), jnp.inf)
        first = jnp.argmin(ratio)
        w_back = jnp.where(s.passive, s.w + ratio[first] * (s.z - s.w), 0.0)
        keep = s.passive & (w_back > 0) & (idx != first)
        leaving = s.back & s.passive & ~keep

        def remove(_, carry):  # one by one, from the lowest position on
            chol, order, count = carry
            return _remove(chol, order, count, jnp.argmax((idx < count) & leaving[order]))

        chol, order, count = lax.fori_loop(0, leaving.sum(), remove, (s.chol, s.order, s.count))
        return s._replace(w=jnp.where(s.back, jnp.where(keep, w_back, 0.0), s.w),
                          passive=jnp.where(s.back, keep, s.passive), chol=chol, order=order, count=count,
                          y=forward(chol, order, count), back=False)

    # the warm start: its passive set factored in index order, or row by row when it is singular
    passive = active & (w > 0)
    count = passive.sum()
    order = jnp.argsort(jnp.where(passive, idx, m + idx))
    inside = idx < count
    chol = masked_cholesky(gram[order][:, order], inside)
    pivots = jnp.diagonal(chol)
    ok = jnp.all(~inside | (jnp.isfinite(chol).all(1) & (pivots * pivots > dependent_rtol(dt) * diag[order])))

    def row_by_row(_):
        def add(t, carry):
            chol, order, count, passive = carry
            i = order[t]  # positions >= t still hold the warm start's passive set in index order
            u, d2 = _column(chol, order, count, gram, i, blocked=False)
            add = d2 > dependent_rtol(dt) * gram[i, i]
            chol, order = _append(chol, order, count, i, u, d2, add)
            return chol, order, count + add, put(passive, i, add)

        return lax.fori_loop(0, count, add, (jnp.eye(m, dtype=dt), order, jnp.zeros((), count.dtype), passive))

    chol, order, count, passive = lax.cond(ok, lambda _: (chol, order, count, passive), row_by_row, None)
    init = _State(jnp.where(passive, w, 0.0), passive, jnp.zeros(m, bool), chol, order, count,
                  forward(chol, order, count), w, jnp.zeros((), jnp.int32), jnp.array(False), jnp.array(False))
    return lax.while_loop(lambda s: ~s.done & (s.it < max_iter), step_backs, init).w


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
