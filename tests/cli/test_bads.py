"""`jdps bads` and `jdps baseline` on tiny npz files cut from sklearn's digits."""

import argparse
import json

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from jdps.cli.bads import add_bads_parsers
from jdps.errors import InputError, SamplerDivergedError

N_TRAIN, N_META, NOISE = 1000, 100, 0.3


def run(argv):
    """Parse and run one subcommand the way `jdps` does (errors propagate for the test to see)."""
    parser = argparse.ArgumentParser(prog="jdps")
    add_bads_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Train (30% of labels moved to another class, string ids), a clean meta set and a test set."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    tr, me, te = order[:N_TRAIN], order[N_TRAIN:N_TRAIN + N_META], order[N_TRAIN + N_META:]
    noisy = y[tr].copy()
    flipped = rng.random(N_TRAIN) < NOISE
    noisy[flipped] = (noisy[flipped] + rng.integers(1, 10, flipped.sum())) % 10
    ids = np.array([f"ex{i:04d}" for i in tr])
    d = tmp_path_factory.mktemp("digits")
    np.savez(d / "train.npz", x=x[tr], y=noisy, id=ids)
    np.savez(d / "meta.npz", x=x[me], y=y[me])
    np.savez(d / "test.npz", x=x[te], y=y[te])
    np.savez(d / "meta_unseen.npz", x=x[me], y=np.where(y[me] == 3, 11, y[me]))
    np.savez(d / "no_x.npz", y=y[me])
    np.savez(d / "no_y.npz", x=x[me])
    np.savez(d / "short_y.npz", x=x[me], y=y[me][:-2])
    np.savez(d / "wide.npz", x=np.zeros((N_META, 65), np.float32), y=y[me])
    return d, flipped, ids, y[te]


def _flags(d, out, *extra):
    return ["--train", str(d / "train.npz"), "--meta", str(d / "meta.npz"), "--test", str(d / "test.npz"),
            "--batch-size", "50", "--meta-batch-size", "50", "--out", str(out), *extra]


def test_bads_writes_weights_in_input_order_that_find_the_noise(digits, tmp_path, capsys):
    d, flipped, ids, y_test = digits
    out = tmp_path / "bads.npz"
    assert run(["bads", *_flags(d, out, "--epochs", "12", "--seed", "1")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 13 and lines[0].startswith("epoch 1/12  step 20  loss ")  # 1000 // 50 steps an epoch
    assert "mean weight" in lines[0]
    report = json.loads(lines[-1])
    with np.load(out) as f:
        weights, out_ids, acc = f["weights"], f["id"], float(f["test_accuracy"])
    assert weights.shape == (N_TRAIN,) and weights.dtype == np.float32
    assert ((weights >= 0) & (weights <= 1)).all()
    np.testing.assert_array_equal(out_ids, ids)
    assert roc_auc_score(flipped, -weights) > 0.9  # a permuted output would score about 0.5
    assert acc == pytest.approx(report["test_accuracy"])
    assert acc > 0.85 > np.bincount(y_test).max() / len(y_test)  # far above the majority class


def test_quiet_prints_only_the_summary(digits, tmp_path, capsys):
    d, *_ = digits
    assert run(["bads", *_flags(d, tmp_path / "q.npz", "--epochs", "2", "--quiet")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["method"] == "bads"


def test_baselines_by_name(digits, tmp_path, capsys):
    d, _flipped, ids, y_test = digits
    out = tmp_path / "uniform.npz"
    assert run(["baseline", "--method", "uniform", *_flags(d, out, "--epochs", "4", "--quiet")]) == 0
    with np.load(out) as f:
        np.testing.assert_array_equal(f["weights"], np.ones(N_TRAIN, np.float32))
        np.testing.assert_array_equal(f["id"], ids)
        assert float(f["test_accuracy"]) > np.bincount(y_test).max() / len(y_test) + 0.3
    out = tmp_path / "random.npz"
    assert run(["baseline", "--method", "random", "--fraction", "0.25",
                *_flags(d, out, "--epochs", "1", "--quiet")]) == 0
    with np.load(out) as f:
        assert f["weights"].sum() == 250  # ceil(0.25 * 1000) examples, weight 1 each
    with pytest.raises(InputError, match="--budget K or --fraction F"):
        run(["baseline", "--method", "random", *_flags(d, out, "--epochs", "1")])


@pytest.mark.parametrize("flag, name, message", [
    ("--meta", "meta_unseen.npz", r"classes \[11\] that no training example has"),
    ("--meta", "no_x.npz", "no array 'x'"),
    ("--meta", "no_y.npz", "has no labels; save them as y"),
    ("--meta", "short_y.npz", "length"),
    ("--test", "wide.npz", r"shape \(65,\) but --train examples have \(64,\)"),
    ("--train", "missing.npz", "no file"),
])
def test_bad_input_is_a_clear_error(digits, tmp_path, flag, name, message):
    d, *_ = digits
    argv = _flags(d, tmp_path / "x.npz", "--epochs", "1", "--quiet")
    argv[argv.index(flag) + 1] = str(d / name)
    for command in (["bads"], ["baseline", "--method", "uniform"]):
        with pytest.raises(InputError, match=message):
            run([*command, *argv])


def test_divergence_names_the_step_and_the_step_sizes(digits, tmp_path):
    d, *_ = digits
    with pytest.raises(SamplerDivergedError, match=r"diverged at step \d+ \(epoch 1\).*lr=1000000.0, weight_lr"):
        run(["bads", *_flags(d, tmp_path / "nan.npz", "--epochs", "2", "--lr", "1e6", "--quiet", "--preset",
                            "faithful")])  # plain SGLD: pSGLD's RMSprop step keeps even lr 1e6 finite


def test_baseline_progress_quiet_and_steps(digits, tmp_path, capsys):
    d, *_ = digits
    out = tmp_path / "u.npz"
    assert run(["baseline", "--method", "uniform", *_flags(d, out, "--steps", "20")]) == 0   # 1000 // 50: one epoch
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("epoch 1/1  loss ") and json.loads(lines[-1])["epochs"] == 1
    assert run(["baseline", "--method", "uniform", *_flags(d, out, "--steps", "20", "--quiet")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
    with pytest.raises(InputError, match="--steps as a multiple of 20"):
        run(["baseline", "--method", "uniform", *_flags(d, out, "--steps", "7")])
    with pytest.raises(InputError, match="takes neither"):
        run(["baseline", "--method", "uniform", "--budget", "5", *_flags(d, out, "--epochs", "1")])


def test_presets_by_name(capsys):
    parser = argparse.ArgumentParser(prog="jdps")
    add_bads_parsers(parser.add_subparsers(dest="command", required=True))
    base = ["bads", "--train", "t.npz", "--meta", "m.npz", "--out", "w.npz"]
    assert parser.parse_args(base).preset == "default"                 # BADSConfig(), the robust default
    assert parser.parse_args([*base, "--preset", "default"]).preset == "default"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--preset", "nope"])
    assert "choose from 'balance', 'denoise', 'faithful', 'text', 'default'" in capsys.readouterr().err
