"""The task scripts of examples/ at tiny size (scikit-learn's digits): each prints its key figures, checked
here against hand counts and stated tolerances (what the method must at least do on this data)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, argv: list[str], capsys) -> dict:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = module.main(argv)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == figures   # what it prints
    return figures


def test_clean_noisy_labels(capsys):
    f = run("clean_noisy_labels", ["--dataset", "digits", "--n", "1200", "--epochs", "10", "--meta-per-class", "10"],
            capsys)
    assert f["wrong_labels"] == pytest.approx(0.4, abs=0.01)             # the noise asked for
    assert f["auroc_clean_vs_wrong"] >= 0.9                               # tolerance: 0.98 measured
    assert f["wrong_share_of_dropped"] >= 0.8                             # base rate 0.4; 0.93 measured
    assert 0 <= f["test_accuracy_kept"] <= 1 and 0 <= f["test_accuracy_all"] <= 1


def test_coreset_for_target(capsys):
    f = run("coreset_for_target", ["--dataset", "digits", "--d", "64"], capsys)
    assert f["coreset"] == math.ceil(0.05 * f["pool"]) or f["stop_reason"] != "budget"
    assert f["target_class_share_coreset"] >= f["target_class_share_pool"] + 0.2   # 0.83 vs 0.25 measured
    assert f["target_accuracy_gtp"] >= f["target_accuracy_random"]                  # 0.94 vs 0.41 measured


def test_pretraining_from_pool(capsys):
    f = run("pretraining_from_pool", ["--dataset", "digits", "--clusters", "10"], capsys)
    assert f["picked"] == math.ceil(0.1 * f["pool"])
    assert f["fraction_scored"] < 1                                      # Quad scores part of the pool
    assert f["good_share_picked"] >= f["good_share_pool"] + 0.1          # 0.72 vs 0.47 measured


def test_influence_on_query(capsys):
    f = run("influence_on_query", ["--dataset", "digits"], capsys)
    assert f["mislabelled_share_overall"] == pytest.approx(0.1, abs=0.01)
    assert f["mislabelled_share_of_most_harmful_5pct"] >= 3 * f["mislabelled_share_overall"]   # 0.96 measured
    assert len(set(f["most_helpful_ids"]) | set(f["most_harmful_ids"])) == 10
