"""The jdps command line, driven in-process through `jdps.cli.main`."""

import importlib
import json
import subprocess
import sys
from pathlib import Path

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


def test_building_the_parser_and_help_import_no_jax():
    code = ("import sys; from jdps.cli.main import build_parser; build_parser().format_help(); "
            "assert 'jax' not in sys.modules, 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Digits as grey images [N, 8, 8]: a train, a meta and a test file; a test file with label 10."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 8, 8)
    d = tmp_path_factory.mktemp("images")
    np.savez(d / "train.npz", x=x[:400], y=y[:400])
    np.savez(d / "meta.npz", x=x[400:450], y=y[400:450])
    np.savez(d / "test.npz", x=x[450:650], y=y[450:650])
    np.savez(d / "test_c10.npz", x=x[450:460], y=np.full(10, 10))
    return d


def test_one_cnn_for_grey_images_in_train_and_bads(images, tmp_path, capsys):
    d = images
    common = ["--train", str(d / "train.npz"), "--model", "cnn", "--batch-size", "200", "--quiet"]
    assert main(["train", *common, "--test", str(d / "test.npz"), "--steps", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["examples"] == 400 and 0 <= report["test_accuracy"] <= 1
    assert main(["bads", *common, "--meta", str(d / "meta.npz"), "--steps", "2", "--out", str(tmp_path / "w")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["out"] == str(tmp_path / "w.npz") and report["steps"] == 2   # the path np.savez writes
    with np.load(tmp_path / "w.npz") as f:
        assert f["weights"].shape == (400,)


def test_epochs_and_steps_are_exclusive(digits_npz, capsys):
    d, _, _ = digits_npz
    for command in (["train"], ["bads", "--meta", str(d / "test.npz"), "--out", "w.npz"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--train", str(d / "train.npz"), "--epochs", "1", "--steps", "3"])
        assert exit_.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert main(["train", "--train", str(d / "train.npz"), "--steps", "3", "--batch-size", "500", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 3 and report["epochs"] == 1       # ceil(1400 / 500) = 3 steps an epoch


def test_a_label_outside_num_classes_names_the_file(images, capsys):
    d = images
    for argv in (["train", "--num-classes", "10"],
                 ["bads", "--meta", str(d / "meta.npz"), "--out", str(d / "never.npz")]):
        assert main([*argv, "--train", str(d / "train.npz"), "--test", str(d / "test_c10.npz"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"--test {d / 'test_c10.npz'} holds labels [10] outside [0, 10)" in err and "--num-classes" in err
    assert main(["train", "--train", str(d / "train.npz"), "--num-classes", "5", "--quiet"]) == 2
    assert f"--train {d / 'train.npz'} holds labels [5, 6, 7, 8, 9]" in capsys.readouterr().err


def test_out_must_differ_from_every_input(images, capsys):
    d = images
    before = (d / "meta.npz").read_bytes()
    argv = ["bads", "--train", str(d / "train.npz"), "--meta", str(d / "meta.npz"), "--quiet"]
    assert main([*argv, "--out", str(d / ".." / d.name / "meta")]) == 2     # np.savez would write meta.npz
    assert "is also the input --meta" in capsys.readouterr().err
    assert (d / "meta.npz").read_bytes() == before
    assert main(["train", "--train", str(d / "train.npz"), "--out", str(d / "train.npz")]) == 2
    assert "is also the input --train" in capsys.readouterr().err


def test_out_in_a_missing_folder_fails_before_any_compute(images, tmp_path, capsys, monkeypatch):
    import jdps.bads

    def never(*args, **kwargs):
        raise AssertionError("computed before checking --out")
    monkeypatch.setattr(jdps.bads, "fit", never)
    monkeypatch.setattr(importlib.import_module("jdps.train"), "train", never)   # jdps.train is the function
    d, missing = images, tmp_path / "no" / "such"
    assert main(["bads", "--train", str(d / "train.npz"), "--meta", str(d / "meta.npz"),
                 "--out", str(missing / "w.npz")]) == 2
    assert f"the folder {missing} does not exist" in capsys.readouterr().err
    assert main(["train", "--train", str(d / "train.npz"), "--out", str(missing / "m.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists()
