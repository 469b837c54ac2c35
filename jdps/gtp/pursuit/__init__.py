"""Sparse pursuit over the rows of a feature matrix: the numerical core of GTP and its baselines.

The rows a_i of A [N, D] are candidate atoms, b [D] the target. Pursuit seeks

    min_{w >= 0, |w|_0 <= k} |A_S^T w - b|^2        (signed: w free)

and returns the support S (row indices, int [count] with count <= k), its weights w [count], the residual
norm |b - A_S^T w| and why it stopped. Solvers:

    omp        non-negative OMP: add the row of largest positive correlation c_i = a_i . r with the residual
               r, refit NNLS on the support (incremental Cholesky; Lawson-Hanson when a weight would turn
               negative, whose zero-weight atoms then leave the support); signed: largest |c_i|, least squares.
    gradmatch  the same with a ridge refit, min |A_S^T w - b|^2 + ridge |w|^2 (CORDS GradMatch's OMP).
    cosamp     compressive sampling pursuit: per iteration the top 2k correlations join the support,
               NNLS (least squares) on the union, prune to the k largest weights, refit on those k.
    topk       the k rows of largest correlation a_i . b, or cosine a_i . b / |a_i| (LESS, TracIn); weight 1.

Stop reasons (`STOP_REASONS`): 'budget' (k atoms; CoSaMP: k atoms and a stable support), 'tolerance'
(|r| <= tol |b|), 'no_positive_correlation' (no row has c_i > sqrt(eps) |a_i| |b|, its magnitude when
signed: the residual is NNLS- (LS-) optimal over all rows), 'rank_limit' (the support spans R^D, count = D,
or the chosen row lies in its span), 'max_iterations'. Fewer than k atoms always comes with the reason.

Ties go to the lowest row index: correlations are summed row by row with one fixed-shape kernel of
`BLOCK` rows (so identical rows give identical bits on any device layout), and every top-m keeps the
lowest index among equal values. Each solver is one jit-compiled loop with static shapes (k static; the
support a fixed-size index buffer with a count). With `mesh`, A's rows are sharded over its 'data' axis:
each step takes per-shard top-m candidates, all-gathers them to the global choice and gathers the chosen
rows; the small refit runs replicated. With `block_rows` (or A an `np.memmap`, e.g. `np.load(path,
mmap_mode='r')`), A stays on disk and each correlation step streams it in row blocks through the same
kernel. All three layouts give the same selection.

Layout: `nnls.py` (Lawson-Hanson NNLS and least squares on a Gram system), `rows.py` (the correlation
scan and row gather: in memory, sharded, streamed), `solvers.py` (the OMP and CoSaMP steps and their
loops); this module checks the input and returns a `PursuitResult`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jdps.errors import InputError
from jdps.gtp.pursuit.nnls import least_squares, nnls
from jdps.gtp.pursuit.rows import (
    AXIS,
    BLOCK,
    STREAM_ROWS,
    StreamedRows,
    device_norms,
    on_device,
)
from jdps.gtp.pursuit.solvers import STOP_REASONS, run_device, run_streamed
from jdps.validate import is_whole

METHODS = ("omp", "cosamp", "topk", "gradmatch")
SCORES = ("correlation", "cosine")
GRADMATCH_RIDGE = 0.5      # CORDS GradMatch's default

__all__ = [
    "AXIS",
    "BLOCK",
    "GRADMATCH_RIDGE",
    "METHODS",
    "SCORES",
    "STOP_REASONS",
    "STREAM_ROWS",
    "PursuitResult",
    "cosamp",
    "gradmatch",
    "least_squares",
    "nnls",
    "omp",
    "solve",
    "topk",
]


class PursuitResult(NamedTuple):
    """indices int [count] (rows of A, in the order chosen; CoSaMP: by weight), weights [count], the
    residual norm |b - A_S^T w| (NaN for top-k, which fits no weights), stop_reason, iterations."""

    indices: np.ndarray
    weights: np.ndarray
    residual_norm: float
    stop_reason: str
    iterations: int


def _bad_rows(a, norms) -> None:
    """Raise naming the rows of A that hold NaN or Inf (their norms are not finite)."""
    from jdps.distributed import to_host

    suspect = np.flatnonzero(~np.isfinite(to_host(norms)[:len(a)]))   # a mesh's shards, from every process
    bad = [int(i) for i in suspect if not np.isfinite(np.asarray(a[int(i)])).all()]
    if bad:
        raise InputError(f"the features A hold NaN or Inf in {len(bad)} row(s), index {bad[:10]}"
                         f"{' ...' if len(bad) > 10 else ''}; drop those candidates (or rebuild their features "
                         "from a finite checkpoint) before the pursuit")


def _checked(A, b, k, method, score, tol, ridge, iterations, max_iterations, mesh, block_rows):
    if method not in METHODS:
        raise InputError(f"unknown pursuit method {method!r}; pass one of {METHODS}")
    if score not in SCORES:
        raise InputError(f"unknown top-k score {score!r}; pass one of {SCORES}")
    if not hasattr(A, "shape") or not hasattr(A, "dtype"):
        A = np.asarray(A)
    if len(A.shape) != 2 or A.shape[0] < 1 or A.shape[1] < 1:
        raise InputError(f"features A must be a non-empty matrix [N, Td] (one row per candidate), got shape "
                         f"{tuple(A.shape)}")
    if not np.issubdtype(np.dtype(A.dtype), np.floating):
        raise InputError(f"features A have dtype {A.dtype}; pass floating point features, e.g. A.astype(np.float32)")
    n, d = A.shape
    b = np.asarray(b)
    if b.ndim != 1 or len(b) != d:
        raise InputError(f"the target b has shape {b.shape} but the features have Td = {d} columns; build b with "
                         "the same checkpoints, projection dimension and options as A (a vector [Td])")
    if not np.isfinite(b).all():
        raise InputError("the target b holds NaN or Inf; rebuild it from finite gradients")
    if not np.any(b):
        raise InputError("the target b is all zeros, so there is nothing to match; for in-domain selection pass "
                         "the mean row of A (jdps.gtp.trajectory.mean_row), for target-domain the mean target row")
    if not is_whole(k) or not 1 <= k <= n:
        raise InputError(f"budget k must be an integer in [1, N] = [1, {n}], got {k!r}")
    for name, value in (("tol", tol), ("ridge", ridge)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not value >= 0:
            raise InputError(f"{name} must be a number >= 0, got {value!r}")
    for name, value in (("iterations", iterations), ("max_iterations", max_iterations)):
        if value is not None and (not is_whole(value) or value < 1):
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if mesh is not None and AXIS not in mesh.axis_names:
        raise InputError(f"the mesh has axes {mesh.axis_names}; pursuit shards candidates over an axis named "
                         f"'{AXIS}': build it as Mesh(devices, ('{AXIS}',))")
    if mesh is not None and block_rows is not None:
        raise InputError("A streamed from disk (block_rows or an np.memmap) is scanned on one device; pass "
                         "mesh=None, or load A into memory (np.asarray) to shard it")
    if block_rows is not None and (not is_whole(block_rows) or block_rows < 1):
        raise InputError(f"block_rows must be a positive integer, got {block_rows}")
    return A, b, int(k)


def solve(A, b, k: int, *, method: str = "omp", nonneg: bool = True, tol: float = 0.0, ridge: float | None = None,
          iterations: int = 10, score: str = "correlation", max_iterations: int | None = None, mesh=None,
          block_rows: int | None = None) -> PursuitResult:
    """Select at most k rows of A [N, Td] whose non-negative (signed: any) combination matches b [Td].

    method: 'omp', 'gradmatch' (omp with `ridge`, default 0.5), 'cosamp' (`iterations` rounds at most) or 'topk'
    (by `score`: 'correlation' a_i . b or 'cosine'). tol: stop once |r| <= tol |b| (never below sqrt(eps)).
    mesh: a `jax.sharding.Mesh` with an axis 'data' to shard A's rows over. block_rows: stream A (an array
    or np.memmap on the host) in blocks of this many rows; an np.memmap or a `jdps.store.FeatureStore` is
    streamed by default (a store by its chunks).
    """
    if (isinstance(A, np.memmap) or getattr(A, "on_disk", False)) and block_rows is None and mesh is None:
        block_rows = getattr(A, "chunk_rows", STREAM_ROWS)    # a jdps.store.FeatureStore: one chunk a block
    if ridge is not None and ridge != 0 and method != "gradmatch":
        raise InputError("ridge applies to method='gradmatch' only; drop it or pass method='gradmatch'")
    ridge = (GRADMATCH_RIDGE if method == "gradmatch" else 0.0) if ridge is None else ridge
    A, b, k = _checked(A, b, k, method, score, tol, ridge, iterations, max_iterations, mesh, block_rows)
    n = A.shape[0]
    dt = jax.dtypes.canonicalize_dtype(np.result_type(A.dtype, np.float32))
    b = jnp.asarray(b, dt)
    max_iter = int(iterations if method == "cosamp" else max_iterations or 4 * k + 10)
    flags = (np.float32(tol), np.bool_(nonneg), np.float32(ridge))
    kernel = method if method in ("cosamp", "topk") else "omp"  # gradmatch is omp with a ridge
    opts = {"method": kernel, "k": k, "n": n, "max_iter": max_iter, "score": score}
    if block_rows is not None:
        source = StreamedRows(A, -(-int(block_rows) // BLOCK) * BLOCK, dt)
        _bad_rows(A, source.norms)
        out = run_streamed(source, b, *flags, **opts)
    else:
        a = on_device(A, dt, mesh)
        norms = device_norms(a, dt=dt, mesh=mesh)
        _bad_rows(A, norms)
        out = run_device(a, norms, b, *flags, mesh=mesh, **opts)
    if method == "topk":
        return PursuitResult(np.asarray(out[1], np.int64), np.ones(k, np.float32), math.nan, "budget", 1)
    count = int(out.count)
    return PursuitResult(np.asarray(out.index[:count], np.int64), np.asarray(out.weights[:count]),
                         float(jnp.linalg.norm(out.residual)), STOP_REASONS[int(out.stop)], int(out.iterations))


def omp(A, b, k: int, *, nonneg: bool = True, tol: float = 0.0, max_iterations: int | None = None, mesh=None,
        block_rows: int | None = None) -> PursuitResult:
    """Orthogonal matching pursuit: non-negative (NNLS refit) by default, signed (least squares) if not."""
    return solve(A, b, k, method="omp", nonneg=nonneg, tol=tol, max_iterations=max_iterations, mesh=mesh,
                 block_rows=block_rows)


def gradmatch(A, b, k: int, *, ridge: float = GRADMATCH_RIDGE, nonneg: bool = True, tol: float = 0.0,
              max_iterations: int | None = None, mesh=None, block_rows: int | None = None) -> PursuitResult:
    """GradMatch's OMP: the OMP choice with a ridge refit min |A_S^T w - b|^2 + ridge |w|^2 (CORDS: ridge 0.5)."""
    return solve(A, b, k, method="gradmatch", nonneg=nonneg, tol=tol, ridge=ridge, max_iterations=max_iterations,
                 mesh=mesh, block_rows=block_rows)


def cosamp(A, b, k: int, *, nonneg: bool = True, iterations: int = 10, tol: float = 0.0, mesh=None,
           block_rows: int | None = None) -> PursuitResult:
    """Compressive sampling pursuit: top-2k candidates a round, solve on the union, prune to k, refit."""
    return solve(A, b, k, method="cosamp", nonneg=nonneg, iterations=iterations, tol=tol, mesh=mesh,
                 block_rows=block_rows)


def topk(A, b, k: int, *, score: str = "correlation", mesh=None, block_rows: int | None = None) -> PursuitResult:
    """The k rows of largest a_i . b ('correlation', LESS on normalised rows) or a_i . b / |a_i| ('cosine')."""
    return solve(A, b, k, method="topk", score=score, mesh=mesh, block_rows=block_rows)
