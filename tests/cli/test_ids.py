"""Outputs that name examples carry their ids: `jdps features` writes A.ids.npy beside A.npy, and `jdps pursuit`
maps the rows it picks to those ids (row numbers when A has no ids file)."""

import json

import numpy as np
import pytest

from jdps.errors import InputError
from tests.cli.test_gtp import run, save_checkpoints


def test_features_write_the_pool_ids_and_pursuit_carries_them(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ids = rng.permutation(np.arange(500, 540))                          # the user's own ids, in file order
    np.savez(tmp_path / "pool.npz", x=rng.normal(size=(40, 6)).astype(np.float32), y=rng.integers(0, 3, 40), id=ids)
    save_checkpoints(tmp_path)
    assert run(["features", "--pool", tmp_path / "pool.npz", "--checkpoints", tmp_path / "ckpt0.npz",
                tmp_path / "ckpt1.npz", "--hidden", "", "--d", "8", "--out", tmp_path / "A.npy",
                "--target-out", tmp_path / "b.npy", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ids"] == str(tmp_path / "A.ids.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "A.ids.npy"), ids)   # row i of A is the file's example i
    assert run(["pursuit", "--features", tmp_path / "A.npy", "--target", tmp_path / "b.npy", "--budget", "5",
                "--out", tmp_path / "sel.npz"]) == 0
    sel = np.load(tmp_path / "sel.npz")
    np.testing.assert_array_equal(sel["id"], ids[sel["indices"]])


def test_pursuit_without_ids_names_rows_and_refuses_a_mismatched_ids_file(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "A.npy", rng.normal(size=(30, 4)).astype(np.float32))
    np.save(tmp_path / "b.npy", rng.normal(size=4).astype(np.float32))
    argv = ["pursuit", "--features", tmp_path / "A.npy", "--target", tmp_path / "b.npy", "--budget", "3",
            "--out", tmp_path / "sel.npz"]
    assert run(argv) == 0
    sel = np.load(tmp_path / "sel.npz")
    np.testing.assert_array_equal(sel["id"], sel["indices"])
    np.save(tmp_path / "A.ids.npy", np.arange(29))                       # one id short
    with pytest.raises(InputError, match="29"):
        run(argv)
