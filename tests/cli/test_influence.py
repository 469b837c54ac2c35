"""`jdps influence` and `jdps quad` on tiny npz and text files, against closed forms and a planted pool."""

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdps.checkpoint import Checkpoints
from jdps.cli.influence import add_influence_parsers
from jdps.data.catalogue import minilm_model_dir
from jdps.errors import InputError, MissingDatasetError
from jdps.gradients import param_filter as pf
from jdps.models.mlp import mlp_task

D, C, DAMPING = 4, 3, 0.1


def run(argv):
    parser = argparse.ArgumentParser(prog="jdps")
    add_influence_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return args.run(args)


def linear_params(tmp_path, d, c, seed=1):
    """A softmax regression (an MLP with no hidden layer) with random weights, saved as an npz."""
    _, template = mlp_task(0, d, (), c)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda v: jnp.asarray(rng.normal(size=v.shape), jnp.float32), template)
    np.savez(tmp_path / "params.npz", **pf.flat(params))
    return params


def softmax_grads_and_ggn(params, x, y):
    """Per-example gradients [N, p] and the mean GGN [p, p] of softmax regression, by hand (float64)."""
    w, b = (np.asarray(params["head"][k], np.float64) for k in ("kernel", "bias"))
    z = x @ w + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    c = p.shape[1]
    g = np.concatenate([np.einsum("nj,nc->njc", x, p - np.eye(c)[y]).reshape(len(x), -1), p - np.eye(c)[y]], 1)
    jac = np.concatenate([np.einsum("nj,ce->ncje", x, np.eye(c)).reshape(len(x), c, -1),
                          np.broadcast_to(np.eye(c), (len(x), c, c))], axis=2)
    h = np.einsum("nc,cd->ncd", p, np.eye(c)) - np.einsum("nc,nd->ncd", p, p)
    return g, np.einsum("ncp,ncd,ndq->pq", jac, h, jac) / len(x)


def test_influence_on_npz_matches_the_closed_form(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, D)).astype(np.float32), rng.integers(0, C, 12)
    np.savez(tmp_path / "train.npz", x=x[:9], y=y[:9], id=np.arange(100, 109))
    np.savez(tmp_path / "query.npz", x=x[9:], y=y[9:])
    params = linear_params(tmp_path, D, C)
    ckpt = Checkpoints(tmp_path / "ckpt")                     # a checkpoint directory: its latest step is read
    ckpt.save(0, jax.tree.map(jnp.zeros_like, params))
    ckpt.save(5, params)
    ckpt.close()
    assert run(["influence", "--train", tmp_path / "train.npz", "--query", tmp_path / "query.npz", "--hidden", "",
                "--params", tmp_path / "ckpt", "--ihvp", "exact", "--damping", DAMPING,
                "--out", tmp_path / "s.npz"]) == 0
    g, ggn = softmax_grads_and_ggn(params, x[:9].astype(np.float64), y[:9])    # the curvature of TRAIN
    gq, _ = softmax_grads_and_ggn(params, x[9:].astype(np.float64), y[9:])
    v = np.linalg.solve(ggn + DAMPING * np.eye(len(ggn)), gq.T).T                # [n_query, p]
    with np.load(tmp_path / "s.npz") as out:
        np.testing.assert_allclose(out["scores"], v @ g.T, rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(out["mean_scores"], v.mean(0) @ g.T, rtol=2e-3, atol=1e-4)
        np.testing.assert_array_equal(out["train_id"], np.arange(100, 109))
        np.testing.assert_array_equal(out["query_id"], np.arange(3))
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["train"] == 9 and summary["query"] == 3


@pytest.mark.slow
def test_influence_on_text_trains_the_transformer_and_scores_windows(tmp_path):
    lines = ["in the beginning was the word", "the quick brown fox jumps over the lazy dog",
             "free money click here now", "and the earth was without form and void"]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n\n")
    (tmp_path / "query.txt").write_text(lines[1] + "\n")
    assert run(["influence", "--train", tmp_path / "train.txt", "--query", tmp_path / "query.txt", "--window", 16,
                "--d-model", 8, "--layers", 1, "--heads", 1, "--epochs", 1, "--ihvp", "identity",
                "--out", tmp_path / "s.npz"]) == 0
    per_line = [-(-(len(t) + 1) // 15) for t in lines]       # T + 2 tokens in windows of 16 sharing one token
    with np.load(tmp_path / "s.npz") as out:
        s, train_id = out["scores"], out["train_id"]
    assert s.shape == (per_line[1], sum(per_line)) and np.all(np.isfinite(s))
    for q in range(per_line[1]):                              # the query's windows are training windows too:
        same = per_line[0] + q                                #   g . g > 0
        assert train_id[same] == f"train:2@{15 * q}" and s[q, same] > 0


@pytest.fixture
def planted_pool(tmp_path):
    """Five blobs of 40; blob 0 (label 1) helps a reference set drawn from it, the others (label 0) hurt."""
    rng = np.random.default_rng(0)
    centres = 3.0 * np.eye(8)[:5] + 1.0
    x = np.concatenate([c + 0.3 * rng.normal(size=(40, 8)) for c in centres]).astype(np.float32)
    np.savez(tmp_path / "pool.npz", x=x, y=np.array([1] * 40 + [0] * 160))
    np.savez(tmp_path / "ref.npz", x=(centres[0] + 0.3 * rng.normal(size=(20, 8))).astype(np.float32),
             y=np.ones(20, int))
    _, template = mlp_task(0, 8, (), 2)
    np.savez(tmp_path / "params.npz", **pf.flat(template))
    np.save(tmp_path / "e.npy", np.eye(5)[np.repeat(np.arange(5), 40)])   # embeddings: the blob, one-hot
    return tmp_path, np.repeat(np.arange(5), 40)


def test_quad_on_npz_selects_the_helpful_blob(planted_pool, capsys):
    tmp_path, group = planted_pool
    argv = ["quad", "--pool", tmp_path / "pool.npz", "--reference", tmp_path / "ref.npz", "--hidden", "",
            "--params", tmp_path / "params.npz", "--embeddings", tmp_path / "e.npy", "--budget", 30,
            "--clusters", 5, "--clusters-per-round", 2, "--samples-per-pull", 4, "--block-size", 10,
            "--out", tmp_path / "sel.npz"]
    assert run(argv) == 0
    with np.load(tmp_path / "sel.npz") as out:
        idx, scored, scores = out["indices"], out["scored"], out["scores"]
        assert len(idx) == 30 and np.mean(group[idx] == 0) >= 0.9
        np.testing.assert_array_equal(out["id"], idx)
        np.testing.assert_array_equal(scored, np.isfinite(scores))
        assert float(out["fraction_scored"]) == scored.mean() <= 0.3
        assert str(out["stop_reason"]) == "budget" and int(out["rounds"]) == len(json.loads(str(out["log"])))
        for c in range(5):                                    # one-hot embeddings: clusters are the blobs
            assert len(np.unique(out["cluster"][group == c])) == 1
        assert int(out["clusters_covered"]) == len(np.unique(out["cluster"][idx]))
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["count"] == 30


@pytest.mark.slow
def test_quad_on_text_embeds_windows_with_minilm(tmp_path):
    try:
        minilm_model_dir()
    except MissingDatasetError:
        pytest.skip("MiniLM is not installed (jdps install minilm)")
    pool = [f"the lord spake unto moses saying {i}" for i in range(10)] + \
           [f"click here to claim your free prize number {i}" for i in range(10)]
    (tmp_path / "pool.txt").write_text("\n".join(pool))
    (tmp_path / "ref.txt").write_text("and the lord said unto moses\n")
    assert run(["quad", "--pool", tmp_path / "pool.txt", "--reference", tmp_path / "ref.txt", "--window", 48,
                "--d-model", 8, "--layers", 1, "--heads", 1, "--epochs", 1, "--ihvp", "identity", "--score", "dot",
                "--fraction", 0.25, "--clusters", 2, "--samples-per-pull", 2, "--block-size", 5, "--tau", -1e9,
                "--out", tmp_path / "sel.npz"]) == 0
    with np.load(tmp_path / "sel.npz") as out:
        assert len(out["indices"]) == 5 and str(out["stop_reason"]) == "budget"
        assert out["id"][0].startswith("pool:") and out["scored"].sum() == 2
        lines = [int(i.split("@")[0].split(":")[1]) for i in out["id"]]
        assert len({line <= 10 for line in lines}) == 1    # one block: one MiniLM cluster, one kind of line


def test_bad_input_is_named(planted_pool, tmp_path):
    tmp_path, _ = planted_pool
    base = ["quad", "--pool", tmp_path / "pool.npz", "--reference", tmp_path / "ref.npz", "--hidden", "",
            "--params", tmp_path / "params.npz", "--out", tmp_path / "sel.npz"]
    with pytest.raises(InputError, match="larger than the pool of 200"):
        run(base + ["--budget", 201])
    np.save(tmp_path / "bad.npy", np.zeros((3, 2)))
    with pytest.raises(InputError, match="one row per pool example"):
        run(base + ["--budget", 5, "--embeddings", tmp_path / "bad.npy"])
    (tmp_path / "ref.txt").write_text("\n\n")
    with pytest.raises(InputError, match="all be npz files or all text files"):
        run(["quad", "--pool", tmp_path / "pool.npz", "--reference", tmp_path / "ref.txt", "--budget", 5,
             "--out", tmp_path / "sel.npz"])
    with pytest.raises(InputError, match="holds no text"):
        run(["quad", "--pool", tmp_path / "ref.txt", "--reference", tmp_path / "ref.txt", "--budget", 5,
             "--out", tmp_path / "sel.npz"])
    (tmp_path / "doc.txt").write_text("one document\n")
    with pytest.raises(InputError, match="--model mlp does not fit text"):
        run(["influence", "--train", tmp_path / "doc.txt", "--query", tmp_path / "doc.txt", "--model", "mlp",
             "--out", tmp_path / "s.npz"])
