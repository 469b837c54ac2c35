"""The GTP cost benchmark (scripts/bench_pursuit.py): its problem construction against scipy, and its report."""

import numpy as np
import pytest
from scipy.optimize import nnls

from scripts import bench_pursuit as bench


def test_slope_is_the_log_log_exponent():
    n = np.array([1e4, 1e5, 1e6])
    assert bench.slope(n, 3e-7 * n ** 1.5) == pytest.approx(1.5)
    assert bench.slope(n, np.full(3, 2.0)) == pytest.approx(0.0, abs=1e-12)


def test_bench_problem_target_lies_in_a_non_negative_cone(tmp_path):
    a, b = bench.problem(300, 40, 5, seed=1)
    assert a.shape == (300, 40) and a.dtype == np.float32 and b.shape == (40,)
    w, residual = nnls(a.T.astype(np.float64), b.astype(np.float64))
    assert residual < 1e-4 * np.linalg.norm(b) and (w > 1e-6).sum() <= 10  # b = A_S^T w, |S| = 2k, w > 0
    m, b2 = bench.problem(300, 40, 5, seed=1, path=str(tmp_path / "A.npy"))
    assert isinstance(m, np.memmap)
    np.testing.assert_array_equal(np.asarray(m), np.load(tmp_path / "A.npy"))
    assert nnls(np.asarray(m).T.astype(np.float64), b2.astype(np.float64))[1] < 1e-4 * np.linalg.norm(b2)


def _row(n, d, k, method, seconds, streamed=False):
    return {"N": n, "Td": d, "k": k, "method": method, "seconds": seconds, "compile_seconds": 1.0, "count": k,
            "stop_reason": "budget", "iterations": k, "relative_residual": 0.5, "streamed": streamed}


def test_bench_report_states_the_exponents_and_ratios():
    res = {"setup": {"repeats": 2},
           "n": [_row(n, 64, 8, "omp", 1e-4 * n) for n in (10**4, 10**5)] + [_row(10**6, 64, 8, "omp", 500.0, True)],
           "k": [_row(1000, 64, k, m, t) for k in (10, 40) for m, t in (("omp", k / 10), ("cosamp", k / 100))]
           + [_row(10**6, 64, 40, "omp", 40.0), _row(10**6, 64, 40, "cosamp", 2.0)],  # a large N: not in the fit
           "td": [_row(1000, d, 8, "omp", (d / 64) ** 2) for d in (64, 256)],
           "sklearn": {"N": 10, "Td": 4, "k": 2, "ours_signed": 0.5, "ours_nonneg": 0.6, "sklearn": 1.5,
                       "same_support": True, "overlap": 2},
           "features": [{"method": "vmap", "N": [10, 20], "L": 8, "params": 100, "d": 4, "seconds": [1.0, 2.0],
                         "examples_per_s": 10.0}]}
    text = bench.report(res, "PYTHONPATH=. python scripts/bench_pursuit.py", "a machine")
    assert "log-log slope): **1.00**" in text  # time = 1e-4 N; the streamed row is left out of the fit
    assert "OMP 1.00, CoSaMP 1.00" in text and "k = 10: 10.0x, k = 40: 10.0x. At N = 1,000,000, Td = 64, k = 40: 20.0x." in text
    assert "Growth exponent in Td: 2.00." in text
    assert "| 10 | 4 | 2 | 0.500 | 0.600 | 1.500 | 3.0 | True (2/2) |" in text
    assert "| 1,000,000 | 64 | 8 | omp (memmap) |" in text
