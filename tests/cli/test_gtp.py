"""`jdps features` and `jdps pursuit` on tiny files, against closed forms and planted solutions."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdps.checkpoint import Checkpoints
from jdps.cli.gtp import add_pursuit_parsers
from jdps.errors import InputError
from jdps.gradients import param_filter as pf
from jdps.gradients.projection import BLOCK_ROWS
from jdps.models.mlp import mlp_task

P_IN, C, D = 6, 3, 8


def run(argv):
    parser = argparse.ArgumentParser(prog="jdps")
    add_pursuit_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.run(args)


def save_arrays(path, seed, n):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, P_IN)).astype(np.float32), rng.integers(0, C, n)
    np.savez(path, x=x, y=y)
    return x, y


def save_checkpoints(tmp_path):
    """Two checkpoints of a linear softmax classifier (an MLP without hidden layers), as npz files."""
    _, template = mlp_task(0, P_IN, (), C)
    rng = np.random.default_rng(1)
    ckpts = [jax.tree.map(lambda v: jnp.asarray(rng.normal(size=v.shape), jnp.float32), template) for _ in range(2)]
    for t, params in enumerate(ckpts):
        np.savez(tmp_path / f"ckpt{t}.npz", **pf.flat(params))
    return ckpts


def linear_grads(params, x, y):
    """Closed-form per-example gradients, leaves in path order head/bias, head/kernel (row-major)."""
    w, b = np.asarray(params["head"]["kernel"], np.float64), np.asarray(params["head"]["bias"], np.float64)
    logits = x.astype(np.float64) @ w + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    e = p / p.sum(1, keepdims=True) - np.eye(C)[y]
    return np.concatenate([e, (x[:, :, None] * e[:, None, :]).reshape(len(x), -1)], axis=1)


def projection(key, p):
    words = np.asarray(jax.random.bits(jax.random.fold_in(key, 0), (BLOCK_ROWS, 1), jnp.uint32))
    bits = (words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    return (1.0 - 2.0 * bits.reshape(BLOCK_ROWS, -1)[:, :D])[:p] / np.sqrt(D)


def test_features_match_closed_form_gradients(tmp_path, capsys):
    x, y = save_arrays(tmp_path / "pool.npz", 0, 20)
    xt, yt = save_arrays(tmp_path / "target.npz", 1, 5)
    ckpts = save_checkpoints(tmp_path)
    run(["features", "--pool", tmp_path / "pool.npz", "--target", tmp_path / "target.npz", "--hidden", "",
         "--checkpoints", tmp_path / "ckpt0.npz", tmp_path / "ckpt1.npz", "--d", D, "--seed", 4,
         "--checkpoint-weights", "1,0.5", "--out", tmp_path / "A.npy", "--target-out", tmp_path / "b.npy"])
    assert json.loads(capsys.readouterr().out)["target_kind"] == "target-domain"
    key, p = jax.random.key(4), C + P_IN * C

    def trajectory(x, y):
        return np.concatenate([c * linear_grads(theta, x, y) @ projection(jax.random.fold_in(key, t), p)
                               for t, (c, theta) in enumerate(zip([1.0, 0.5], ckpts))], axis=1)
    np.testing.assert_allclose(np.load(tmp_path / "A.npy"), trajectory(x, y), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), trajectory(xt, yt).mean(0), rtol=1e-4, atol=1e-6)


def test_features_from_a_checkpoint_directory_equal_npz_files(tmp_path):
    save_arrays(tmp_path / "pool.npz", 0, 20)
    ckpts = save_checkpoints(tmp_path)
    manager = Checkpoints(tmp_path / "run", max_to_keep=None)
    for step, params in zip((10, 20), ckpts):
        manager.save(step, params)
    manager.close()
    common = ["--pool", tmp_path / "pool.npz", "--hidden", "", "--d", D, "--normalize"]
    run(["features", *common, "--checkpoints", tmp_path / "run", "--out", tmp_path / "A1.npy",
         "--target-out", tmp_path / "b1.npy"])
    run(["features", *common, "--checkpoints", tmp_path / "ckpt0.npz", tmp_path / "ckpt1.npz",
         "--out", tmp_path / "A2.npy", "--target-out", tmp_path / "b2.npy"])
    a = np.load(tmp_path / "A1.npy")
    np.testing.assert_array_equal(a, np.load(tmp_path / "A2.npy"))
    np.testing.assert_allclose(np.linalg.norm(a[:, :D], axis=1), 1.0, rtol=1e-5)  # --normalize
    np.testing.assert_allclose(np.load(tmp_path / "b1.npy"), a.mean(0), rtol=1e-5, atol=1e-7)  # in-domain
    out = ["--checkpoints", tmp_path / "ckpt0.npz", "--out", tmp_path / "A3.npy", "--target-out", tmp_path / "b3.npy"]
    with pytest.raises(InputError, match=r"lacks parameters \['hidden/0/bias', 'hidden/0/kernel'\]"):
        run(["features", *common[:2], "--hidden", "4", "--d", D, *out])
    with pytest.raises(InputError, match=r"head/bias has shape \(3,\) but the model needs \(4,\)"):
        run(["features", *common, "--num-classes", 4, *out])


def planted(tmp_path, weights):
    """A [300, 64] and b = A_S^T w for three rows S = [7, 150, 222] (incoherent enough for OMP to recover)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 64)).astype(np.float32)
    b = a[[7, 150, 222]].T.astype(np.float64) @ np.asarray(weights)
    np.save(tmp_path / "A.npy", a)
    np.save(tmp_path / "b.npy", b)
    return a, b


@pytest.mark.parametrize("memory", ["1024", "0"])  # in memory, or streamed from the memmap
def test_pursuit_recovers_a_planted_nonnegative_combination(tmp_path, memory, capsys):
    planted(tmp_path, [2.0, 1.0, 0.5])
    run(["pursuit", "--features", tmp_path / "A.npy", "--target", tmp_path / "b.npy", "--budget", 5,
         "--max-memory-mb", memory, "--block-rows", 128, "--out", tmp_path / "sel.npz"])
    assert json.loads(capsys.readouterr().out)["streamed"] == (memory == "0")
    sel = np.load(tmp_path / "sel.npz")
    order = np.argsort(sel["indices"])
    assert sel["indices"][order].tolist() == [7, 150, 222] and str(sel["stop_reason"]) == "tolerance"
    np.testing.assert_allclose(sel["weights"][order], [2.0, 1.0, 0.5], rtol=1e-4)
    assert sel["residual_norm"] < 1e-3 and sel["weights"].dtype == np.float32


def test_pursuit_signed_and_topk(tmp_path):
    a, b = planted(tmp_path, [2.0, -1.0, 0.5])
    common = ["--features", tmp_path / "A.npy", "--target", tmp_path / "b.npy", "--budget", 5]
    run(["pursuit", *common, "--signed", "--out", tmp_path / "signed.npz"])
    sel = np.load(tmp_path / "signed.npz")
    order = np.argsort(sel["indices"])
    assert sel["indices"][order].tolist() == [7, 150, 222]
    np.testing.assert_allclose(sel["weights"][order], [2.0, -1.0, 0.5], rtol=1e-4)
    run(["pursuit", *common, "--solver", "topk", "--out", tmp_path / "top.npz"])
    top = np.load(tmp_path / "top.npz")
    assert top["indices"].tolist() == np.argsort(-(a.astype(np.float64) @ b), kind="stable")[:5].tolist()
    assert np.isnan(top["residual_norm"]) and str(top["stop_reason"]) == "budget"


def test_pursuit_bad_input(tmp_path):
    a, b = planted(tmp_path, [1.0, 1.0, 1.0])
    np.save(tmp_path / "short.npy", b[:-1])
    a[4, 0] = np.nan
    np.save(tmp_path / "nan.npy", a)
    out = ["--out", tmp_path / "sel.npz"]
    with pytest.raises(InputError, match="Td = 64 columns"):
        run(["pursuit", "--features", tmp_path / "A.npy", "--target", tmp_path / "short.npy", "--budget", 3, *out])
    with pytest.raises(InputError, match=r"index \[4\]"):
        run(["pursuit", "--features", tmp_path / "nan.npy", "--target", tmp_path / "b.npy", "--budget", 3, *out])
    with pytest.raises(InputError, match="budget k must be"):
        run(["pursuit", "--features", tmp_path / "A.npy", "--target", tmp_path / "b.npy", "--budget", 301, *out])
    with pytest.raises(InputError, match="--signed applies to omp"):
        run(["pursuit", "--features", tmp_path / "A.npy", "--target", tmp_path / "b.npy", "--budget", 3,
             "--solver", "topk", "--signed", *out])
    with pytest.raises(InputError, match="no file"):
        run(["pursuit", "--features", tmp_path / "none.npy", "--target", tmp_path / "b.npy", "--budget", 3, *out])


def test_pursuit_fraction_and_the_path_written(tmp_path, capsys):
    planted(tmp_path, [2.0, 1.0, 0.5])
    run(["pursuit", "--features", tmp_path / "A.npy", "--target", tmp_path / "b.npy", "--fraction", 0.01,
         "--out", tmp_path / "sel"])                                    # ceil(0.01 * 300) = 3 rows
    summary = json.loads(capsys.readouterr().out)
    assert summary["budget"] == 3 and summary["out"] == str(tmp_path / "sel.npz")
    assert sorted(np.load(tmp_path / "sel.npz")["indices"].tolist()) == [7, 150, 222]
