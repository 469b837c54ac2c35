"""The jdps command line, driven in-process through `jdps.cli.main`."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from jdps.cli.main import main
from jdps.data.catalogue import CATALOGUE


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("data", "install", "train", "demo"):
        assert command in out


def test_data_lists_every_dataset(capsys):
    assert main(["data"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["dataset", "kind", "installed"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(CATALOGUE)


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    d = tmp_path_factory.mktemp("npz")
    np.savez(d / "train.npz", x=x[train], y=y[train])
    np.savez(d / "test.npz", x=x[test], y=y[test])
    np.savez(d / "no_y.npz", x=x[train])
    np.savez(d / "short_y.npz", x=x[train], y=y[train][:-3])
    return d, len(test), y[test]


def test_train_on_user_npz(digits_npz, tmp_path, capsys):
    d, n_test, y_test = digits_npz
    out = tmp_path / "metrics.json"
    rc = main(["train", "--train", str(d / "train.npz"), "--test", str(d / "test.npz"), "--epochs", "8",
               "--batch-size", "64", "--lr", "3e-3", "--quiet", "--out", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["examples"] == 1400
    # a majority-class predictor scores max class share; a trained MLP on digits is far above it
    assert report["test_accuracy"] > max(0.85, np.bincount(y_test).max() / n_test)


@pytest.mark.parametrize("name, message", [("short_y.npz", "length"), ("no_y.npz", "`y`"),
                                           ("missing.npz", "missing.npz")])
def test_train_bad_input_is_a_clear_error(digits_npz, capsys, name, message):
    d, _, _ = digits_npz
    rc = main(["train", "--train", str(d / name), "--epochs", "1", "--quiet"])
    assert rc == 2
    assert message in capsys.readouterr().err
