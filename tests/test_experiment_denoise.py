"""Experiment 1 (experiments/bads_denoise.py): its data draw, its report, and a smoke run at a tiny size."""

import json

import numpy as np
import pytest

from experiments import bads_denoise as exp
from jdps.errors import MissingDatasetError

TINY = exp.Setup(n_train=600, meta_per_class=10, epochs=2, batch_size=50, meta_batch_size=20, hidden=(32,))


@pytest.fixture(scope="module")
def sym60():
    try:
        return exp.make_data("sym60", TINY, seed=3)
    except MissingDatasetError as err:
        pytest.skip(str(err))


def test_data_draw(sym60):
    train, meta, test = sym60
    assert len(train) == 600 and len(test) == 10_000
    corrupted = train.columns["corrupted"]
    assert corrupted.sum() == 360  # round(0.6 * 600) labels changed
    np.testing.assert_array_equal(corrupted, train.y != train.columns["clean_y"])
    np.testing.assert_array_equal(np.bincount(meta.y, minlength=10), np.full(10, 10))
    assert not set(meta.ids.tolist()) & set(train.ids.tolist())  # the meta set is not in the training set


def _record(noise, method, accuracy, seed=0, **extra):
    return {"noise": noise, "seed": seed, "method": method, "accuracy": accuracy, "seconds": 1.0, **extra}


def test_table_reports_mean_and_std_and_the_targets():
    bads = {"accuracy_final": 0.80, "auroc": 0.96, "weight_clean": 0.5, "weight_corrupted": 0.1, "kept": 8000}
    records = [_record("sym60", "bads", 0.82, 0, **bads), _record("sym60", "bads", 0.84, 1, **bads),
               _record("sym60", "uniform", 0.77, 0), _record("sym60", "uniform", 0.79, 1),
               _record("sym60", "l2rw", 0.84, 0), _record("sym60", "l2rw", 0.86, 1)]
    report = exp.table(records, exp.FULL, "python experiments/bads_denoise.py --noise sym60")
    assert "| bads (θ samples) | 83.0 ± 1.0 |" in report  # mean 83, population std 1
    assert "| uniform | 78.0 ± 1.0 |" in report
    assert "| AUROC, clean vs corrupted | 0.9600 ± 0.0000 |" in report
    assert "BADS - uniform: +5.0 points (target >= +3): met" in report
    assert "BADS - l2rw: -2.0 points (target >= +0): not met" in report
    assert "weight AUROC: 0.9600 (target >= 0.95): met" in report
    assert "`python experiments/bads_denoise.py --noise sym60`" in report


def test_smoke_run_writes_the_table_json_and_histogram(sym60, tmp_path, monkeypatch):
    train, meta, test = sym60
    monkeypatch.setattr(exp, "make_data", lambda noise, setup, seed: (train, meta, test.take(np.arange(1000))))
    lines = []
    records = exp.run_grid(["sym60"], ["random", "bads", "uniform", "l2rw", "oracle"], [0], TINY, lines.append)
    assert [r["method"] for r in records] == ["bads", "random", "uniform", "l2rw", "oracle"]  # bads first
    bads = records[0]
    w, corrupted = bads["weights"], train.columns["corrupted"]
    assert w.shape == (600,) and ((w >= 0) & (w <= 1)).all()
    assert bads["kept"] == (w >= w.mean()).sum()
    assert bads["weight_corrupted"] == pytest.approx(w[corrupted].mean())
    for r in records:
        assert 0.1 < r["accuracy"] <= 1.0  # above chance (10 classes) even at this size
    assert len(lines) == 5 and "weight AUROC" in lines[0]
    report = exp._save(records, TINY, "cmd", tmp_path / "run")
    assert (tmp_path / "run.md").read_text() == report
    assert all(f"| {m} |" in report for m in ("random", "uniform", "l2rw", "oracle"))
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["setup"]["n_train"] == 600 and len(saved["runs"]) == 5
    assert (tmp_path / "run_weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_and_tune_print_their_tables(sym60, monkeypatch):
    train, meta, test = sym60
    monkeypatch.setattr(exp, "make_data", lambda noise, setup, seed: (train, meta, test.take(np.arange(1000))))
    report = exp.demo(0, TINY, ("uniform",), log=lambda line: None)
    assert report.startswith("# Experiment 1") and "jdps demo" in report and "| uniform |" in report
    monkeypatch.setattr(exp, "TUNING", {"CONFIG, lr 0.1": {"lr": 0.1}, "library defaults": {}})
    report = exp.tune(TINY, 0, "cmd", log=lambda line: None)
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and rows[1].startswith("| CONFIG, lr 0.1 | ") and rows[2].startswith("| library defaults | ")
