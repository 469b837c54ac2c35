"""The result every selector returns, and the readout of per-example scores into one.

`Selection(indices, weights, scores, info)`:

    indices  int [k]    the selected examples (global indices), best first; ties go to the lowest index
    weights  float [k]  the training weight of each selected example, >= 0
    scores   float [N]  the per-example score the selection ranked by (higher is better), or None
    info     dict       what the selector wants to report (method, budget, ...)

`readout(scores, budget= | fraction= | threshold= | soft=True)` reads per-example scores (e.g. BADS
posterior-mean weights) out as a hard selection (every weight 1) of the top k, of the top ceil(f N), or
of those >= threshold; or as a soft one (every example, weighted by its score, which must be >= 0).
`random_subset(key, n, budget= | fraction=)` is the one uniform random selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import warnings

import jax
import numpy as np

from jdps.errors import InputError
from jdps.validate import as_key, budget_from


@dataclass(frozen=True)
class Selection:
    """Selected example indices [k] with their weights [k] >= 0, the scores [N] and an info dict."""

    indices: np.ndarray
    weights: np.ndarray
    scores: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        indices = np.asarray(self.indices, dtype=np.int64)
        weights = np.asarray(self.weights, dtype=np.float64)
        if indices.ndim != 1 or indices.shape != weights.shape:
            raise InputError(f"a Selection needs indices [k] and weights [k] of one length, got shapes "
                             f"{indices.shape} and {weights.shape}")
        if not np.all(np.isfinite(weights) & (weights >= 0)):
            raise InputError("selection weights must be finite and >= 0; clip or drop negative weights")
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "weights", weights)

    def __len__(self) -> int:
        return len(self.indices)


def ranking(scores) -> np.ndarray:
    """All indices by decreasing score, ties broken by the lowest index: [N] -> int [N]."""
    scores = _checked(scores)
    return np.argsort(-scores, kind="stable")


def _checked(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0:
        raise InputError(f"scores must be a non-empty 1-d array (one per example), got shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        bad = np.flatnonzero(~np.isfinite(scores))
        raise InputError(f"scores hold NaN or Inf at {len(bad)} example(s), first {bad[:5].tolist()}; "
                         "score every example (e.g. run the sampler past burn-in) before selecting")
    return scores


def readout(scores, *, budget: int | None = None, fraction: float | None = None,
            threshold: float | None = None, soft: bool = False, info: dict | None = None) -> Selection:
    """Read per-example scores [N] (>= 0 for `soft`) out as a `Selection`; give exactly one mode.

    budget / fraction: the k (or ceil(fraction N)) highest scores, weight 1 each.
    threshold: every example with score >= threshold, weight 1 each (may be empty).
    soft: every example, weighted by its score.
    Indices come best first, ties broken by the lowest index.
    """
    if not isinstance(soft, (bool, np.bool_)):
        raise InputError(f"soft must be True (weight every example by its score) or False, got {soft!r}")
    modes = {"budget": budget, "fraction": fraction, "threshold": threshold, "soft": soft or None}
    given = [k for k, v in modes.items() if v is not None]
    if len(given) != 1:
        raise InputError(f"give exactly one of budget, fraction, threshold or soft=True (got {given or 'none'})")
    scores = _checked(scores)
    order = ranking(scores)
    info = {"mode": given[0], **(info or {})}
    if soft:
        if np.any(scores < 0):
            raise InputError("soft selection needs scores >= 0 (they become training weights); "
                             "shift or clip the scores, or use budget / fraction")
        return Selection(order, scores[order], scores, info)
    if threshold is not None:
        if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
                or not np.isfinite(threshold):
            raise InputError(f"threshold must be a finite number (keep the scores >= it), got {threshold!r}")
        order = order[scores[order] >= threshold]
    else:
        order = order[: budget_from(len(scores), budget=budget, fraction=fraction)]
    return Selection(order, np.ones(len(order)), scores, info)


def select(scores, *, top_k: int | None = None, **modes) -> Selection:
    """Deprecated name of `readout` (its `top_k=` is now `budget=`); it warns and will go."""
    warnings.warn("jdps.selection.select is deprecated: call jdps.selection.readout(scores, budget=k, ...)",
                  DeprecationWarning, stacklevel=2)
    return readout(scores, budget=top_k, **modes)


def random_subset(key, n: int, *, budget: int | None = None, fraction: float | None = None) -> np.ndarray:
    """k = budget (or ceil(fraction n)) distinct indices of 0..n-1 drawn uniformly from `key` (a jax key
    or an integer seed), in increasing order -> int [k]."""
    k = budget_from(n, budget=budget, fraction=fraction)
    return np.sort(np.asarray(jax.random.choice(as_key(key), n, (k,), replace=False)))


def mean_weight_by_group(weights, groups) -> dict:
    """Mean weight of each group (class, source, domain): weights [N], groups [N] -> {group: mean}.

    Groups come in sorted order; a group's mean is (1 / n_g) sum_{i in g} w_i.
    """
    weights = _checked(weights)
    groups = np.asarray(groups)
    if groups.shape != weights.shape:
        raise InputError(f"groups must give one group per weight: weights {weights.shape}, groups {groups.shape}")
    names, inverse = np.unique(groups, return_inverse=True)
    means = np.bincount(inverse, weights=weights) / np.bincount(inverse)
    return {name.item() if hasattr(name, "item") else name: float(m) for name, m in zip(names, means)}
