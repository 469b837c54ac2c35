"""Pursuit solvers against plain numpy / scipy / scikit-learn implementations of the same algorithms.

One problem shape (N = 120 candidates, Td = 24, k = 10) is shared so each solver compiles once."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls as scipy_nnls
from sklearn.linear_model import OrthogonalMatchingPursuit

from jdps.gtp import pursuit as pu
from jdps.errors import InputError
from jdps.gtp.pursuit.nnls import cholesky

N, D, K = 120, 24, 10
NOISE = float(np.sqrt(np.finfo(np.float32).eps))  # the correlation / residual floor of float32


def problem(seed):
    """Rows with shared components (so NNLS drops atoms now and then) and a target outside their cone."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(N, D)).astype(np.float32)
    a[: N // 2] += 0.8 * a[N // 2:]
    return a, rng.normal(size=D)


def gated_argmax(a, r, b, exclude=()):
    c = a @ r
    ok = c > NOISE * np.linalg.norm(b) * np.linalg.norm(a, axis=1)
    ok[list(exclude)] = False
    return int(np.argmax(np.where(ok, c, -np.inf))) if ok.any() else None


def reference_omp(a, b, k, ridge=0.0):
    """Non-negative OMP in float64: the row of largest positive correlation joins, scipy NNLS (ridge: on
    [A_S^T; sqrt(ridge) I] w = [b; 0]) refits from scratch, atoms of weight 0 leave; a row in the support is
    never offered again (with a ridge it can stay correlated with the residual). Also counts removals."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    support, w, removed = [], np.zeros(0), 0
    for _ in range(4 * k + 10):
        j = gated_argmax(a, b - a[support].T @ w, b, exclude=support)
        if j is None:
            return support, w, "no_positive_correlation", removed
        s = support + [j]
        x, _ = scipy_nnls(np.vstack([a[s].T, np.sqrt(ridge) * np.eye(len(s))]), np.r_[b, np.zeros(len(s))])
        removed += int((x <= 0).sum())
        support, w = [i for i, v in zip(s, x) if v > 0], x[x > 0]
        if len(support) == k:
            return support, w, "budget", removed
        if ridge == 0 and len(support) >= a.shape[1]:
            return support, w, "rank_limit", removed
        if np.linalg.norm(b - a[support].T @ w) <= NOISE * np.linalg.norm(b):
            return support, w, "tolerance", removed
    return support, w, "max_iterations", removed


def reference_cosamp(a, b, k, iterations=10):
    """CoSaMP in float64: the top 2k positive correlations join the support, scipy NNLS on the union, keep the
    k largest positive weights, NNLS again on them; stop when nothing new joins or the support is stable."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    norms, support, w = np.linalg.norm(a, axis=1), [], np.zeros(0)
    for _ in range(iterations):
        c = a @ (b - a[support].T @ w)
        ok = c > NOISE * np.linalg.norm(b) * norms
        ok[support] = False
        fresh = [i for i in np.argsort(-np.where(ok, c, -np.inf), kind="stable")[: 2 * k] if ok[i]]
        if not fresh:
            return support, w, "no_positive_correlation"
        union = sorted(set(support) | set(fresh))
        z, _ = scipy_nnls(a[union].T, b)
        pruned = [union[i] for i in np.argsort(-z, kind="stable")[:k] if z[i] > 0]
        x, _ = scipy_nnls(a[pruned].T, b)
        order = [i for i in np.argsort(-x, kind="stable") if x[i] > 0]
        stable = sorted(pruned[i] for i in order) == sorted(support)
        support, w = [pruned[i] for i in order], x[order]
        if np.linalg.norm(b - a[support].T @ w) <= NOISE * np.linalg.norm(b):
            return support, w, "tolerance"
        if stable:
            return support, w, "budget" if len(support) == k else "no_positive_correlation"
    return support, w, "max_iterations"


def test_nnls_matches_scipy_and_copes_with_a_singular_gram():
    rng = np.random.default_rng(0)
    for _ in range(4):
        m = rng.normal(size=(12, 30))
        y = rng.normal(size=30)
        want, _ = scipy_nnls(m.T, y)
        got = np.asarray(pu.nnls(jnp.asarray(m @ m.T, jnp.float32), jnp.asarray(m @ y, jnp.float32)))
        assert 0 < (want > 0).sum() < 12  # some constraints active
        np.testing.assert_allclose(got, want, atol=2e-5)
    m[[4, 9]] = m[2]  # three identical rows: G is singular
    y = m[2] * 3 + 0.1 * rng.normal(size=30)
    want, _ = scipy_nnls(m.T, y)
    got = np.asarray(pu.nnls(jnp.asarray(m @ m.T, jnp.float32), jnp.asarray(m @ y, jnp.float32)))
    assert np.isfinite(got).all() and (got[[2, 4, 9]] > 0).sum() == 1 and got[2] > 0  # the lowest copy
    np.testing.assert_allclose(np.linalg.norm(m.T @ got - y), np.linalg.norm(m.T @ want - y), rtol=1e-4)


def _nnls(m, y, dtype, w0=None):
    """Our NNLS on the Gram system of M^T w ~ y, in `dtype` (float64 under enable_x64)."""
    with jax.enable_x64(dtype == np.float64):
        g, h = jnp.asarray(m @ m.T, dtype), jnp.asarray(m @ y, dtype)
        return np.asarray(pu.nnls(g, h, w0=None if w0 is None else jnp.asarray(w0, dtype)), np.float64)


def test_nnls_steps_back_from_a_positive_warm_start_to_scipys_answer():
    """Warm-started from w0 > 0 everywhere, every weight scipy leaves at 0 must leave the passive set (a step
    back), so the factor is downdated many times and must still give scipy's answer. Twin problems (two
    copies of one problem on disjoint rows and coordinates) tie, so that two weights reach 0 at once."""
    rng = np.random.default_rng(5)
    cases = []
    for rows, obs, dtypes in ((40, 80, (np.float64, np.float32)), (150, 300, (np.float64,))):
        for _ in range(3):
            m = rng.normal(size=(rows, obs))
            m[: rows // 2] += 0.5 * m[rows // 2:]  # correlated rows: the path zig-zags
            cases.append((m, rng.normal(size=obs), rng.uniform(0.5, 1.5, rows), dtypes))
    for _ in range(2):
        half = rng.normal(size=(20, 40))
        half[:10] += 0.5 * half[10:]
        m = np.block([[half, np.zeros_like(half)], [np.zeros_like(half), half]])
        y, w0 = rng.normal(size=40), rng.uniform(0.5, 1.5, 20)
        cases.append((m, np.r_[y, y], np.r_[w0, w0], (np.float64, np.float32)))
    for m, y, w0, dtypes in cases:
        want, _ = scipy_nnls(m.T, y, maxiter=50 * len(m))
        assert (want == 0).sum() >= len(m) // 3  # many step backs
        for dtype in dtypes:
            tol = 1e-5 if dtype == np.float64 else 1e-3
            for start in (w0, None):
                got = _nnls(m, y, dtype, start)
                assert (got >= 0).all()
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def test_nnls_with_duplicated_gram_rows_keeps_one_copy_and_scipys_fit():
    """Copies of a row make G singular: at most one copy of each carries weight, also from a warm start that
    is positive on every copy, and the fit (per group of copies) is scipy's on the rows without copies."""
    rng = np.random.default_rng(6)
    groups = [[2, 5, 9, 13], [7, 16]]
    m = rng.normal(size=(20, 50))
    for g in groups:
        m[g[1:]] = m[g[0]]
    y = m[[2, 7, 11]].T @ np.array([2.0, 1.0, 0.5]) + 0.3 * rng.normal(size=50)
    unique = [i for i in range(20) if not any(i in g[1:] for g in groups)]
    want, _ = scipy_nnls(m[unique].T, y)
    assert all(want[unique.index(g[0])] > 0 for g in groups)  # the copies matter
    for dtype, tol in ((np.float64, 1e-6), (np.float32, 1e-3)):
        for start in (None, np.ones(20), rng.uniform(0.5, 1.5, 20)):
            got = _nnls(m, y, dtype, start)
            assert np.isfinite(got).all() and all((got[g] > 0).sum() == 1 for g in groups)
            merged = got.copy()
            for g in groups:
                merged[g[0]] = got[g].sum()
            np.testing.assert_allclose(merged[unique], want, rtol=tol, atol=tol * np.abs(want).max())


def test_blocked_cholesky_matches_numpy():
    rng = np.random.default_rng(8)
    for m in (100, 300):  # one block; three blocks of 128, 128 and 44 rows
        x = rng.normal(size=(m, m + 10))
        a = x @ x.T
        want = np.linalg.cholesky(a)
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 3e-5)):
            with jax.enable_x64(dtype == np.float64):
                got = np.asarray(cholesky(jnp.asarray(a, dtype)), np.float64)
            np.testing.assert_allclose(got, want, atol=tol * np.abs(want).max())
    a[:, 7], a[7] = a[:, 200], a[200]
    a[7, 7] = a[200, 200] / 2  # (e_7 - e_200)^T A (e_7 - e_200) = -A_200,200 / 2 < 0: indefinite
    assert np.isnan(np.asarray(cholesky(jnp.asarray(a, jnp.float32)))).any()


def test_nonnegative_omp_matches_the_numpy_scipy_reference():
    removals = 0
    for seed in range(6):
        a, b = problem(seed)
        support, w, why, removed = reference_omp(a, b, K)
        got = pu.omp(a, b, K)
        removals += removed
        assert got.indices.tolist() == support and got.stop_reason == why
        np.testing.assert_allclose(got.weights, w, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.residual_norm, np.linalg.norm(b - a[support].T.astype(float) @ w), rtol=1e-4)
    assert removals > 0  # the Lawson-Hanson path (atoms leaving the support) was exercised


def test_signed_omp_matches_scikit_learn():
    for seed in range(3):
        a, b = problem(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sk = OrthogonalMatchingPursuit(n_nonzero_coefs=K, fit_intercept=False).fit(a.T.astype(np.float64), b)
        got = pu.omp(a, b, K, nonneg=False)  # sklearn fits b ~ X coef with columns X = A^T
        assert sorted(got.indices) == sorted(np.flatnonzero(sk.coef_)) and got.stop_reason == "budget"
        assert (got.weights < 0).any()
        np.testing.assert_allclose(got.weights, sk.coef_[got.indices], rtol=1e-4, atol=1e-5)


def test_gradmatch_matches_a_ridge_nnls_reference():
    a, b = problem(1)
    support, w, why, _ = reference_omp(a, b, K, ridge=0.5)
    got = pu.gradmatch(a, b, K, ridge=0.5)
    assert got.indices.tolist() == support and got.stop_reason == why
    np.testing.assert_allclose(got.weights, w, rtol=1e-4, atol=1e-5)


def test_gradmatch_never_picks_a_row_twice():
    """With the ridge refit a chosen row can stay correlated with the residual; it must not come back."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        a = rng.normal(size=(60, 12)).astype(np.float32)
        b = a[rng.integers(0, 60, 8)].sum(0)
        got = pu.gradmatch(a, b, 16)
        assert len(set(got.indices.tolist())) == len(got.indices) <= 16
        assert got.stop_reason != "budget" or len(got.indices) == 16


def test_cosamp_matches_the_numpy_scipy_reference():
    for seed in range(3):
        a, b = problem(seed)
        support, w, why = reference_cosamp(a, b, K)
        got = pu.cosamp(a, b, K)
        assert got.indices.tolist() == support and got.stop_reason == why
        np.testing.assert_allclose(got.weights, w, rtol=1e-4, atol=1e-5)


def test_planted_duplicates_topk_takes_all_omp_and_cosamp_one():
    a, b = problem(7)
    copies = [9, 40, 77, 111]
    a[copies] = (4 * b / np.linalg.norm(b) + 0.3 * np.random.default_rng(1).normal(size=D)).astype(np.float32)
    top = pu.topk(a, b, K)
    assert set(copies) <= set(top.indices) and top.indices[:4].tolist() == copies  # equal scores: lowest first
    for result in (pu.omp(a, b, K), pu.cosamp(a, b, K), pu.omp(a, b, K, nonneg=False),
                   pu.cosamp(a, b, K, nonneg=False)):
        assert [i for i in result.indices if i in copies] == [9] and len(result.indices) == K
        assert result.stop_reason in ("budget", "max_iterations")  # signed CoSaMP may keep swapping atoms


def test_topk_ranks_by_correlation_or_cosine_lowest_index_first():
    a, b = problem(2)
    a[50] = a[20]  # a tie
    c = a.astype(np.float64) @ b
    assert pu.topk(a, b, K).indices.tolist() == np.argsort(-c, kind="stable")[:K].tolist()
    cos = c / np.linalg.norm(a, axis=1)
    got = pu.topk(a, b, K, score="cosine")
    assert got.indices.tolist() == np.argsort(-cos, kind="stable")[:K].tolist()
    assert np.all(got.weights == 1) and np.isnan(got.residual_norm)


def test_budget_above_td_stops_at_the_rank_limit_and_says_so():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 6)).astype(np.float32)
    w = np.zeros(40)
    w[rng.choice(40, 15, replace=False)] = rng.uniform(0.5, 1.5, 15)
    b = a.T.astype(np.float64) @ w  # inside the cone of the rows
    for result in (pu.omp(a, b, K), pu.omp(a, b, K, nonneg=False), pu.cosamp(a, b, K)):
        assert len(result.indices) == 6 and result.stop_reason == "rank_limit"
        assert result.residual_norm < 1e-4 * np.linalg.norm(b)


def test_stops_at_tolerance_or_without_positive_correlation_never_filling():
    a = np.random.default_rng(0).normal(size=(N, D)).astype(np.float32)
    b = a[[3, 70, 101]].T.astype(np.float64) @ np.array([1.0, 2.0, 0.5])  # an exact combination of 3 rows
    for result in (pu.omp(a, b, K), pu.cosamp(a, b, K)):
        assert sorted(result.indices) == [3, 70, 101] and result.stop_reason == "tolerance"
    loose = pu.omp(a, b + 0.05 * np.random.default_rng(0).normal(size=D), K, tol=0.2)
    assert loose.stop_reason == "tolerance" and len(loose.indices) < K
    a[:, 0] = np.abs(a[:, 0]) + 1  # every row has a positive first coordinate
    b = -np.eye(D)[0]  # so every correlation with b is negative
    for result in (pu.omp(a, b, K), pu.cosamp(a, b, K)):
        assert len(result.indices) == 0 and result.stop_reason == "no_positive_correlation"


def test_bad_input_gets_clear_errors():
    a, b = problem(0)
    bad = a.copy()
    bad[3, 2], bad[17, 0] = np.nan, np.inf
    with pytest.raises(InputError, match=r"NaN or Inf in 2 row\(s\), index \[3, 17\]"):
        pu.omp(bad, b, K)
    with pytest.raises(InputError, match="Td = 24 columns"):
        pu.omp(a, b[:-1], K)
    for k in (0, N + 1, 2.5):
        with pytest.raises(InputError, match=r"budget k must be an integer in \[1, N\]"):
            pu.omp(a, b, k)
    with pytest.raises(InputError, match="all zeros"):
        pu.cosamp(a, np.zeros(D), K)
    with pytest.raises(InputError, match="unknown pursuit method"):
        pu.solve(a, b, K, method="lasso")
    with pytest.raises(InputError, match="ridge applies to method='gradmatch'"):
        pu.solve(a, b, K, method="omp", ridge=1.0)
