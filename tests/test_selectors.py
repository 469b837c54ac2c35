"""The selector contract (jdps.selectors): names, options, sizes, keys, scores against numpy, saving states."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from jdps import bads, selectors
from jdps.errors import InputError
from jdps.task import Task
from tests.synthetic import noisy_blobs

C, D = 3, 2


def softmax_loss(p, batch):
    logits = batch["x"] @ p["w"] + p["b"]
    return -jax.nn.log_softmax(logits)[jnp.arange(len(batch["y"])), batch["y"]]


TASK = Task(loss_fn=softmax_loss)


def numpy_grads(p, x, y):
    """Per-example gradients of softmax regression [n, D * C + C]: (x (p - e_y)^T, p - e_y)."""
    logits = x @ np.asarray(p["w"]) + np.asarray(p["b"])
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    r = prob - np.eye(C)[y]
    return np.concatenate([(x[:, :, None] * r[:, None, :]).reshape(len(x), -1), r], axis=1)


def params(seed):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(D, C)), jnp.float32), "b": jnp.asarray(rng.normal(size=C), jnp.float32)}


POOL, REF, FLIPPED = noisy_blobs(60, 12, seed=1)


def test_names_cover_the_methods_and_each_has_an_options_dataclass():
    required = {"bads", "gtp", "quad", "influence", "tracin", "random", "l2rw", "mwn", "cds", "uniform",
                "meta_only", "dup_meta", "oracle"}
    assert required <= set(selectors.names())
    for name in selectors.names():
        cls = selectors.options_type(name)
        cls()  # every field has a default
        with pytest.raises(Exception):  # frozen
            setattr(cls(), "x_not_a_field", 1)


def test_make_refuses_unknown_names_options_and_presets():
    with pytest.raises(InputError, match="unknown selector 'nope'"):
        selectors.make("nope", TASK, params(0))
    with pytest.raises(InputError, match="takes no option \\['bogus'\\]"):
        selectors.make("influence", TASK, params(0), bogus=1)
    with pytest.raises(InputError, match="has no preset 'nope'"):
        selectors.make("bads", TASK, params(0), preset="nope")
    with pytest.raises(InputError, match="needs a task and its parameters"):
        selectors.make("gtp")


def test_bads_presets_and_flat_config_fields():
    sel = selectors.make("bads", TASK, params(0), preset="denoise", lr=0.2, epochs=3)
    cfg = sel.options.config
    assert (cfg.rho, cfg.weight_prior_mean, cfg.weight_prior_std, cfg.theta_loss, cfg.lr) == \
        (4.0, 0.9, 0.5, "self_normalised", 0.2)
    assert sel.options.epochs == 3
    assert selectors.make("bads", TASK, params(0), steps=10).options.epochs is None  # steps replace the epochs


def test_random_draws_distinct_examples_from_an_int_or_a_key():
    sel = selectors.make("random")
    state = sel.fit(POOL, key=None)
    a = sel.select(state, budget=20, key=3)
    b = sel.select(state, budget=20, key=jax.random.key(3))
    np.testing.assert_array_equal(a.indices, b.indices)
    assert len(set(a.indices.tolist())) == 20 and a.indices.max() < 60
    assert len(sel.select(state, fraction=0.05, key=0)) == 3            # ceil(0.05 * 60)
    with pytest.raises(InputError, match="larger than the pool"):
        sel.select(state, budget=61, key=0)
    with pytest.raises(InputError, match="pass key="):
        sel.select(state, budget=2)
    with pytest.raises(InputError, match="seed must be an integer"):
        sel.select(state, budget=2, key=-1)


def test_influence_and_tracin_scores_match_numpy_gradient_products():
    """identity iHVP: S[q, z] = g_q . g_z; TracIn: sum_t eta_t g_q(t) . g_z(t); the selection is the top k of
    the mean over the reference (linear in the query gradient), ties to the lowest index."""
    p0, p1 = params(0), params(1)
    x, y, xr, yr = POOL["x"], POOL["y"], REF["x"], REF["y"]
    inf = selectors.make("influence", TASK, p0, ihvp="identity")
    state = inf.fit(POOL, REF, key=0)
    expected = numpy_grads(p0, xr, yr) @ numpy_grads(p0, x, y).T
    np.testing.assert_allclose(inf.scores(state, REF), expected, rtol=1e-4, atol=1e-5)
    top = inf.select(state, budget=7)
    np.testing.assert_array_equal(top.indices, np.argsort(-expected.mean(0), kind="stable")[:7])

    rates = (0.5, 2.0)
    tr = selectors.make("tracin", TASK, [p0, p1], learning_rates=rates)
    t_state = tr.fit(POOL, REF)
    expected = sum(r * numpy_grads(p, xr, yr) @ numpy_grads(p, x, y).T for r, p in zip(rates, (p0, p1)))
    np.testing.assert_allclose(tr.scores(t_state, REF), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(t_state.scores, expected.mean(0), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match="budget=k or fraction=f"):
        tr.select(t_state)
    with pytest.raises(InputError, match="no per-query attribution"):
        selectors.make("random").scores({}, REF)


def test_bads_weights_every_example_without_a_size_and_ranks_noise_low(tmp_path):
    sel = selectors.make("bads", TASK, {"w": jnp.zeros((D, C)), "b": jnp.zeros(C)}, preset="faithful", epochs=12,
                         batch_size=20, meta_batch_size=12, burn_in=6)  # the SGLD preset: 36 steps move theta enough
    state = sel.fit(POOL, REF, key=0)
    everything = sel.select(state)
    w = bads.posterior_mean_weights(state)
    assert len(everything) == 60
    np.testing.assert_allclose(everything.weights, np.sort(w)[::-1])
    assert roc_auc_score(FLIPPED, -w) > 0.8
    top = sel.select(state, budget=10)
    np.testing.assert_array_equal(np.sort(top.indices), np.sort(np.argsort(-w, kind="stable")[:10]))
    assert set(sel.select(state, threshold=0.5).indices.tolist()) == set(np.flatnonzero(w >= 0.5).tolist())
    sel.save(tmp_path / "bads", state)
    np.testing.assert_array_equal(bads.posterior_mean_weights(sel.load(tmp_path / "bads")), w)
    with pytest.raises(InputError, match="holds a 'bads' state, not 'gtp'"):
        selectors.make("gtp", TASK, [params(0)]).load(tmp_path / "bads")


def test_gtp_picks_distinct_examples_reports_why_it_stops_and_saves(tmp_path):
    sel = selectors.make("gtp", TASK, [params(0), params(1)], d=8)
    state = sel.fit(POOL, None, key=0)
    assert state.features.shape == (60, 16)
    picked = sel.select(state, budget=5, solver="omp")
    assert len(set(picked.indices.tolist())) == len(picked) <= 5 and "stop_reason" in picked.info
    assert np.all(picked.weights >= 0)
    sel.save(tmp_path / "gtp", state)
    again = sel.select(sel.load(tmp_path / "gtp"), budget=5, solver="omp")
    np.testing.assert_array_equal(again.indices, picked.indices)
    with pytest.raises(InputError, match="gtp needs a size"):
        sel.select(state)


def test_training_baselines_read_out_their_weights():
    uniform = selectors.make("uniform", TASK, params(0), epochs=1, batch_size=20)
    state = uniform.fit(POOL, REF, key=0)
    s = uniform.select(state)
    assert len(s) == 60 and np.all(s.weights == 1.0)
    assert rankdata(s.indices).tolist() == list(range(1, 61))  # ties keep index order
    meta_only = selectors.make("meta_only", TASK, params(0), epochs=1, batch_size=20)
    assert np.all(meta_only.fit(POOL, REF, key=0).weights == 0.0)  # it trains on the meta set alone
    with pytest.raises(InputError, match="takes budget, fraction or threshold"):
        uniform.select(state, solver="omp")
