"""Column-wise rank and linear correlations, and a mean over query examples with its standard error.

    ranks(a)          average ranks along axis 0 (ties share the mean of their ranks), 1..M
    pearson(a, b)     r_j = sum_s (a_sj - mean a_j)(b_sj - mean b_j) / (|a_j - mean| |b_j - mean|)   [Q]
    spearman(a, b)    pearson(ranks(a), ranks(b))                                                    [Q]
    summarize(r)      Score(mean, se, per_query, defined): mean and standard error std / sqrt(Q) over the
                      queries whose correlation is defined (NaN where a column is constant)

a, b: [M, Q] (M observations of Q query examples), or [M] for one query.
"""

from __future__ import annotations

import numpy as np

from jdps.errors import InputError


class Score(float):
    """The mean over the defined queries (the float itself, also `.mean`), its standard error `.se` (sample std /
    sqrt(defined)), the per-query values `.per_query` [Q] (NaN where undefined) and how many are `.defined`;
    `mean, se = score` unpacks the pair."""

    def __new__(cls, mean: float, se: float, per_query, defined: int):
        score = super().__new__(cls, mean)
        score.se, score.per_query, score.defined = float(se), np.asarray(per_query), int(defined)
        return score

    @property
    def mean(self) -> float:
        return float(self)

    def __iter__(self):
        return iter((self.mean, self.se))

    def __repr__(self) -> str:
        return f"Score(mean={self.mean:.4g}, se={self.se:.3g}, defined={self.defined} of {len(self.per_query)})"

    def as_dict(self) -> dict:
        return {"mean": self.mean, "se": self.se, "defined": self.defined, "queries": len(self.per_query)}


def _columns(a, name: str) -> np.ndarray:
    a = np.asarray(a, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 2:
        raise InputError(f"{name} must be [M, Q] (or [M]) with M >= 2 observations, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} holds NaN or Inf; drop those observations or fix their source")
    return a


def ranks(a) -> np.ndarray:
    """Average ranks (1..M) of each column of a [M, Q] along axis 0; ties get the mean of their ranks."""
    a = np.asarray(a, np.float64)
    order = np.argsort(a, axis=0, kind="stable")
    sorted_a = np.take_along_axis(a, order, axis=0)
    m = a.shape[0]
    out = np.empty_like(a)
    for j in range(a.shape[1]):
        col = sorted_a[:, j]
        starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])      # first position of each tie group
        ends = np.r_[starts[1:], m]
        mean_rank = (starts + ends + 1) / 2.0                           # mean of the 1-based ranks start+1..end
        out[order[:, j], j] = np.repeat(mean_rank, ends - starts)
    return out


def pearson(a, b) -> np.ndarray:
    """Per-column Pearson correlation of a, b [M, Q] -> [Q] (NaN where a column is constant)."""
    a, b = _columns(a, "a"), _columns(b, "b")
    if a.shape != b.shape:
        raise InputError(f"the two arrays need one shape [M, Q], got {a.shape} and {b.shape}")
    a, b = a - a.mean(0), b - b.mean(0)
    denom = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(0) / np.where(denom > 0, denom, 1.0), np.nan)


def spearman(a, b) -> np.ndarray:
    """Per-column Spearman rank correlation of a, b [M, Q] -> [Q] (NaN where a column is constant)."""
    a, b = _columns(a, "a"), _columns(b, "b")
    return pearson(ranks(a), ranks(b))


def summarize(per_query) -> Score:
    """Mean and standard error over the finite entries of per_query [Q]."""
    r = np.asarray(per_query, np.float64).reshape(-1)
    ok = np.isfinite(r)
    k = int(ok.sum())
    if k == 0:
        return Score(float("nan"), float("nan"), r, 0)
    se = float(r[ok].std(ddof=1) / np.sqrt(k)) if k > 1 else float("nan")
    return Score(float(r[ok].mean()), se, r, k)
