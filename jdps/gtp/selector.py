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


FILLS = ("pursuit", "score")


def quotas(sizes, k: int) -> np.ndarray:
    """k split over groups in proportion to their sizes [G] (largest remainders; ties to the lowest group),
    no group above its size: int [G] summing to min(k, sum sizes)."""
    sizes = np.asarray(sizes, np.int64)
    k = min(int(k), int(sizes.sum()))
    exact = k * sizes / sizes.sum()
    q = np.minimum(np.floor(exact).astype(np.int64), sizes)
    while q.sum() < k:
        room = q < sizes
        gain = np.where(room, exact - q, -np.inf)
        q[int(np.argmax(gain))] += 1
    return q


def _pursue(features, target, k: int, method: str, rows, solver_options):
    """The pursuit on the rows `rows` of A: (rows chosen, weights, result)."""
    whole = len(rows) == len(features)                      # all rows: A as given (a memmap streams)
    result = pursuit.solve(features if whole else features[rows], target, k, method=method, **solver_options)
    return rows[result.indices], np.asarray(result.weights, np.float64), result


def _balanced(state: GTPState, k: int, method: str, groups, solver_options):
    """One pursuit per group g on its own rows, budget k_g (`quotas`), target (n_g / N) mean_{i in g} a_i
    (they sum to the in-domain target, the mean row): (rows, weights, per-group stop reasons)."""
    groups = np.asarray(groups)
    n = len(state.features)
    if groups.shape != (n,):
        raise InputError(f"groups must give one group (class, cluster) per candidate row ({n}), got shape "
                         f"{groups.shape}")
    names, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse)
    totals = np.zeros((len(names), state.features.shape[1]))
    np.add.at(totals, inverse, np.asarray(state.features, np.float64))
    if not np.allclose(totals.sum(0) / n, state.target, rtol=1e-4, atol=1e-6 * np.abs(state.target).max()):
        raise InputError("balanced pursuit splits the in-domain target (the mean row of A) over the groups; "
                         "this state's target is another (target-domain selection): drop groups=")
    picked, weights, stops = [], [], {}
    for g, q in enumerate(quotas(sizes, k)):
        if q == 0:
            continue
        rows = np.flatnonzero(inverse == g)
        if not np.any(totals[g]):
            continue
        chosen, w, result = _pursue(state.features, (totals[g] / n).astype(np.float32), int(q), method, rows,
                                    solver_options)
        picked.append(chosen)
        weights.append(w)
        stops[names[g].item() if hasattr(names[g], "item") else names[g]] = result.stop_reason
    return np.concatenate(picked), np.concatenate(weights), stops


def select(state: GTPState, *, budget: int | None = None, fraction: float | None = None, method: str = "omp",
           groups=None, fill: str | None = None, **solver_options) -> Selection:
    """Select k = budget (or ceil(fraction N)) examples by `method`; `solver_options` go to
    `jdps.gtp.pursuit.solve` (tol, iterations, ridge, score, mesh, block_rows). Weights are non-negative.

    groups: [N] a class or cluster per row: a balanced pursuit (in-domain only), one pursuit per group with
    a budget in proportion to its size and its share (n_g / N) mean_g of the mean row as target.
    fill: None (default: stop where the pursuit stops, with its reason, fewer than k atoms possible);
    'pursuit': further passes of the same pursuit over the rows not chosen yet, each fitting the same
    target with the budget left, until k are chosen or a pass adds none; pass j's weights are scaled by
    its share of the atoms (a convex mix of fits of b is a fit of b); 'score': the budget left by the
    largest correlation a_i . b among the rows not chosen, each weighted by the mean pursuit weight.
    """
    if not solver_options.get("nonneg", True):
        raise InputError("a Selection holds non-negative training weights; for signed weights call "
                         "jdps.gtp.pursuit.solve(A, b, k, nonneg=False) on state.features, state.target")
    if fill is not None and fill not in FILLS:
        raise InputError(f"unknown fill {fill!r}; pass None (stop where the pursuit stops) or one of {FILLS}")
    if fill is not None and method == "topk":
        raise InputError("top-k always takes k rows: drop fill=")
    n = len(state.features)
    k = budget_from(n, budget=budget, fraction=fraction)
    every = np.arange(n)
    if groups is None:
        chosen, weights, result = _pursue(state.features, state.target, k, method, every, solver_options)
        stop, extra = result.stop_reason, {"iterations": result.iterations}
    else:
        chosen, weights, stops = _balanced(state, k, method, groups, solver_options)
        stop = "budget" if len(chosen) == k else min(set(stops.values()) - {"budget"}, default="budget")
        extra = {"group_stop_reasons": stops}
    passes = [len(chosen)]
    if fill == "pursuit":
        parts = [(chosen, weights)]
        while sum(passes) < k:
            rest = np.setdiff1d(every, np.concatenate([c for c, _ in parts]))
            if len(rest) == 0:
                break
            more, w, _ = _pursue(state.features, state.target, min(k - sum(passes), len(rest)), method, rest,
                                 solver_options)
            if len(more) == 0:
                break
            parts.append((more, w))
            passes.append(len(more))
        total = sum(passes)
        chosen = np.concatenate([c for c, _ in parts])
        weights = np.concatenate([w * len(c) / total for c, w in parts])
    elif fill == "score" and len(chosen) < k:
        corr = np.asarray(state.features @ state.target, np.float64)
        corr[chosen] = -np.inf
        more = np.argsort(-corr, kind="stable")[:k - len(chosen)]
        fill_w = float(weights.mean()) if len(weights) else 1.0
        chosen, weights = np.concatenate([chosen, more]), np.concatenate([weights, np.full(len(more), fill_w)])
        passes.append(len(more))
    residual = state.target - np.asarray(state.features[np.sort(chosen)].T @ weights[np.argsort(chosen)]) \
        if len(chosen) else state.target
    b_norm = float(np.linalg.norm(state.target))
    r_norm = float(np.linalg.norm(residual)) if method != "topk" else float("nan")
    info = {"method": f"gtp/{method}", "budget": k, "count": len(chosen), "stop_reason": stop,
            "residual_norm": r_norm, "relative_residual": r_norm / b_norm, "fill": fill,
            "pursuit_count": passes[0], "passes": passes, **extra}
    return Selection(np.asarray(state.index)[chosen], weights, None, info)


@dataclass(frozen=True)
class GTPOptions:
    """Trajectory features (`jdps.gtp.trajectory.trajectory_features`): projection width d per checkpoint,
    the gradient form ('vmap': materialised per-example gradients, then projected; 'factored': LoGra-style,
    never formed), the parameters that count, the projection's kind, batch and vmap chunk sizes, per-row
    normalisation (default on: each checkpoint's rows to unit length, as LESS; without it OMP favours the
    examples of largest gradient, the ones the warm-up model gets wrong, and loses to random at small
    budgets: experiments/results/gtp_screen.md, gtp_coreset.md), one projection shared by every checkpoint,
    checkpoint weights c_t, and a `.npy` path to write A into (a memmap for pools too large for memory)."""

    d: int = 256
    grad_form: str = "vmap"
    param_filter: Any = None
    kind: str = "rademacher"
    batch_size: int = 256
    chunk_size: int | None = None
    normalize: bool = True
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
