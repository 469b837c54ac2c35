"""The linear datamodeling score (LDS; Park et al. 2023, TRAK), as the field computes it.

Scores tau [Q, N] (how much training example i raises query q's output; higher: more), M subsets S_s of the
N training examples (random halves, `random_subsets`), and the outputs of models trained on them:

    predicted[s, q] = sum_{i in S_s} tau[q, i]                     [M, Q]   (masks [M, N] @ tau^T)
    actual[s, q]    = f_q(theta*(S_s))                              [M, Q]   the query's correct-class margin
                                                                             log p - log(1 - p) of the model
                                                                             trained on S_s (`retrain.margins`)
    LDS_q = Spearman over s of (predicted[:, q], actual[:, q]);     LDS = mean_q LDS_q,  se = std_q / sqrt(Q)

A query whose actual (or predicted) outputs are all equal has no rank correlation; it is left out of the
mean and counted (`Score.defined`).
"""

from __future__ import annotations

import numpy as np

from jdps.errors import InputError
from jdps.metrics.correlation import Score, spearman, summarize
from jdps.validate import check_fraction, rng


def random_subsets(n: int, m: int, fraction: float = 0.5, *, seed) -> np.ndarray:
    """m random subsets of round(fraction n) of the n examples, each sorted: int32 [m, k] (numpy's
    default_rng(seed))."""
    check_fraction(fraction)
    k = round(fraction * n)
    if not 1 <= k <= n or m < 1:
        raise InputError(f"subsets need n >= 1, m >= 1 and 1 <= round(fraction n) <= n; got n={n}, m={m}, "
                         f"fraction={fraction}")
    r = rng(seed)
    return np.stack([np.sort(r.choice(n, k, replace=False)) for _ in range(m)]).astype(np.int32)


def masks(subsets, n: int) -> np.ndarray:
    """bool [M, N] from subsets given as index rows [M, k] or as masks [M, N]."""
    s = np.asarray(subsets)
    if s.dtype == bool:
        if s.ndim != 2 or s.shape[1] != n:
            raise InputError(f"subset masks must be bool [M, {n}] (one column per training example), got {s.shape}")
        return s
    if s.ndim != 2 or not np.issubdtype(s.dtype, np.integer):
        raise InputError(f"subsets must be index rows int [M, k] or masks bool [M, N], got {s.dtype} {s.shape}")
    if s.size and (s.min() < 0 or s.max() >= n):
        raise InputError(f"subset indices must lie in [0, {n}), got min {s.min()}, max {s.max()}")
    out = np.zeros((len(s), n), bool)
    np.put_along_axis(out, s.astype(np.int64), True, axis=1)
    return out


def predicted_outputs(scores, subsets) -> np.ndarray:
    """[M, Q]: sum over each subset of the scores tau [Q, N]."""
    tau = np.asarray(scores, np.float64)
    if tau.ndim != 2:
        raise InputError(f"scores must be [Q, N] (one row per query example), got shape {tau.shape}")
    return masks(subsets, tau.shape[1]).astype(np.float64) @ tau.T


def lds(scores, subsets, outputs) -> Score:
    """The LDS of scores tau [Q, N] against `outputs` [M, Q] (the margins of the M models trained on the
    `subsets`, index rows [M, k] or masks [M, N]): mean Spearman over queries, with its standard error."""
    predicted = predicted_outputs(scores, subsets)
    actual = np.asarray(outputs, np.float64)
    if actual.shape != predicted.shape:
        raise InputError(f"outputs must be [M, Q] = {predicted.shape} (one row per subset, one column per query), "
                         f"got {actual.shape}")
    return summarize(spearman(predicted, actual))
