"""Inverse curvature-vector products x = (C + lambda I)^{-1} v over the selected parameters: one family.

C is the mean curvature of the per-example loss over a fit set of N examples: the Hessian
H = (1/N) sum_i d^2 l_i / d theta^2 (curvature='hessian'; any loss_fn) or the Gauss-Newton matrix
GGN = (1/N) sum_i J_i^T (d^2 l_i / d f^2) J_i with J_i = d f(x_i) / d theta (curvature='ggn', the default:
positive semi-definite; needs a Task built with Task.from_model). Vectors are dicts {path: leaf} over the
selected leaves. Each method is an `IHVP(fit, solve)` pair, as optax pairs init and update:

    state = method.fit(task, params, data, paths, batch_size)    the expensive, cacheable part
    x = method.solve(state, v)                                    pure; jit- and vmap-able

    exact(lambda, curvature)   C [p, p] built column by column from C-vector products, eigh on the host in
                               float64: x = Q diag(1 / (s + lambda)) Q^T v. Small models; the reference.
    cg(lambda, curvature)      conjugate gradient on v -> C v + lambda v, with H v = jax.jvp of jax.grad, and
                               GGN v = J^T H_f J v by jax.linearize of the outputs, the output loss's
                               Hessian-vector product, and the linear transpose.
    lissa(lambda, key)         the Neumann recursion h_0 = v, h_j = v + h_{j-1} - (C_j h_{j-1} + lambda h_{j-1}) / s,
                               x = h_J / s, C_j on a minibatch drawn from `key` (or the whole fit set); the scale
                               s defaults to 2 (c_max + lambda), c_max by power iteration. Needs C >= 0.
    kfac / ekfac(lambda)       block diagonal over Dense layers, Kronecker factored (jdps.influence.curvature).
    identity()                 x = v: plain gradient dot products (TracIn at one checkpoint).

C v is summed over the fit set (a Dataset or dict of arrays, kept on the device) in batches of `batch_size`
under lax.scan. Damping must be >= 0: exact, K-FAC and EK-FAC check at fit time that no eigenvalue of
C + lambda I is zero up to the rounding of C in its dtype (a PSD curvature, the GGN or a Kronecker
factorisation, has its eigenvalues clipped at 0, so any damping above that rounding level passes); CG and
LiSSA cannot check, so they need damping > 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jdps.influence import curvature as cv
from jdps.gradients import param_filter as pf
from jdps.data.batching import gather, scoring_indices
from jdps.data.dataset import Dataset
from jdps.errors import InputError
from jdps.task import Task
from jdps.validate import as_key

CURVATURES = ("ggn", "hessian")
MAX_EXACT = 20_000  # parameters: the exact method holds a [p, p] matrix


class IHVP(NamedTuple):
    """fit(task, params, data, paths, batch_size, mesh=None) -> state;  solve(state, v) -> (C + lambda I)^{-1} v.

    dense_only: the method covers Dense kernels and biases only (K-FAC, EK-FAC). mesh: K-FAC and EK-FAC
    split their factor sums over its 'data' axis (all-reduced); exact, CG and LiSSA hold their fit set on
    one device of each process (it is the small curvature set), so they run the same on every process.
    """

    fit: Callable[..., Any]
    solve: Callable[[Any, dict], dict]
    dense_only: bool = False


def selected_paths(method: IHVP, task: Task, params, batch, param_filter) -> tuple[str, ...]:
    """The leaves `method` works on: those `param_filter` selects (K-FAC, EK-FAC: its Dense leaves)."""
    if method.dense_only:
        return cv.dense_paths(task, params, batch, param_filter)[0]
    return pf.select(param_filter, params, loss_fn=task.loss_fn, batch=batch)


def _tree_dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _axpy(alpha, x, y):
    """alpha x + y, leaf by leaf."""
    return jax.tree.map(lambda xi, yi: alpha * xi + yi, x, y)


@partial(jax.tree_util.register_dataclass, data_fields=["params", "data"],
         meta_fields=["task", "paths", "curvature", "batch_size"])
@dataclass(frozen=True)
class Operator:
    """The curvature C of a fit set (arrays [N, ...] on the device) as a linear map on {path: leaf}."""

    params: Any
    data: dict[str, jax.Array]
    task: Task
    paths: tuple[str, ...]
    curvature: str
    batch_size: int

    @property
    def size(self) -> int:
        return len(next(iter(self.data.values())))

    def products(self, v, batch):
        """sum_i mask_i C_i v over one batch, C_i the curvature of l_i (Hessian or Gauss-Newton)."""
        params, task = self.params, self.task
        selected = pf.take(params, self.paths)
        if self.curvature == "hessian":
            def total(s):
                losses = task.loss_fn(pf.put(params, s), batch)
                return (losses * batch["mask"].astype(losses.dtype)).sum()
            return jax.jvp(jax.grad(total), (selected,), (v,))[1]
        outputs, jvp = jax.linearize(lambda s: task.model.apply(pf.put(params, s), batch["x"]), selected)

        def total(out):
            losses = task.output_loss(out, batch)
            return (losses * batch["mask"].astype(losses.dtype)).sum()
        hjv = jax.jvp(jax.grad(total), (outputs,), (jvp(v),))[1]
        return jax.linear_transpose(jvp, selected)(hjv)[0]

    def mean(self, v):
        """C v = (1/N) sum_i C_i v over the whole fit set, in batches of `batch_size`."""
        rows = jnp.asarray(scoring_indices(self.size, min(self.batch_size, self.size)))
        zero = jax.tree.map(jnp.zeros_like, v)
        total, _ = jax.lax.scan(lambda acc, idx: (_axpy(1.0, self.products(v, gather(self.data, idx)), acc), None),
                                zero, rows)
        return jax.tree.map(lambda t: t / self.size, total)


def operator(task: Task, params, data, paths, batch_size: int, curvature: str) -> Operator:
    """The fit set's curvature operator; `data` is a Dataset or a dict of arrays [N, ...]."""
    if curvature not in CURVATURES:
        raise InputError(f"unknown curvature {curvature!r}; pass one of {CURVATURES}")
    if curvature == "ggn" and task.model is None:
        raise InputError("curvature='ggn' needs the model's outputs: build the task with "
                         "Task.from_model(model, output_loss), or pass curvature='hessian'")
    if not isinstance(data, (Dataset, Mapping)):
        raise InputError("this method keeps the curvature data on the device: pass a Dataset or a dict of "
                         f"arrays [N, ...], not {type(data).__name__}")
    arrays = data.arrays() if isinstance(data, Dataset) else dict(data)
    arrays = {k: jnp.asarray(v) for k, v in arrays.items()
              if np.asarray(v).dtype.kind in "biuf" and k not in ("index", "mask")}
    if not arrays or len(next(iter(arrays.values()))) == 0:
        raise InputError("the curvature data is empty; pass at least one example")
    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    return Operator(params, arrays, task, tuple(paths), curvature, int(batch_size))


def _check_damping(damping: float, positive: bool, name: str) -> float:
    damping = float(damping)
    if positive and not damping > 0:
        raise InputError(f"{name} needs damping > 0, got {damping}: it cannot detect a singular curvature; "
                         "pass e.g. damping=1e-3")
    if not damping >= 0:
        raise InputError(f"{name} needs damping >= 0, got {damping}; pass e.g. damping=1e-3")
    return damping


def _check_singular(s: np.ndarray, damping: float, dtype, name: str) -> None:
    """Raise if some eigenvalue of C + lambda I [p] is zero up to the rounding of C's entries in `dtype`
    (an eigenvalue error of about sqrt(p) eps |C|)."""
    shifted = np.abs(s + damping)
    tol = max(np.abs(s).max(), damping) * np.sqrt(s.size) * np.finfo(dtype).eps
    if shifted.min() <= tol:
        raise InputError(f"{name}: the damped curvature C + {damping} I is singular (an eigenvalue "
                         f"{(s + damping)[shifted.argmin()]:.3g}); pass damping > 0, e.g. 1e-3 x its largest "
                         f"eigenvalue ({1e-3 * np.abs(s).max():.3g})")


@jax.jit
def _matrix(op: Operator) -> jax.Array:
    """C [p, p], column by column from C-vector products (compiled once per operator layout)."""
    flat, unravel = ravel_pytree(pf.take(op.params, op.paths))
    column = lambda e: ravel_pytree(op.mean(unravel(e)))[0]
    return jax.lax.map(column, jnp.eye(flat.size, dtype=flat.dtype), batch_size=min(flat.size, 64))


def exact(damping: float, *, curvature: str = "ggn") -> IHVP:
    """(C + lambda I)^{-1} v from the full matrix C and its eigendecomposition (the reference)."""
    damping = _check_damping(damping, False, "exact")

    def fit(task, params, data, paths, batch_size, mesh=None):
        op = operator(task, params, data, paths, batch_size, curvature)
        flat, _ = ravel_pytree(pf.take(params, op.paths))
        if flat.size > MAX_EXACT:
            raise InputError(f"exact holds a [p, p] matrix and p = {flat.size} > {MAX_EXACT}; select fewer "
                             "parameters with param_filter, or use cg, lissa, kfac or ekfac")
        c = np.asarray(_matrix(op), np.float64)
        s, q = np.linalg.eigh((c + c.T) / 2)
        if curvature == "ggn":  # positive semi-definite: negative eigenvalues are rounding
            s = np.maximum(s, 0.0)
        _check_singular(s, damping, flat.dtype, "exact")
        return {"s": jnp.asarray(s, flat.dtype), "q": jnp.asarray(q, flat.dtype)}

    def solve(state, v):
        flat, unravel = ravel_pytree(v)
        q = state["q"]
        return unravel(q @ ((q.T @ flat) / (state["s"] + damping)))

    return IHVP(fit, solve)


def cg(damping: float, *, curvature: str = "ggn", tol: float = 1e-6, maxiter: int | None = None) -> IHVP:
    """Conjugate gradient on v -> C v + lambda v (relative residual tol, at most maxiter steps)."""
    damping = _check_damping(damping, True, "cg")

    def fit(task, params, data, paths, batch_size, mesh=None):
        return operator(task, params, data, paths, batch_size, curvature)

    def solve(op, v):
        return jax.scipy.sparse.linalg.cg(lambda x: _axpy(damping, x, op.mean(x)), v, tol=tol, maxiter=maxiter)[0]

    return IHVP(fit, solve)


def top_eigenvalue(op: Operator, key, iterations: int = 20) -> float:
    """The largest eigenvalue of C (C >= 0) by power iteration from a random start drawn from `key`."""
    return float(_power_iteration(op, key, iterations))


@partial(jax.jit, static_argnums=2)
def _power_iteration(op: Operator, key, iterations: int):
    flat, unravel = ravel_pytree(pf.take(op.params, op.paths))

    def step(_, v):
        w = op.mean(v)
        return jax.tree.map(lambda a: a / jnp.sqrt(_tree_dot(w, w)), w)
    v = unravel(jax.random.normal(key, flat.shape, flat.dtype))
    v = jax.lax.fori_loop(0, iterations, step, jax.tree.map(lambda a: a / jnp.sqrt(_tree_dot(v, v)), v))
    return _tree_dot(v, op.mean(v))


def lissa(damping: float, key, *, curvature: str = "ggn", depth: int = 1000, batch_size: int | None = None,
          scale: float | None = None) -> IHVP:
    """LiSSA: `depth` steps of the Neumann recursion, each on `batch_size` examples drawn from `key` (all of
    them, in order, if None); scale s > the largest eigenvalue of C + lambda I (default: 2x a power-iteration
    estimate). C must be positive semi-definite (the GGN; the Hessian of a convex loss)."""
    damping = _check_damping(damping, True, "lissa")
    key = jax.random.key(key) if isinstance(key, (int, np.integer)) else key
    if int(depth) != depth or depth < 1:
        raise InputError(f"depth must be a positive integer, got {depth!r}")

    def fit(task, params, data, paths, fit_batch_size, mesh=None):
        op = operator(task, params, data, paths, fit_batch_size, curvature)
        if batch_size is not None and not 1 <= batch_size <= op.size:
            raise InputError(f"lissa batch_size must lie in [1, {op.size}] (the fit set), got {batch_size}")
        s = scale if scale is not None else 2.0 * (top_eigenvalue(op, jax.random.fold_in(key, 0)) + damping)
        if not s > 0:
            raise InputError(f"lissa needs scale > 0, got {s}; pass scale larger than the largest eigenvalue")
        return op, jnp.asarray(s, ravel_pytree(pf.take(params, op.paths))[0].dtype)

    def solve(state, v):
        op, s = state

        def step(h, k):
            if batch_size is None:
                ch = op.mean(h)
            else:
                batch = gather(op.data, jax.random.choice(k, op.size, (batch_size,), replace=False))
                ch = jax.tree.map(lambda a: a / batch_size, op.products(h, batch))
            return jax.tree.map(lambda vi, hi, ci: vi + hi - (ci + damping * hi) / s, v, h, ch), None

        h, _ = jax.lax.scan(step, v, jax.random.split(jax.random.fold_in(key, 1), depth))
        return jax.tree.map(lambda a: a / s, h)

    return IHVP(fit, solve)


def _kronecker(kind: str, damping: float, fisher: str, key) -> IHVP:
    damping = _check_damping(damping, False, kind)
    key = cv.check_key(key, fisher)

    def fit(task, params, data, paths, batch_size, mesh=None):
        factors = cv.fit(task, params, data, kind=kind, param_filter=paths, fisher=fisher, key=key,
                         batch_size=batch_size, mesh=mesh)
        cv.check_damping(factors, damping)
        return factors if mesh is None else cv.place(factors, mesh)

    return IHVP(fit, lambda factors, v: cv.solve(factors, v, damping), dense_only=True)


def kfac(damping: float, *, fisher: str = "true", key=None) -> IHVP:
    """K-FAC: (A kron G + lambda I)^{-1} per Dense layer (see jdps.influence.curvature); key samples the true Fisher."""
    return _kronecker("kfac", damping, fisher, key)


def ekfac(damping: float, *, fisher: str = "true", key=None) -> IHVP:
    """EK-FAC: K-FAC's eigenbasis with the eigenvalues corrected by the per-example gradients."""
    return _kronecker("ekfac", damping, fisher, key)


def identity() -> IHVP:
    """No curvature: x = v, so influence becomes the gradient dot product (TracIn at one checkpoint)."""
    return IHVP(lambda *args, **kwargs: {}, lambda state, v: v)


NAMES = ("exact", "cg", "lissa", "kfac", "ekfac", "identity")


def by_name(name: str, damping: float = 1e-3, *, key=None) -> IHVP:
    """The IHVP method `name` (one of NAMES) with `damping`; `key` seeds LiSSA's sampling and K-FAC's
    sampled (true) Fisher labels (a jax key or an integer seed; default 0)."""
    if name not in NAMES:
        raise InputError(f"unknown iHVP method {name!r}; choose one of {NAMES}")
    key = as_key(0 if key is None else key)
    if name == "identity":
        return identity()
    if name in ("exact", "cg"):
        return globals()[name](damping)
    if name == "lissa":
        return lissa(damping, key)
    return globals()[name](damping, key=key)
