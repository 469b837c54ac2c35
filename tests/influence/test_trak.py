"""TRAK against its closed form on softmax regression, in the selector contract, and its SGLD ensemble."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jdps import selectors
from jdps.errors import InputError
from jdps.influence import trak
from jdps.models.mlp import mlp_task
from jdps.train import train
from tests.synthetic import noisy_blobs


def _setup():
    train_set, query, _ = noisy_blobs(60, 6, seed=1, noise=0.1)
    train_set = {"x": np.concatenate([train_set["x"], train_set["x"][:, :1] ** 2], 1), "y": train_set["y"]}
    query = {"x": np.concatenate([query["x"], query["x"][:, :1] ** 2], 1), "y": query["y"]}
    task, params = mlp_task(0, 3, (), 3)
    params = train(task, params, train_set, key=0, epochs=5, batch_size=20, optimizer=optax.adam(0.05)).params
    return task, params, train_set, query


def _margin_grads(params, x, y):
    """grad_theta (z_y - logsumexp_{c != y} z_c) of softmax regression, by hand: [n, (d + 1) c] (kernel rows,
    then the bias row, row-major) and p_y [n]."""
    w, b = (np.asarray(params["head"][k], np.float64) for k in ("kernel", "bias"))
    z = x @ w + b
    onehot = np.eye(z.shape[1])[y]
    e = np.exp(z - z.max(1, keepdims=True)) * (1 - onehot)
    dz = onehot - e / e.sum(1, keepdims=True)                 # d f / d z
    a = np.concatenate([x, np.ones((len(x), 1))], 1)
    p = np.exp(z - z.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True))[np.arange(len(x)), y]
    return np.einsum("nm,nc->nmc", a, dz).reshape(len(x), -1), p


def test_trak_with_a_full_rank_projection_is_the_closed_form():
    """With k_in = m and k_out = n the projection is invertible, and phi_q (Phi^T Phi)^{-1} phi_i does not depend
    on it: TRAK is then G_q (G^T G)^{-1} G^T diag(1 - p) of the exact margin gradients."""
    task, params, train_set, query = _setup()
    got = trak.scores(task, [params], train_set, query, key=3, d=64, damping=1e-7)
    g, p = _margin_grads(params, train_set["x"], train_set["y"])
    gq, _ = _margin_grads(params, query["x"], query["y"])
    want = gq @ np.linalg.solve(g.T @ g, g.T) * (1 - p)[None]
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())


def test_trak_selector_scores_select_and_save(tmp_path):
    task, params, train_set, query = _setup()
    other = jax.tree.map(lambda a: a * 0.9, params)
    sel = selectors.make("trak", task, [params, other], d=16)
    state = sel.fit(train_set, query, key=5)
    s = sel.scores(state, query)
    want = trak.scores(task, [params, other], train_set, query, key=jax.random.key(5), d=16)
    np.testing.assert_allclose(s, want, rtol=1e-5)
    np.testing.assert_allclose(state.scores, want.mean(0), rtol=1e-5)
    picked = sel.select(state, budget=7)
    assert set(picked.indices.tolist()) == set(np.argsort(-want.mean(0))[:7].tolist())
    sel.save(tmp_path / "trak", state)
    np.testing.assert_allclose(sel.scores(sel.load(tmp_path / "trak"), query), s, rtol=1e-6)
    with pytest.raises(InputError, match="budget"):
        sel.select(state)


def test_sgld_ensemble_gives_its_samples_and_trak_scores_them():
    task, params, train_set, query = _setup()
    sel = selectors.make("trak", task, params, d=16, sgld_samples=3, sgld_burn_in=1, sgld_thin=2, sgld_batch_size=20)
    state = sel.fit(train_set, query, key=0)
    leaves = jax.tree.leaves(state.ensemble)
    assert leaves[0].shape[0] == 3
    assert all(float(jnp.abs(a[0] - a[1]).max()) > 0 for a in leaves)        # distinct samples
    assert np.isfinite(sel.scores(state, query)).all()
    with pytest.raises(InputError, match="burn_in"):
        trak.sgld_samples(task, params, train_set, key=0, samples=2, burn_in=-1)
    with pytest.raises(InputError, match="one chain"):
        selectors.make("trak", task, [params, params], sgld_samples=2).fit(train_set, query, key=0)
