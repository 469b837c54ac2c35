"""`jdps evaluate`: methods without per-query scores refused before any work; leave-one-out of exact influence
on a convex model through the command."""

import json

import numpy as np
import pytest

from jdps import selectors
from jdps.cli.evaluate import ATTRIBUTION
from jdps.cli.main import main
from jdps.selectors import Selector
from tests.synthetic import noisy_blobs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    train, query, _ = noisy_blobs(60, 10, seed=2, noise=0.0)
    d = tmp_path_factory.mktemp("evaluate")
    np.savez(d / "train.npz", **train)
    np.savez(d / "query.npz", **query)
    return d


def test_the_attribution_methods_are_those_with_scores():
    with_scores = [n for n in selectors.names() if selectors._class(n).scores is not Selector.scores]
    assert sorted(with_scores) == sorted(ATTRIBUTION)


@pytest.mark.parametrize("method", ["bads", "gtp", "random", "quad", "uniform"])
def test_methods_without_per_query_scores_are_refused_before_any_work(files, capsys, method):
    out = files / f"{method}.json"
    code = main(["evaluate", "--method", method, "--train", files / "train.npz", "--query", files / "query.npz",
                 "--out", out])
    err = capsys.readouterr().err
    assert code == 2 and f"{method} has no per-query attribution" in err and "influence, tracin, trak" in err
    assert not out.exists()


def test_loo_needs_a_convex_model(files, capsys):
    code = main(["evaluate", "--method", "influence", "--metrics", "loo", "--train", files / "train.npz",
                 "--query", files / "query.npz", "--out", files / "r.json"])
    assert code == 2 and "convex" in capsys.readouterr().err


def test_leave_one_out_of_exact_influence_through_the_command(files, capsys):
    out = files / "loo.json"
    code = main(["evaluate", "--method", "influence", "--ihvp", "exact", "--damping", "0.05", "--l2", "0.05",
                 "--hidden", "", "--metrics", "loo", "--loo-removed", "40", "--loo-steps", "80", "--loo-lr", "0.5",
                 "--train", files / "train.npz", "--query", files / "query.npz", "--out", out])
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["loo"]["removed"] == 40 and report["loo"]["defined"] == 10
    assert report["loo"]["mean"] > 0.95


def test_influence_method_trak_is_the_library_trak(files, tmp_path, capsys):
    import jax

    from jdps.gradients import param_filter as pf
    from jdps.influence import trak
    from jdps.models.mlp import mlp_task

    task, params = mlp_task(0, 2, (6,), 3)
    params = jax.tree.map(lambda a: a + 0.1, params)
    np.savez(tmp_path / "p.npz", **pf.flat(params))
    out = tmp_path / "s.npz"
    code = main(["influence", "--method", "trak", "--params", tmp_path / "p.npz", "--hidden", "6", "--proj-dim", "16",
                 "--train", files / "train.npz", "--query", files / "query.npz", "--out", out])
    assert code == 0, capsys.readouterr().err
    train, query = dict(np.load(files / "train.npz")), dict(np.load(files / "query.npz"))
    want = trak.scores(task, [params], train, query, key=0, d=16)
    np.testing.assert_allclose(np.load(out)["scores"], want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
