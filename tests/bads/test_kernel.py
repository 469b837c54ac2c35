"""BADS sampler: each update against a hand computation in numpy, the theta chain against the closed-form
Bayesian linear-regression posterior and blackjax.sgld, and a small denoising run against planted noise."""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.sgmcmc.gradients import grad_estimator
from scipy import stats
from sklearn.metrics import roc_auc_score

from jdps import bads
from jdps.selection import mean_weight_by_group
from jdps.bads import weight_prior as wp
from jdps.data.batching import gather
from jdps.errors import InputError
from tests.synthetic import noisy_blobs

N, M, D = 8, 4, 2


def sq_loss(params, batch):
    """l_i = (y_i - x_i w - b)^2 / 2."""
    return 0.5 * (batch["y"] - batch["x"] @ params["w"] - params["b"]) ** 2


def _regression(n, m, seed=0):
    rng = np.random.default_rng(seed)
    x, xm = rng.normal(size=(n, D)).astype(np.float32), rng.normal(size=(m, D)).astype(np.float32)
    truth = np.array([1.0, -0.5], np.float32)
    y = (x @ truth + 0.3 + rng.normal(size=n)).astype(np.float32)
    ym = (xm @ truth + 0.3 + rng.normal(size=m)).astype(np.float32)
    return {"x": x, "y": y}, {"x": xm, "y": ym}


def _np_grad(params, x, y):
    """Per-example gradients of sq_loss: r_i = y_i - x_i w - b; dl/dw = -r_i x_i, dl/db = -r_i."""
    r = y - x @ np.asarray(params["w"]) - np.asarray(params["b"])
    return -r[:, None] * x, -r, 0.5 * r**2


def _reflect(z):
    z = np.mod(z, 2.0)
    return np.where(z > 1, 2 - z, z)


PARAMS = {"w": jnp.array([0.2, -0.1]), "b": jnp.array(0.05)}
INDEX = np.array([1, 4, 6, N], np.int32)  # the last row is padding


def _setup(config, weights=None, step=0, last_visit=None):
    data, meta = _regression(N, M)
    sampler = bads.as_top_level_api(sq_loss, None, N, M, config)
    state = sampler.init(jax.random.key(0), PARAMS)
    if weights is not None:
        state = state._replace(chain=jnp.asarray(weights, jnp.float32))
    state = state._replace(step=jnp.asarray(step, jnp.int32))
    if last_visit is not None:
        state = state._replace(last_visit=jnp.asarray(last_visit, jnp.int32))
    batch = gather({k: jnp.asarray(v) for k, v in data.items()}, INDEX)
    meta_batch = gather({k: jnp.asarray(v) for k, v in meta.items()}, np.arange(M))
    return sampler, state, batch, meta_batch, data, meta


Z0 = np.array([0.5, 0.02, 0.3, 0.9, 0.98, 0.1, 0.6, 0.4], np.float32)


@pytest.mark.parametrize("theta_loss,meta_strength,kernel", [("weighted", None, "sgld"),
                                                             ("self_normalised", None, "sgld"),
                                                             ("weighted", 0.7, "sgld"), ("weighted", 0.7, "psgld")])
def test_cold_step_matches_numpy(theta_loss, meta_strength, kernel):
    """T = 0: theta and the batch weights move by their gradients; the rest stays; reflection at 0 and 1.
    meta_strength s weights the meta set's mean loss by s rho instead of M / N; pSGLD's first step divides
    each coordinate's gradient by eps + sqrt(V / (1 - a)) with V = (1 - a) g^2, i.e. by eps + |g|."""
    cfg = bads.preset("faithful", temperature=0.0, lr=0.1, weight_lr=0.3, rho=2.0, weight_prior_mean=0.6,
                          weight_prior_std=0.8, prior_std=1.5, weight_substeps=1, theta_loss=theta_loss,
                          meta_strength=meta_strength, theta_kernel=kernel)
    sampler, state, batch, meta_batch, data, meta = _setup(cfg, weights=Z0, step=3)
    new, info = jax.jit(sampler.step)(jax.random.key(1), state, batch, meta_batch)

    rows = INDEX[:3]
    gw, gb, losses = _np_grad(PARAMS, data["x"][rows], data["y"][rows])
    mgw, mgb, _ = _np_grad(PARAMS, meta["x"], meta["y"])
    w = Z0[rows]
    denom = 3 if theta_loss == "weighted" else w.sum()
    theta = {"w": np.asarray(PARAMS["w"]), "b": np.asarray(PARAMS["b"])}
    meta_coef = M / N if meta_strength is None else meta_strength * 2.0
    grad_w = 2.0 * (w[:, None] * gw).sum(0) / denom + meta_coef * mgw.mean(0) + theta["w"] / (N * 1.5**2)
    grad_b = 2.0 * (w * gb).sum() / denom + meta_coef * mgb.mean() + theta["b"] / (N * 1.5**2)
    if kernel == "psgld":  # step 4: debias 1 - 0.99^4 on V = 0.01 g^2 (V starts at 0)
        scale = lambda g: 1.0 / (1e-5 + np.sqrt(0.01 * g**2 / (1 - 0.99**4)))  # noqa: E731
        grad_w, grad_b = grad_w * scale(grad_w), grad_b * scale(grad_b)
    np.testing.assert_allclose(new.params["w"], theta["w"] - 0.1 * grad_w, rtol=1e-5)
    np.testing.assert_allclose(new.params["b"], theta["b"] - 0.1 * grad_b, rtol=1e-5)

    z = Z0.copy()
    z[rows] = _reflect(w - 0.3 * (2.0 * losses + (w - 0.6) / 0.8**2))
    np.testing.assert_allclose(new.chain, z, rtol=1e-5, atol=1e-6)
    assert np.any(w - 0.3 * (2.0 * losses + (w - 0.6) / 0.8**2) < 0)  # a reflection happened
    np.testing.assert_array_equal(new.last_visit, np.where(np.isin(np.arange(N), rows), 4, 0))
    assert int(new.step) == 4
    np.testing.assert_allclose(info.loss, losses.mean(), rtol=1e-5)


def test_held_out_reference_shifts_the_force_and_leaves_theta_its_fit_rows():
    """loss_reference="held_out", T = 0: the meta rows flagged `reference` leave theta's gradient (it is the
    gradient of the meta set without them) and a visit feels rho (l_i - c), c = (1 - a) mean(reference losses)
    after the first update from c = 0."""
    cfg = bads.preset("faithful", temperature=0.0, lr=0.1, weight_lr=0.3, rho=2.0, weight_prior_mean=0.6,
                      weight_prior_std=0.8, weight_substeps=1, meta_strength=0.7, loss_reference="held_out",
                      reference_decay=0.9)
    sampler, state, batch, meta_batch, data, meta = _setup(cfg, weights=Z0)
    held = np.array([False, True, False, True])
    new, _ = jax.jit(sampler.step)(jax.random.key(1), state, batch, dict(meta_batch, reference=jnp.asarray(held)))

    rows = INDEX[:3]
    gw, gb, losses = _np_grad(PARAMS, data["x"][rows], data["y"][rows])
    mgw, mgb, meta_losses = _np_grad(PARAMS, meta["x"][~held], meta["y"][~held])
    c = 0.1 * _np_grad(PARAMS, meta["x"][held], meta["y"][held])[2].mean()
    w = Z0[rows]
    theta = {"w": np.asarray(PARAMS["w"]), "b": np.asarray(PARAMS["b"])}
    grad_w = 2.0 * (w[:, None] * gw).sum(0) / 3 + 0.7 * 2.0 * mgw.mean(0) + theta["w"] / N
    grad_b = 2.0 * (w * gb).sum() / 3 + 0.7 * 2.0 * mgb.mean() + theta["b"] / N
    np.testing.assert_allclose(new.params["w"], theta["w"] - 0.1 * grad_w, rtol=1e-5)
    np.testing.assert_allclose(new.params["b"], theta["b"] - 0.1 * grad_b, rtol=1e-5)
    np.testing.assert_allclose(new.reference, c, rtol=1e-5)
    z = _reflect(w - 0.3 * (2.0 * (losses - c) + (w - 0.6) / 0.8**2))
    np.testing.assert_allclose(new.chain[rows], z, rtol=1e-5, atol=1e-6)


def test_reference_rows_hold_out_a_fraction_of_each_class():
    """floor(0.2 m_c) rows of each class (5 -> 1, 15 -> 3, 4 -> 0), only from that class; a key fixes them."""
    y = np.repeat([0, 1, 2], [5, 15, 4])
    held = bads.sampler.reference_rows(y, len(y), 0.2, jax.random.key(3))
    assert [int(held[y == c].sum()) for c in range(3)] == [1, 3, 0]
    np.testing.assert_array_equal(held, bads.sampler.reference_rows(y, len(y), 0.2, jax.random.key(3)))
    assert not np.array_equal(held, bads.sampler.reference_rows(y, len(y), 0.2, jax.random.key(4)))


def test_substeps_integrate_the_visit():
    """K sub-steps of weight_lr / K each, reflecting after each (T = 0)."""
    cfg = bads.preset("faithful", temperature=0.0, weight_lr=0.6, rho=3.0, weight_substeps=4)
    sampler, state, batch, meta_batch, data, _ = _setup(cfg, weights=Z0)
    new, _ = jax.jit(sampler.step)(jax.random.key(1), state, batch, meta_batch)
    rows = INDEX[:3]
    losses = _np_grad(PARAMS, data["x"][rows], data["y"][rows])[2]
    z = Z0[rows]
    for _ in range(4):
        z = _reflect(z - 0.15 * (3.0 * losses + (z - 0.5) / 1.0))
    np.testing.assert_allclose(new.chain[rows], z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("substeps", [1, 5])
def test_lazy_noise_variance_is_the_missed_steps(substeps):
    """Var z_i' = 2 eta_w T (t - last_i), eta_w = weight_lr b / N: the noise of every step missed."""
    cfg = bads.preset("faithful", temperature=0.5, weight_lr=1e-3, rho=1.0, weight_substeps=substeps)
    last = np.array([0, 9, 0, 0, 3, 0, 0, 0])  # examples 1, 4, 6 last moved 1, 7 and 10 steps ago
    sampler, state, batch, meta_batch, *_ = _setup(cfg, weights=np.full(N, 0.5), step=10, last_visit=last)
    keys = jax.random.split(jax.random.key(5), 8000)
    z = jax.jit(jax.vmap(lambda k: sampler.step(k, state, batch, meta_batch)[0].chain))(keys)
    eta_w = 1e-3 * 4 / N
    expected = 2 * eta_w * 0.5 * np.array([11 - 9, 11 - 3, 11 - 0])
    np.testing.assert_allclose(np.asarray(z)[:, INDEX[:3]].var(0), expected, rtol=0.08)
    assert np.all(np.asarray(z)[:, [0, 2, 3, 5, 7]] == 0.5)  # off-batch weights do not move


def test_exact_offbatch_moves_every_weight():
    cfg = bads.preset("faithful", temperature=0.0, weight_lr=0.2, rho=1.5, offbatch="exact", weight_prior_mean=0.7)
    sampler, state, batch, meta_batch, data, _ = _setup(cfg, weights=Z0)
    new, _ = jax.jit(sampler.step)(jax.random.key(1), state, batch, meta_batch)
    rows = INDEX[:3]
    losses = _np_grad(PARAMS, data["x"][rows], data["y"][rows])[2]
    eta_w = 0.2 * 4 / N
    drift = (Z0 - 0.7) / 1.0
    drift[rows] += (N / 4) * 1.5 * losses
    np.testing.assert_allclose(new.chain, _reflect(Z0 - eta_w * drift), rtol=1e-5, atol=1e-6)
    assert new.last_visit is None
    hot = bads.as_top_level_api(sq_loss, None, N, M, bads.preset("faithful", weight_lr=0.01, offbatch="exact"))
    state = hot.init(jax.random.key(0), PARAMS)
    keys = jax.random.split(jax.random.key(2), 8000)
    z = jax.jit(jax.vmap(lambda k: hot.step(k, state, batch, meta_batch)[0].chain))(keys)
    np.testing.assert_allclose(np.asarray(z)[:, 0].var(), 2 * 0.01 * 4 / N, rtol=0.08)  # off-batch noise


def test_logit_parametrisation_includes_the_jacobian():
    """u' = u - weight_lr [w(1-w)(rho l + (w - beta)/sigma^2) - (1 - 2w)], w = sigmoid(u)."""
    cfg = bads.preset("faithful", temperature=0.0, weight_lr=0.5, rho=2.0, weight_param="logit", weight_substeps=1)
    u0 = np.linspace(-2, 2, N).astype(np.float32)
    sampler, state, batch, meta_batch, data, _ = _setup(cfg, weights=u0)
    new, _ = jax.jit(sampler.step)(jax.random.key(1), state, batch, meta_batch)
    rows = INDEX[:3]
    losses = _np_grad(PARAMS, data["x"][rows], data["y"][rows])[2]
    w = 1 / (1 + np.exp(-u0[rows]))
    grad = w * (1 - w) * (2.0 * losses + (w - 0.5)) - (1 - 2 * w)
    expected = u0.copy()
    expected[rows] -= 0.5 * grad
    np.testing.assert_allclose(new.chain, expected, rtol=1e-5, atol=1e-6)


def test_contrastive_log_z_uses_a_meta_free_chain():
    cfg = bads.preset("faithful", temperature=0.0, lr=0.1, weight_lr=0.3, rho=1.0, log_z="contrastive", weight_substeps=1)
    sampler, state, batch, meta_batch, data, meta = _setup(cfg, weights=np.full(N, 0.5))
    shadow = {"w": jnp.array([-0.4, 0.3]), "b": jnp.array(0.0)}
    state = state._replace(shadow=shadow)
    new, _ = jax.jit(sampler.step)(jax.random.key(1), state, batch, meta_batch)
    rows = INDEX[:3]
    losses = _np_grad(PARAMS, data["x"][rows], data["y"][rows])[2]
    gw, gb, shadow_losses = _np_grad(shadow, data["x"][rows], data["y"][rows])
    expected = 0.5 - 0.3 * ((losses - shadow_losses) + 0.0)
    np.testing.assert_allclose(new.chain[rows], _reflect(expected), rtol=1e-5)
    sw = np.asarray(shadow["w"])  # theta' follows the weighted training loss and the prior, no meta term
    np.testing.assert_allclose(new.shadow["w"], sw - 0.1 * (0.5 * gw.mean(0) + sw / N), rtol=1e-5)


def test_beta_and_mean_penalty_priors():
    """R'(w) of the Beta prior against scipy's log-density; the mean penalty pulls all weights alike."""
    w = np.array([0.1, 0.4, 0.8])
    a, b = wp.beta_shape(0.3, 0.2)
    beta = stats.beta(a, b)
    np.testing.assert_allclose(beta.mean(), 0.3, rtol=1e-6)
    np.testing.assert_allclose(beta.std(), 0.2, rtol=1e-6)
    h = 1e-5
    numeric = -(beta.logpdf(w + h) - beta.logpdf(w - h)) / (2 * h)
    np.testing.assert_allclose(wp.prior_slope(jnp.asarray(w), None, "beta", 0.3, 0.2), numeric, rtol=1e-3)
    slope = wp.prior_slope(jnp.asarray(w), jnp.mean(jnp.asarray(w)), "mean_penalty", 0.3, 0.5)
    np.testing.assert_allclose(slope, np.full(3, (w.mean() - 0.3) / 0.25), rtol=1e-6)


def test_running_means_burn_in_thin_and_window():
    """Full batches: every weight is visited each step; the mean is over steps t > burn_in with
    (t - burn_in) % thin == 0, or an exponential average with window S."""
    data, meta = _regression(N, M)
    batch = gather({k: jnp.asarray(v) for k, v in data.items()}, np.arange(N))
    meta_batch = gather({k: jnp.asarray(v) for k, v in meta.items()}, np.arange(M))
    for window in (None, 2):
        cfg = bads.preset("faithful", burn_in=3, thin=2, avg_window=window, num_theta_samples=2, theta_thin=3)
        sampler = bads.as_top_level_api(sq_loss, None, N, M, cfg)
        state = sampler.init(jax.random.key(0), PARAMS)
        step = jax.jit(sampler.step)
        trace, thetas = [], []
        for t in range(1, 11):
            state, _ = step(jax.random.key(t), state, batch, meta_batch)
            trace.append(np.asarray(state.chain))
            thetas.append(np.asarray(state.params["w"]))
        kept = [trace[t - 1] for t in range(1, 11) if t > 3 and (t - 3) % 2 == 0]  # t = 5, 7, 9
        if window is None:
            expected = np.mean(kept, axis=0)
        else:
            expected = kept[0]
            for c, sample in enumerate(kept[1:], start=2):
                expected = expected + (sample - expected) / min(c, window)
        np.testing.assert_allclose(bads.posterior_mean_weights(state), expected, rtol=1e-5)
        np.testing.assert_array_equal(state.weight_count, 3)
        # theta snapshots at t = 6 and 9 (every 3 steps after burn-in), in a ring of 2
        np.testing.assert_allclose(bads.theta_samples(state)["w"], [thetas[5], thetas[8]], rtol=1e-6)


def test_theta_update_equals_blackjax_sgld_at_zero_temperature():
    """With the weights fixed, theta's step is blackjax.sgld on log p = -U with step lr / N."""
    cfg = bads.preset("faithful", temperature=0.0, lr=0.2, weight_lr=0.0, rho=1.0, prior_std=2.0)
    sampler, state, batch, meta_batch, data, meta = _setup(cfg)
    full = gather({k: jnp.asarray(v) for k, v in data.items()}, np.arange(N))
    c = 0.5  # every weight sits at the prior mean

    def logprior(p):
        return -(jnp.sum(p["w"] ** 2) + p["b"] ** 2) / (2 * 2.0**2)

    def loglik(p, row):  # both sets as one data set, each term scaled to its own size
        xi, yi, scale = row
        return -scale * 0.5 * (yi - xi @ p["w"] - p["b"]) ** 2

    rows = (jnp.concatenate([full["x"], meta_batch["x"]]), jnp.concatenate([full["y"], meta_batch["y"]]),
            jnp.concatenate([jnp.full(N, c), jnp.ones(M)]))
    sgld = blackjax.sgld(grad_estimator(logprior, loglik, N + M))
    theirs, ours = PARAMS, state
    sgld_step, step = jax.jit(sgld.step), jax.jit(sampler.step)
    for t in range(3):
        theirs = sgld_step(jax.random.key(t), theirs, rows, 0.2 / N, 0.0)
        ours, _ = step(jax.random.key(t), ours, full, meta_batch)
    for leaf in ("w", "b"):
        np.testing.assert_allclose(ours.params[leaf], theirs[leaf], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_theta_chain_matches_the_bayesian_linear_regression_posterior(noise):
    """Weights fixed at c: U = rho c sum_i l_i + sum_j l^m_j + |theta|^2 / (2 sigma^2) is Gaussian in
    theta = (w, b) with precision P = rho c X'X + Xm'Xm + I / sigma^2 and mean P^-1 (rho c X'y + Xm'ym);
    the chain at temperature T samples N(mean, T P^-1) (Euler bias ~ eta lambda_max / 2 < 2%), with
    Gaussian noise and with +-1 noise of the same covariance (the weak Euler scheme)."""
    n, m, rho, c, sigma, temp, lr = 64, 16, 1.0, 0.5, 1.0, 0.5, 0.04
    data, meta = _regression(n, m, seed=1)
    cfg = bads.preset("faithful", temperature=temp, lr=lr, weight_lr=0.0, rho=rho, prior_std=sigma, num_theta_samples=0,
                          noise=noise)
    sampler = bads.as_top_level_api(sq_loss, None, n, m, cfg)
    batch = gather({k: jnp.asarray(v) for k, v in data.items()}, np.arange(n))
    meta_batch = gather({k: jnp.asarray(v) for k, v in meta.items()}, np.arange(m))
    start = sampler.init(jax.random.key(0), {"w": jnp.zeros(D), "b": jnp.zeros(())})

    def chain(key):
        def body(state, k):
            state, _ = sampler.step(k, state, batch, meta_batch)
            return state, jnp.append(state.params["w"], state.params["b"])
        return jax.lax.scan(body, start, jax.random.split(key, 800))[1][400:]

    samples = np.asarray(jax.jit(jax.vmap(chain))(jax.random.split(jax.random.key(1), 1024))).reshape(-1, D + 1)
    X, Xm = np.c_[data["x"], np.ones(n)], np.c_[meta["x"], np.ones(m)]
    P = rho * c * X.T @ X + Xm.T @ Xm + np.eye(D + 1) / sigma**2
    cov = temp * np.linalg.inv(P)
    mean = np.linalg.solve(P, rho * c * X.T @ data["y"] + Xm.T @ meta["y"])
    assert (lr / n) * np.linalg.eigvalsh(P).max() < 0.04
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.05 * sd.max())
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.06 * np.diag(cov).max())


def softmax_loss(params, batch):
    logits = batch["x"] @ params["w"] + params["b"]
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1)[:, 0]


@pytest.mark.parametrize("weight_param", ["reflect", "network"])
def test_denoising_run_ranks_flipped_labels_low(weight_param):
    """Planted label noise (30% flipped) on three Gaussian blobs: the posterior-mean weights of the
    flipped examples are lower (AUROC > 0.9) and lower on average per group."""
    n, m = 256, 48
    data, meta, flipped = noisy_blobs(n, m)
    params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    extra, scales = {}, {}
    if weight_param == "network":  # the weight network sees each example's loss (as Meta-Weight-Net does)
        extra = dict(weight_features=lambda p, batch: softmax_loss(p, batch)[:, None], weight_feature_dim=1)
        scales = dict(rho=1.0, weight_prior_std=0.3, net_width=16, net_lr=0.5)  # w ~ beta - rho sigma_w^2 l
    cfg = bads.preset("faithful", burn_in=64, weight_param=weight_param, **scales)
    sampler = bads.as_top_level_api(softmax_loss, None, n, m, cfg, **extra)
    state = sampler.init(jax.random.key(0), params)
    state, info = bads.run_epochs(sampler.step, jax.random.key(1), state, data, meta, 16, 32, 16)
    assert info.loss.shape == (16 * 8,) and info.finite.all()
    weights = bads.posterior_mean_weights(state)
    assert roc_auc_score(flipped, -weights) > 0.9
    by_group = mean_weight_by_group(weights, np.where(flipped, "flipped", "clean"))
    assert by_group["flipped"] < 0.5 * by_group["clean"] and by_group["clean"] > 0.3  # no collapse to 0
    centres = np.array([[3, 0], [-1.5, 2.6], [-1.5, -2.6]], np.float32)
    probs = bads.posterior_predictive(lambda p, x: x @ p["w"] + p["b"], state, jnp.asarray(centres))
    np.testing.assert_array_equal(np.asarray(probs).argmax(1), [0, 1, 2])


def test_divergence_names_the_step_and_the_step_sizes():
    data, meta = _regression(32, 8)
    sampler = bads.as_top_level_api(sq_loss, None, 32, 8, bads.preset("faithful", lr=1e4))
    state = sampler.init(jax.random.key(0), PARAMS)
    with pytest.raises(bads.SamplerDivergedError, match=r"diverged at step \d+ .*lr=10000"):
        bads.run_epochs(sampler.step, jax.random.key(1), state, data, meta, 3, 8, 4)


def test_bad_inputs_get_clear_errors():
    data, meta = _regression(N, M)
    with pytest.raises(InputError, match="meta"):
        bads.as_top_level_api(sq_loss, None, N, 0)
    with pytest.raises(InputError, match="weight_param"):
        bads.preset("faithful", weight_param="clip")
    with pytest.raises(InputError, match="weight_prior_std"):
        bads.preset("faithful", weight_prior="beta", weight_prior_std=0.6)
    with pytest.raises(InputError, match="weight_features"):
        bads.as_top_level_api(sq_loss, None, N, M, bads.preset("faithful", weight_param="network"))
    sampler = bads.as_top_level_api(sq_loss, None, N, M)
    state = sampler.init(jax.random.key(0), PARAMS)
    batch = {k: jnp.asarray(v[:4]) for k, v in data.items()}
    meta_batch = gather({k: jnp.asarray(v) for k, v in meta.items()}, np.arange(M))
    with pytest.raises(InputError, match="index"):
        sampler.step(jax.random.key(0), state, batch, meta_batch)
    mean_loss = bads.as_top_level_api(lambda p, b: sq_loss(p, b).mean(), None, N, M)
    with pytest.raises(InputError, match="one loss per example"):
        mean_loss.step(jax.random.key(0), state, gather({k: jnp.asarray(v) for k, v in data.items()}, INDEX),
                       meta_batch)
    with pytest.raises(InputError, match="meta_batch_size"):
        bads.run_epochs(sampler.step, jax.random.key(0), state, data, meta, 1, 4, M + 1)
    with pytest.raises(InputError, match="n_meta"):
        bads.run_epochs(sampler.step, jax.random.key(0), state, data, {k: v[:2] for k, v in meta.items()}, 1, 4, 2)
    with pytest.raises(InputError, match="no posterior sample"):
        bads.posterior_mean_weights(state)


def test_fit_killed_after_an_epoch_resumes_to_the_uninterrupted_chain(tmp_path):
    """jdps.bads.fit with a Checkpoints directory: a run stopped after epoch 1 and called again ends with
    the same weights and theta as one run straight through (the state, None fields included, round-trips)."""
    from jdps.checkpoint import Checkpoints
    from jdps.models.mlp import mlp_task

    data, meta, _ = noisy_blobs(64, 16)
    task, params = mlp_task(0, 2, (8,), 3)
    cfg = bads.preset("faithful", log_z="contrastive", theta_kernel="psgld", lr=1e-3)
    straight = bads.fit(task, params, data, meta, key=3, epochs=3, batch_size=16, meta_batch_size=8, config=cfg)

    class Stop(Exception):
        pass

    def stop(epoch, state):
        raise Stop

    with pytest.raises(Stop):
        bads.fit(task, params, data, meta, key=3, epochs=3, batch_size=16, meta_batch_size=8, config=cfg,
                 checkpoints=Checkpoints(tmp_path / "c"), checkpoint=stop)
    resumed = bads.fit(task, params, data, meta, key=3, epochs=3, batch_size=16, meta_batch_size=8, config=cfg,
                       checkpoints=Checkpoints(tmp_path / "c"))
    np.testing.assert_array_equal(bads.posterior_mean_weights(resumed), bads.posterior_mean_weights(straight))
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params)):
        np.testing.assert_array_equal(a, b)


def test_any_pool_size_and_a_one_epoch_run_weight_every_example_and_short_runs_are_refused():
    """N = 1 and N = 37 with batch 16 (the last batch padded): one epoch gives every example a finite
    posterior-mean weight; fewer steps than an epoch, or a burn-in that leaves no epoch, fail before work."""
    from jdps.models.mlp import mlp_task

    data, meta, _ = noisy_blobs(37, 6)
    task, params = mlp_task(0, 2, (4,), 3)
    for n in (1, 37):
        pool = {k: v[:n] for k, v in data.items()}
        held = meta if n > 1 else {"x": meta["x"][:2], "y": np.full(2, pool["y"][0])}  # the pool's classes only
        state = bads.fit(task, params, pool, held, key=0, epochs=1, batch_size=16, meta_batch_size=4)
        w = bads.posterior_mean_weights(state)
        assert w.shape == (n,) and np.isfinite(w).all() and int(state.step) == -(-n // 16)
    with pytest.raises(InputError, match="pass steps >= 3 or epochs >= 1"):
        bads.fit(task, params, data, meta, key=0, steps=2, batch_size=16)
    with pytest.raises(InputError, match="lower burn_in to at most 3"):
        bads.fit(task, params, data, meta, key=0, steps=6, batch_size=16, config=bads.preset("faithful", burn_in=5))


def test_fit_refuses_a_meta_class_absent_from_the_pool_and_labels_beyond_the_model():
    from jdps.models.mlp import mlp_task

    task, params = mlp_task(0, 2, (4,), 3)
    x = np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32)
    pool = {"x": x, "y": np.arange(40) % 2}
    with pytest.raises(InputError, match=r"meta set has classes \[2\] that no training example has"):
        bads.fit(task, params, pool, {"x": x[:6], "y": np.array([0, 1, 2, 0, 1, 2])}, key=0, epochs=1)
    with pytest.raises(InputError, match=r"training labels lie in \[0, 4\] but the model has 3 outputs"):
        bads.fit(task, params, {"x": x, "y": np.arange(40) % 5}, {"x": x[:4], "y": np.array([0, 4, 1, 2])}, key=0,
                 epochs=1)
