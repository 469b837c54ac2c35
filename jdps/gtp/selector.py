"""GTP (gradient trajectory pursuit) as a selector: `fit` the trajectory features, then `select` by pursuit.

    sel = jdps.selectors.make("gtp", task, checkpoints, d=256)      # the contract (GTPSelector below)
    state = sel.fit(pool, None, key=0)                              # in-domain: b = mean row of A
    state = sel.fit(pool, target, key=0)                            # target-domain: b = mean target row
    selection = sel.select(state, fraction=0.01, solver="omp")     # a jdps.selection.Selection

or the functions `fit(task, checkpoints, pool, d=, key=, target_data=)` and `select(state, ..., method=)`.

`fit` is the expensive, cacheable part (A [N, Td], b [Td], `jdps.gtp.trajectory`); `select` solves
min_{w >= 0, |w|_0 <= k} |A_S^T w - b|^2 (`jdps.gtp.pursuit`: 'omp', 'cosamp', 'gradmatch') or takes the top-k
by correlation ('topk', weight 1). The selection holds the examples' global indices and their weights
(fitting the mean trajectory, so they sum to about 1 for in-domain selection); `info` says how many atoms
the pursuit supports and why it stopped: a budget it cannot fill is reported, never filled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from jdps.gtp import pursuit

from jdps.gtp import trajectory
from jdps.errors import InputError
from jdps.selection import Selection
from jdps.selectors import Selector, checkpoint_list
from jdps.validate import budget_from


class GTPState(NamedTuple):
    """features A [N, Td] (rows: examples `index` [N]) and the target trajectory b [Td]."""

    features: np.ndarray
    target: np.ndarray
    index: np.ndarray


def fit(task, checkpoints, data, *, d: int, key, target_data=None, out=None, resume=None, **options) -> GTPState:
    """Trajectory features of `data` over `checkpoints` and the target: the mean row (in-domain) or the mean
    trajectory of `target_data` (target-domain, with the same projections, without Adam preconditioning).
    `options` go to `jdps.gtp.trajectory.trajectory_features`; `out` writes A to a .npy file (a memmap);
    `resume` (a `jdps.checkpoint.Checkpoints`) keeps A's finished checkpoint blocks, so a killed fit resumes; `progress=True` draws a bar over the checkpoints."""
    traj = trajectory.trajectory_features(task, checkpoints, data, d=d, key=key, out=out, resume=resume, **options)
    if target_data is None:
        b = trajectory.mean_row(traj.features)
    else:
        options.pop("adam", None)
        options.pop("adam_betas", None)
        options.pop("progress", None)
        b = trajectory.target_trajectory(task, checkpoints, target_data, d=d, key=key, **options)
    return GTPState(traj.features, b, traj.index)


def select(state: GTPState, *, budget: int | None = None, fraction: float | None = None, method: str = "omp",
           **solver_options) -> Selection:
    """Select k = budget (or ceil(fraction N)) examples by `method`; `solver_options` go to
    `jdps.gtp.pursuit.solve` (tol, iterations, ridge, score, mesh, block_rows). Weights are non-negative."""
    if not solver_options.get("nonneg", True):
        raise InputError("a Selection holds non-negative training weights; for signed weights call "
                         "jdps.gtp.pursuit.solve(A, b, k, nonneg=False) on state.features, state.target")
    k = budget_from(len(state.features), budget=budget, fraction=fraction)
    result = pursuit.solve(state.features, state.target, k, method=method, **solver_options)
    b_norm = float(np.linalg.norm(state.target))
    info = {"method": f"gtp/{method}", "budget": k, "count": len(result.indices),
            "stop_reason": result.stop_reason, "residual_norm": result.residual_norm,
            "relative_residual": result.residual_norm / b_norm, "iterations": result.iterations}
    return Selection(np.asarray(state.index)[result.indices], result.weights, None, info)


@dataclass(frozen=True)
class GTPOptions:
    """Trajectory features (`jdps.gtp.trajectory.trajectory_features`): projection width d per checkpoint,
    the gradient form ('vmap': materialised per-example gradients, then projected; 'factored': LoGra-style,
    never formed), the parameters that count, the projection's kind, batch and vmap chunk sizes, per-row
    normalisation, one projection shared by every checkpoint, checkpoint weights c_t, and a `.npy` path
    to write A into (a memmap for pools too large for memory)."""

    d: int = 256
    grad_form: str = "vmap"
    param_filter: Any = None
    kind: str = "rademacher"
    batch_size: int = 256
    chunk_size: int | None = None
    normalize: bool = False
    shared_projection: bool = False
    checkpoint_weights: tuple[float, ...] | None = None
    features_out: str | None = None


class GTPSelector(Selector):
    """fit(pool, reference=None, key): A over the checkpoints in `params` and the target b (the mean row
    of A without a reference, else the reference set's mean trajectory); select(state, budget | fraction,
    solver='omp' | 'cosamp' | 'gradmatch' | 'topk', **solver options) by `select` above."""

    Options, state_type = GTPOptions, GTPState

    def fit(self, pool, reference=None, *, key) -> GTPState:
        o = self.options
        return fit(self.task, checkpoint_list(self.params), pool, d=o.d, key=key, target_data=reference,
                   out=o.features_out, method=o.grad_form, param_filter=o.param_filter, kind=o.kind,
                   batch_size=o.batch_size, chunk_size=o.chunk_size, normalize=o.normalize,
                   shared_projection=o.shared_projection, checkpoint_weights=o.checkpoint_weights)

    def select(self, state: GTPState, *, budget=None, fraction=None, key=None, solver: str = "omp",
               **solver_options) -> Selection:
        if budget is None and fraction is None:
            raise InputError("gtp needs a size: the pursuit picks at most budget=k (or fraction=f of the pool)")
        return select(state, budget=budget, fraction=fraction, method=solver, **solver_options)
