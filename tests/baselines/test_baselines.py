"""Baselines: the look-ahead meta-gradients against hand-derived forms and finite differences in numpy,
CDS scores against hand-computed log-likelihoods, the mixing training sets against hand counts, the
step budget, and L2RW's weights against planted label noise."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import roc_auc_score

from jdps.baselines import (NAMES, ReweightState, build_l2rw_step, build_mwn_step, cds_scores, keep_fractions,
                            kept, l2rw_weights, lookahead_meta_grad, run_baseline, training_set)
from jdps.data.batching import gather
from jdps.errors import InputError
from jdps.task import Task
from tests.synthetic import noisy_blobs

D, B, M = 3, 5, 4
RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(B, D)).astype(np.float32), RNG.normal(size=B).astype(np.float32)
XM, YM = RNG.normal(size=(M, D)).astype(np.float32), RNG.normal(size=M).astype(np.float32)
THETA = {"w": np.array([0.3, -0.2, 0.5], np.float32), "b": np.float32(0.1)}


def sq_loss(params, batch):
    """l_i = (y_i - x_i w - b)^2 / 2."""
    return 0.5 * (batch["y"] - batch["x"] @ params["w"] - params["b"]) ** 2


def softmax_loss(params, batch):
    logits = batch["x"] @ params["w"] + params["b"]
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1)[:, 0]


def _batches():
    """The batch rows 0..B-1 plus one padding row (index B), and the whole meta set."""
    batch = gather({"x": jnp.asarray(X), "y": jnp.asarray(Y)}, np.r_[np.arange(B), B])
    return batch, gather({"x": jnp.asarray(XM), "y": jnp.asarray(YM)}, np.arange(M))


def _np_grads(w, b, x, y):
    """Per-example gradients of sq_loss [n, D + 1] (w then b): r_i = y_i - x_i w - b, grad = -r_i [x_i, 1]."""
    r = y - x @ w - b
    return -r[:, None] * np.c_[x, np.ones(len(x))], 0.5 * r**2


def _np_meta_loss(theta):
    return (0.5 * (YM - XM @ theta[:D] - theta[D]) ** 2).mean()


def _np_meta_grad(theta):
    return _np_grads(theta[:D], theta[D], XM.astype(np.float64), YM.astype(np.float64))[0].mean(0)


THETA_VEC = np.r_[THETA["w"], THETA["b"]].astype(np.float64)


def test_lookahead_meta_gradient_is_the_hand_derived_identity():
    """d L_m(theta'(eps)) / d eps_i = -alpha grad l_i(theta) . grad L_m(theta'(eps)), also by finite differences;
    the padding row gets 0."""
    alpha, eps = 0.3, np.array([0.2, 0.9, 0.0, 0.5, 0.4, 0.7])
    batch, meta_batch = _batches()
    meta, g = jax.jit(lookahead_meta_grad, static_argnums=(0, 1))(
        sq_loss, sq_loss, THETA, batch, meta_batch, jnp.asarray(eps, jnp.float32), alpha)

    grads, _ = _np_grads(THETA["w"], THETA["b"], X.astype(np.float64), Y.astype(np.float64))
    ahead = lambda e: THETA_VEC - alpha * (e[:B, None] * grads).sum(0)  # the padding row is masked
    expected = np.r_[-alpha * grads @ _np_meta_grad(ahead(eps)), 0.0]
    h = 1e-6
    fd = np.array([(_np_meta_loss(ahead(eps + h * np.eye(B + 1)[i])) - _np_meta_loss(ahead(eps - h * np.eye(B + 1)[i])))
                   / (2 * h) for i in range(B + 1)])
    np.testing.assert_allclose(fd, expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(meta), _np_meta_loss(ahead(eps)), rtol=1e-5)


def test_l2rw_weights_clip_and_normalise():
    mask = jnp.array([1.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(l2rw_weights(jnp.array([-1.0, 2.0, -3.0, -5.0]), mask), [0.25, 0, 0.75, 0])
    np.testing.assert_array_equal(l2rw_weights(jnp.array([0.5, 0.0, 0.1, -2.0]), mask), [0, 0, 0, 0])


def test_l2rw_step_matches_numpy():
    """Weights from the meta-gradient at eps = 0 (theta' = theta); theta moves by SGD on sum_i w_i l_i."""
    lr = 0.05
    batch, meta_batch = _batches()
    step = jax.jit(build_l2rw_step(sq_loss, optax.sgd(lr), lookahead_lr=0.3))
    state = ReweightState(THETA, optax.sgd(lr).init(THETA))
    new, info = step(state, batch, meta_batch)

    grads, losses = _np_grads(THETA["w"], THETA["b"], X.astype(np.float64), Y.astype(np.float64))
    w = np.maximum(0.3 * grads @ _np_meta_grad(THETA_VEC), 0)
    assert 0 < (w > 0).sum() < B  # the test batch has both signs
    w /= w.sum()
    theta = THETA_VEC - lr * (w[:, None] * grads).sum(0)
    np.testing.assert_allclose(np.r_[new.params["w"], new.params["b"]], theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(info.weights), np.r_[B * w, 0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(info.loss), losses.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(info.meta_loss), _np_meta_loss(THETA_VEC), rtol=1e-5)


H = 4
NET = {"hidden": {"kernel": np.array([[0.8, -0.6, 1.2, 0.5]], np.float32),
                  "bias": np.array([0.3, 1.5, -0.2, 0.4], np.float32)},
       "out": {"kernel": np.array([0.7, -0.9, 0.4, 1.1], np.float32), "bias": np.float32(-0.2)}}


def _np_net(vec, losses):
    a, c, v, d = vec[:H], vec[H:2 * H], vec[2 * H:3 * H], vec[3 * H]
    return 1 / (1 + np.exp(-(np.maximum(losses[:, None] * a + c, 0) @ v + d)))


def test_mwn_step_matches_finite_differences():
    """phi moves by SGD on the finite-difference gradient of L_m(theta - alpha grad mean_i V(l_i; phi) l_i)
    (numpy, float64); theta then by SGD on mean_i V(l_i; phi_new) l_i."""
    lr, net_lr, alpha = 0.05, 0.5, 0.3
    batch, meta_batch = _batches()
    step = jax.jit(build_mwn_step(sq_loss, optax.sgd(lr), optax.sgd(net_lr), lookahead_lr=alpha))
    state = ReweightState(THETA, optax.sgd(lr).init(THETA), NET, optax.sgd(net_lr).init(NET))
    new, info = step(state, batch, meta_batch)

    grads, losses = _np_grads(THETA["w"], THETA["b"], X.astype(np.float64), Y.astype(np.float64))
    phi = np.r_[NET["hidden"]["kernel"][0], NET["hidden"]["bias"], NET["out"]["kernel"], NET["out"]["bias"]]
    phi = phi.astype(np.float64)
    hidden = losses[:, None] * phi[:H] + phi[H:2 * H]
    assert np.abs(hidden).min() > 1e-3  # away from the ReLU's kink, where finite differences break

    def objective(p):
        return _np_meta_loss(THETA_VEC - alpha * (_np_net(p, losses)[:, None] * grads).mean(0))

    h = 1e-6
    fd = np.array([(objective(phi + h * e) - objective(phi - h * e)) / (2 * h) for e in np.eye(len(phi))])
    assert np.abs(fd).max() > 1e-3
    phi_new = phi - net_lr * fd
    new_phi = np.r_[new.net["hidden"]["kernel"][0], new.net["hidden"]["bias"], new.net["out"]["kernel"],
                    new.net["out"]["bias"]]
    np.testing.assert_allclose(new_phi, phi_new, rtol=1e-4, atol=1e-6)
    w = _np_net(phi_new, losses)
    np.testing.assert_allclose(np.asarray(info.weights), np.r_[w, 0], rtol=1e-4)
    theta = THETA_VEC - lr * (w[:, None] * grads).mean(0)
    np.testing.assert_allclose(np.r_[new.params["w"], new.params["b"]], theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(info.meta_loss), objective(phi), rtol=1e-5)


def test_cds_scores_are_log_likelihood_gains():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(7, 2)).astype(np.float32), rng.integers(0, 3, 7).astype(np.int32)
    base = {"w": rng.normal(size=(2, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
    tuned = {"w": rng.normal(size=(2, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}

    def log_lik(p):
        z = x.astype(np.float64) @ p["w"] + p["b"]
        return z[np.arange(7), y] - np.log(np.exp(z).sum(1))

    scores = cds_scores(Task(softmax_loss), base, tuned, {"x": x, "y": y})
    np.testing.assert_allclose(scores, log_lik(tuned) - log_lik(base), rtol=1e-5, atol=1e-6)


def test_cds_keeps_a_shrinking_top_fraction():
    np.testing.assert_allclose(keep_fractions(4, 0.3, 0.25), [1.0, 0.5, 0.3, 0.3])
    masks = kept(np.array([0.1, 0.5, 0.5, -1.0, 2.0]), [1.0, 0.5, 0.3])
    np.testing.assert_array_equal(masks, [[1, 1, 1, 1, 1],   # all
                                          [0, 1, 1, 0, 1],   # ceil(2.5) = 3: 2.0, then the tie 0.5, 0.5
                                          [0, 1, 0, 0, 1]])  # ceil(1.5) = 2: the tie goes to the lower index


def test_mixing_training_sets_by_hand_count():
    n, m = 10, 3
    count = lambda rows: np.bincount(rows, minlength=n + m)
    np.testing.assert_array_equal(count(training_set("uniform", n, m)), np.ones(13))
    np.testing.assert_array_equal(count(training_set("meta_only", n, m)), [0] * 10 + [1] * 3)
    np.testing.assert_array_equal(count(training_set("dup_meta", n, m)), [1] * 10 + [3] * 3)  # round(10 / 3)
    np.testing.assert_array_equal(count(training_set("dup_meta", n, m, dup_factor=2)), [1] * 10 + [2] * 3)
    clean = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1], bool)
    np.testing.assert_array_equal(count(training_set("oracle", n, m, clean=clean)), np.r_[clean, 1, 1, 1])
    for kw, k in (({"budget": 4}, 4), ({"fraction": 0.25}, 3)):  # ceil(0.25 * 10)
        c = count(training_set("random", n, m, key=jax.random.key(0), **kw))
        assert c[:n].sum() == k and c[:n].max() == 1 and (c[n:] == 1).all()


def test_random_subset_is_reproducible_by_key():
    draw = lambda seed: training_set("random", 100, 5, key=jax.random.key(seed), budget=10)
    np.testing.assert_array_equal(draw(3), draw(3))
    assert not np.array_equal(draw(3), draw(4))


PARAMS = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}


def test_step_budget_and_reproducibility():
    """epochs * ceil(N / b) = 4 * 8 = 32 steps (the last batch of an epoch padded): uniform makes
    round(32 / 10) = 3 passes of ceil(304 / 32) = 10 steps, meta_only 16 passes of ceil(48 / 32) = 2 steps;
    random with one key gives one result."""
    data, meta, _ = noisy_blobs(256, 48)
    run = lambda name, **kw: run_baseline(name, Task(softmax_loss), PARAMS, data, meta, key=7, epochs=4,
                                          batch_size=32, optimizer=optax.sgd(0.1), **kw)
    uniform, meta_only = run("uniform"), run("meta_only")
    assert uniform.info["steps"] == len(uniform.history["step_loss"]) == 30
    assert meta_only.info["steps"] == len(meta_only.history["step_loss"]) == 32
    assert uniform.weights.sum() == 256 and meta_only.weights.sum() == 0
    first, second = run("random", budget=100), run("random", budget=100)
    assert first.weights.sum() == 100
    np.testing.assert_array_equal(first.weights, second.weights)
    np.testing.assert_array_equal(first.params["w"], second.params["w"])


def test_l2rw_gives_flipped_labels_lower_weight():
    """Planted label noise (30% flipped) on three Gaussian blobs: AUROC of -weight for flipped > 0.8."""
    data, meta, flipped = noisy_blobs(256, 48)
    result = run_baseline("l2rw", Task(softmax_loss), PARAMS, data, meta, key=1, epochs=4, batch_size=32,
                          optimizer=optax.sgd(0.1), meta_batch_size=16)
    assert result.info["steps"] == 32 and np.isfinite(result.history["step_loss"]).all()
    assert roc_auc_score(flipped, -result.weights) > 0.8
    assert result.weights[flipped].mean() < 0.5 * result.weights[~flipped].mean()


def test_bad_inputs_get_clear_errors():
    data, meta, _ = noisy_blobs(64, 12)
    run = lambda name, meta=meta, **kw: run_baseline(name, Task(softmax_loss), PARAMS, data, meta, key=0,
                                                     epochs=1, batch_size=16, **kw)
    assert set(NAMES) == {"uniform", "meta_only", "dup_meta", "random", "cds", "l2rw", "mwn", "oracle"}
    with pytest.raises(InputError, match="unknown baseline 'bads'"):
        run("bads")
    with pytest.raises(InputError, match=r"takes no option \['budget'\]"):
        run("uniform", budget=3)
    with pytest.raises(InputError, match="budget=k"):
        run("random")
    with pytest.raises(InputError, match="budget 100 is larger than the pool of 64"):
        run("random", budget=100)
    with pytest.raises(InputError, match="oracle needs the truth"):
        run("oracle")
    with pytest.raises(InputError, match=r"one entry per training example \(64,\)"):
        run("oracle", clean=np.ones(10, bool))
    with pytest.raises(InputError, match="dup_factor must be a positive integer"):
        run("dup_meta", dup_factor=0)
    with pytest.raises(InputError, match="r_floor must lie in"):
        run("cds", r_floor=0.0)
    with pytest.raises(InputError, match="meta_batch_size must be a positive integer"):
        run("l2rw", meta_batch_size=0)
    with pytest.raises(InputError, match=r"per-example shape \(2,\) but meta 'x' has \(3,\)"):
        run("l2rw", meta={"x": np.zeros((5, 3), np.float32), "y": np.zeros(5, np.int32)})
    with pytest.raises(InputError, match="meta is empty"):
        run("uniform", meta={"x": np.zeros((0, 2), np.float32), "y": np.zeros(0, np.int32)})
    with pytest.raises(InputError, match="mismatched lengths"):
        run("mwn", meta={"x": np.zeros((5, 2), np.float32), "y": np.zeros(4, np.int32)})
