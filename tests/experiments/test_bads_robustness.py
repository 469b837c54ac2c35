"""The robustness study's bookkeeping (margins and targets against hand counts) and one tiny run of its main."""

import json

import numpy as np
import pytest

from experiments import bads_robustness as study
from jdps.errors import MissingDatasetError


def _cell(noise, seed, **acc):
    methods = {m: {"accuracy": a, "accuracy_last": a - 0.01, "auroc": 0.95 if m == "bads" and noise != "none"
                   else None, "seconds": 1.0} for m, a in acc.items()}
    return {"dataset": "d", "noise": noise, "meta_per_class": 5, "seed": seed, "methods": methods}


def test_summary_margins_and_targets_by_hand():
    records = [_cell("none", 0, bads=0.80, uniform=0.84, meta_only=0.60, l2rw=0.79),
               _cell("none", 1, bads=0.82, uniform=0.82, meta_only=0.62, l2rw=0.81),
               _cell("sym40", 0, bads=0.78, uniform=0.70, meta_only=0.60, l2rw=0.80)]
    cells = study.summarise(records)["cells"]
    none, sym = cells
    assert none["seeds"] == 2 and none["best_baseline"] == "uniform"
    assert none["margin"] == pytest.approx(0.81 - 0.83) and none["vs_l2rw"] == pytest.approx(0.81 - 0.80)
    assert sym["best_baseline"] == "l2rw" and sym["vs_floor"] == pytest.approx(0.08)
    lines = study.targets(study.summarise(records))
    assert lines[0].startswith("- every cell, BADS >= max(uniform, meta_only) - 1 point: 1 of 2 cells (missed")
    assert "1 of 2 (50%: missed)" in lines[1]           # sym40 is 2 points below L2RW
    assert "1 of 1 cells (lowest 0.950)" in lines[2]
    other = dict(_cell("none", 0, bads=0.5, uniform=0.7, meta_only=0.2, l2rw=0.4), dataset="e")
    rows = study.by_dataset(study.summarise([*records, other]))[0].splitlines()[2:]
    assert rows == ["| d | 2 | 1 | 1 | -2.0 | 0.950 |", "| e | 1 | 0 | 1 | -20.0 | - |"]


def test_tiny_run_writes_its_report_and_reuses_its_cells(tmp_path, monkeypatch):
    argv = ["--datasets", "mnist5k", "--noises", "sym40", "--meta", "5", "--seeds", "0", "--epochs", "1",
            "--n-pool", "300", "--methods", "uniform", "--out", str(tmp_path / "r")]
    try:
        assert study.main(argv) == 0
    except MissingDatasetError as err:
        pytest.skip(str(err))
    cell = tmp_path / "r_cells" / "mnist5k_sym40_m5_s0_n300_e1.json"
    record = json.loads(cell.read_text())
    assert record["n_pool"] == 300 and record["meta_used"] == 3 and set(record["methods"]) == {"bads", "uniform"}
    assert 0 <= record["methods"]["bads"]["auroc"] <= 1 and np.isfinite(record["methods"]["uniform"]["accuracy"])
    assert "| mnist5k | sym40 | 5 | 1 |" in (tmp_path / "r.md").read_text()
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setattr(study, "run_cell", lambda *a, **k: pytest.fail("a saved cell was computed again"))
    assert study.main(argv) == 0


def test_the_held_out_data_set_is_refused_in_a_search():
    with pytest.raises(SystemExit):
        study.main(["--validation", "--datasets", "mnist1d", "--report-only"])
