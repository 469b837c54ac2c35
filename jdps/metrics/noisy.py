"""Noisy-label detection: mislabelled training examples should have the highest self-influence.

    self-influence s_i = tau(z_i, z_i)      the score of a training example on itself (`self_scores`)
    AUROC = P(s_noisy > s_clean) + P(s_noisy = s_clean) / 2     (Mann-Whitney U / (n_noisy n_clean))

1 when every mislabelled example outranks every clean one, 0.5 for a random order.
"""

from __future__ import annotations

import numpy as np

from jdps.data.dataset import host_arrays
from jdps.errors import InputError
from jdps.metrics.correlation import ranks


def auroc(scores, positive) -> float:
    """Area under the ROC curve of `scores` [N] for the bool labels `positive` [N] (ties count half)."""
    s = np.asarray(scores, np.float64).reshape(-1)
    pos = np.asarray(positive).reshape(-1)
    if pos.dtype != bool or pos.shape != s.shape:
        raise InputError(f"positive must be bool [N] like scores {s.shape}, got {pos.dtype} {pos.shape}")
    if not np.isfinite(s).all():
        raise InputError("scores hold NaN or Inf; an AUROC needs finite scores")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise InputError(f"an AUROC needs both classes: {n_pos} positive and {n_neg} negative examples")
    r = ranks(s[:, None])[:, 0]
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def self_scores(selector, state, pool, *, chunk: int = 512) -> np.ndarray:
    """s_i = scores(state, z_i)[i]: the diagonal of a contract selector's [N, N] scores of the pool on itself,
    `chunk` query rows at a time -> [N]."""
    arrays = host_arrays(pool, "pool")
    n = len(arrays["x"])
    out = np.empty(n)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        s = np.asarray(selector.scores(state, {k: v[rows] for k, v in arrays.items()}))
        out[rows] = s[np.arange(len(rows)), rows]
    return out


def noisy_label_auroc(self_influence, noisy) -> float:
    """AUROC of the self-influence [N] for finding the mislabelled examples (`noisy` bool [N])."""
    return auroc(self_influence, np.asarray(noisy, bool))
