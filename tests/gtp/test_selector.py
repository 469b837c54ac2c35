"""GTP's select: class-balanced pursuit and the opt-in fill, against numpy/scipy references by hand."""

import numpy as np
import pytest

from jdps import gtp
from jdps.errors import InputError
from jdps.gtp.selector import GTPState, quotas
from tests.gtp.test_pursuit import reference_omp


def test_quotas_split_by_size_with_largest_remainders_and_caps():
    assert quotas([5, 3, 2], 5).tolist() == [3, 1, 1]           # exact 2.5, 1.5, 1.0: the tie to group 0
    assert quotas([1, 9], 5).tolist() == [1, 4]                  # exact 0.5, 4.5
    assert quotas([2, 2], 9).tolist() == [2, 2]                  # never above a group's size
    assert quotas([10, 10, 10], 30).tolist() == [10, 10, 10]


def state(seed=0, n=60, d=12):
    rng = np.random.default_rng(seed)
    a = (rng.normal(size=(n, d)) + 0.5).astype(np.float32)
    return GTPState(a, a.astype(np.float64).mean(0).astype(np.float32), np.arange(n) + 1000)


def test_balanced_pursuit_is_one_nnls_omp_per_group_on_its_share_of_the_mean_row():
    s = state()
    groups = np.repeat([7, 3, 5], [30, 20, 10])                 # unsorted names, unequal sizes
    sel = gtp.select(s, budget=6, method="omp", groups=groups)
    a = s.features.astype(np.float64)
    want_rows, want_w = [], []
    for g, k in zip([3, 5, 7], [2, 1, 3]):                      # quotas of 20, 10, 30 rows for k = 6
        rows = np.flatnonzero(groups == g)
        support, w, _, _ = reference_omp(a[rows], a[rows].sum(0) / len(a), k)
        want_rows += rows[support].tolist()
        want_w += w.tolist()
    got = dict(zip((sel.indices - 1000).tolist(), sel.weights))
    assert sorted(got) == sorted(want_rows) and sel.info["stop_reason"] == "budget"
    np.testing.assert_allclose([got[r] for r in want_rows], want_w, rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="one group"):
        gtp.select(s, budget=6, groups=groups[:5])
    other = GTPState(s.features, s.features[0], s.index)          # a target-domain target
    with pytest.raises(InputError, match="in-domain"):
        gtp.select(other, budget=6, groups=groups)


def test_fill_pursuit_repeats_on_the_rows_left_and_mixes_the_fits():
    s = state(1, n=40, d=6)
    a, b = s.features.astype(np.float64), s.target.astype(np.float64)
    plain = gtp.select(s, budget=10, method="omp")
    assert plain.info["count"] < 10 and plain.info["stop_reason"] != "budget"      # D = 6 caps one pass
    sel = gtp.select(s, budget=10, method="omp", fill="pursuit")
    rows, parts, left = np.arange(40), [], 10
    while left > 0:                                                # the reference: NNLS-OMP pass after pass
        support, w, _, _ = reference_omp(a[rows], b, left)
        if not support:
            break
        parts.append((rows[support], w))
        rows = np.setdiff1d(rows, rows[support])
        left -= len(support)
    total = sum(len(r) for r, _ in parts)
    want = {int(r): float(v) * len(rr) / total for rr, w in parts for r, v in zip(rr, w)}
    got = dict(zip((sel.indices - 1000).tolist(), sel.weights))
    assert len(sel) == len(set(got)) == total == 10 and sel.info["passes"] == [len(r) for r, _ in parts]
    assert sorted(got) == sorted(want) and sel.info["stop_reason"] == plain.info["stop_reason"]
    np.testing.assert_allclose([got[r] for r in sorted(want)], [want[r] for r in sorted(want)], rtol=1e-3, atol=1e-6)
    assert sel.info["relative_residual"] == pytest.approx(
        np.linalg.norm(b - a[sorted(want)].T @ np.array([want[r] for r in sorted(want)])) / np.linalg.norm(b), rel=1e-3)


def test_fill_score_takes_the_rest_by_correlation_with_the_mean_pursuit_weight():
    s = state(1, n=40, d=6)                                       # the shapes compiled above
    plain = gtp.select(s, budget=10, method="omp")
    sel = gtp.select(s, budget=10, method="omp", fill="score")
    a, b = s.features.astype(np.float64), s.target.astype(np.float64)
    corr = a @ b
    corr[plain.indices - 1000] = -np.inf
    extra = np.argsort(-corr, kind="stable")[:10 - len(plain)]
    assert (sel.indices - 1000).tolist() == (plain.indices - 1000).tolist() + extra.tolist()
    np.testing.assert_allclose(sel.weights[len(plain):], plain.weights.mean(), rtol=1e-6)
    with pytest.raises(InputError, match="unknown fill"):
        gtp.select(s, budget=10, fill="pad")
