"""GTP (gradient trajectory pursuit) as a selector: `fit` the trajectory features, then `select` by pursuit.

    gtp = as_top_level_api(task, checkpoints, d=256, key=0)        # binds the model side
    state = gtp.fit(pool)                                            # in-domain: b = mean row of A
    state = gtp.fit(pool, target_data=target)                        # target-domain: b = mean target row
    selection = gtp.select(state, fraction=0.01, method="omp")      # a jdps.selection.Selection

`fit` is the expensive, cacheable part (A [N, Td], b [Td], `jdps.gtp.trajectory`); `select` solves
min_{w >= 0, |w|_0 <= k} |A_S^T w - b|^2 (`jdps.gtp.pursuit`: 'omp', 'cosamp', 'gradmatch') or takes the top-k
by correlation ('topk', weight 1). The selection holds the examples' global indices and their weights
(fitting the mean trajectory, so they sum to about 1 for in-domain selection); `info` says how many atoms
the pursuit supports and why it stopped: a budget it cannot fill is reported, never filled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from jdps.gtp import pursuit

from jdps.gtp import trajectory
from jdps.errors import InputError
from jdps.selection import Selection
from jdps.validate import budget_from


class GTPState(NamedTuple):
    """features A [N, Td] (rows: examples `index` [N]) and the target trajectory b [Td]."""

    features: np.ndarray
    target: np.ndarray
    index: np.ndarray


class GTP(NamedTuple):
    fit: Callable
    select: Callable


def fit(task, checkpoints, data, *, d: int, key, target_data=None, out=None, **options) -> GTPState:
    """Trajectory features of `data` over `checkpoints` and the target: the mean row (in-domain) or the mean
    trajectory of `target_data` (target-domain, with the same projections, without Adam preconditioning).
    `options` go to `jdps.gtp.trajectory.trajectory_features`; `out` writes A to a .npy file (a memmap)."""
    traj = trajectory.trajectory_features(task, checkpoints, data, d=d, key=key, out=out, **options)
    if target_data is None:
        b = trajectory.mean_row(traj.features)
    else:
        options.pop("adam", None)
        options.pop("adam_betas", None)
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


def as_top_level_api(task, checkpoints, *, d: int, key, **trajectory_options) -> GTP:
    """Bind the model side: `fit(data, target_data=None, out=None)` and `select(state, budget=|fraction=, ...)`."""
    def fit_fn(data, target_data=None, out=None) -> GTPState:
        return fit(task, checkpoints, data, d=d, key=key, target_data=target_data, out=out, **trajectory_options)
    return GTP(fit_fn, select)
