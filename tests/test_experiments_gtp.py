"""The GTP cost benchmark (scripts/bench_pursuit.py) and experiment 2 (experiments/gtp_coreset.py): their
problem and pool constructions against hand counts and scipy, their reports, and a tiny smoke run."""

import numpy as np
import pytest
from scipy.optimize import nnls

from experiments import gtp_coreset as exp
from jdps.data.dataset import Dataset, DatasetInfo
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


def _fashion_like(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = np.clip(rng.random((n, 28, 28, 1)) * 0.3 + (y[:, None, None, None] / 10.0), 0, 1).astype(np.float32)
    return Dataset(x=x, y=y, info=DatasetInfo(name="fake", provenance="test", licence="none"))


def test_dup_pool_holds_the_planted_copies():
    setup = exp.Setup(n_pool=100, n_dup_groups=7, copies=5, dup_noise=0.01)
    x, y, group = exp.make_pool(setup, 0, True, _fashion_like(300, 0))
    assert x.shape == (100 + 7 * 4, 28, 28, 1) and len(y) == len(group) == 128
    np.testing.assert_array_equal(np.bincount(group[group >= 0]), np.full(7, 5))  # 7 groups of 5 copies
    for g in range(7):
        members = np.flatnonzero(group == g)
        assert len(set(y[members])) == 1
        assert np.abs(x[members] - x[members[0]]).max() < 0.1  # near-identical: noise 0.01, clipped
    x0, _, g0 = exp.make_pool(setup, 0, False, _fashion_like(300, 0))
    assert len(x0) == 100 and (g0 == -1).all()


def test_duplicate_counts_by_hand():
    group = np.array([-1, 0, 0, 0, 1, 1, -1, 2])
    assert exp.duplicates([0, 1, 2, 3, 4, 6], group) == (4, 2)  # group 0 thrice, group 1 once
    assert exp.duplicates([0, 6], group) == (0, 0)
    assert exp.duplicates([1, 4, 7], group) == (3, 0)


def test_smoke_run_and_report():
    setup = exp.Setup(n_pool=120, n_dup_groups=5, warmup_epochs=1, d=32, steps=10, batch_size=16, hidden=(8,))
    lines = []
    records = exp.run("dup", 0, [0.05], ["gtp-omp", "topk", "random"], setup, log=lines.append,
                      train=_fashion_like(200, 1), test=_fashion_like(50, 2))
    assert [r["method"] for r in records] == ["full", "gtp-omp", "topk", "random"]
    full, omp, topk, rnd = records
    assert full["k"] == 140 and full["copies"] == 25 and full["redundant"] == 20
    assert omp["k"] == topk["k"] == rnd["k"] == 7  # ceil(0.05 * 140)
    assert omp["count"] <= 7 and topk["count"] == rnd["count"] == 7
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in records)
    report = exp.table(records, setup, "python experiments/gtp_coreset.py --seeds 0")
    assert "`python experiments/gtp_coreset.py --seeds 0`" in report
    assert "| gtp-omp |" in report and "planted near-duplicates (5 images x 5 copies)" in report


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


def test_text_report_means_over_seeds():
    from experiments import gtp_text

    records = [{"seed": s, "method": "full", "fraction": 1.0, "k": 100, "count": 100, "loss": 2.0 + s,
                "target_share": 0.2} for s in (0, 1)]
    records += [{"seed": s, "method": "gtp-omp", "fraction": 0.05, "k": 5, "count": 5, "loss": 1.5 + 0.1 * s,
                 "target_share": 0.8 + 0.2 * s, "stop_reason": "budget"} for s in (0, 1)]
    text = gtp_text.table(records, gtp_text.Setup(), "python experiments/gtp_text.py")
    assert "| full pool | 2.500 ± 0.500 |" in text  # mean of 2 and 3, population std 0.5
    assert "| gtp-omp | 1.550 ± 0.050 |" in text
    assert "| gtp-omp | 90.0 ± 10.0 |" in text
    assert "| less | " not in text  # a method without records gets no row
