"""The per-leaf SGLD integrator against blackjax.sgld and against closed-form Langevin statistics."""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from blackjax.sgmcmc.gradients import grad_estimator

from jdps.bads import sgmcmc
from jdps.errors import InputError

D = 3


def _problem(seed=0, n=40):
    """Bayesian logistic regression with a pytree position {'w': [D], 'b': []}."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.normal(size=n) > 0).astype(np.float32)

    def logprior(p):
        return -0.5 * (jnp.sum(p["w"] ** 2) + p["b"] ** 2)

    def loglik(p, row):
        xi, yi = row
        z = xi @ p["w"] + p["b"]
        return yi * z - jnp.logaddexp(0.0, z)

    return grad_estimator(logprior, loglik, n), (jnp.asarray(x), jnp.asarray(y))


def _start():
    return {"w": jnp.array([0.3, -0.2, 0.1]), "b": jnp.array(0.05)}


def test_zero_temperature_equals_blackjax_sgld():
    grad_fn, (x, y) = _problem()
    ours, theirs = sgmcmc.as_top_level_api(grad_fn), blackjax.sgld(grad_fn)
    p_ours = p_theirs = ours.init(_start())
    for t in range(5):
        batch = (x[8 * t: 8 * t + 8], y[8 * t: 8 * t + 8])
        key = jax.random.key(t)
        p_ours = ours.step(key, p_ours, batch, 1e-2, 0.0)
        p_theirs = theirs.step(key, p_theirs, batch, 1e-2, 0.0)
    for leaf in ("w", "b"):
        np.testing.assert_allclose(p_ours[leaf], p_theirs[leaf], rtol=1e-6, atol=1e-7)
    assert not np.allclose(p_ours["w"], _start()["w"])  # the chain moved


def test_one_step_moments_match_blackjax_and_closed_form():
    """z' = z + eps g + sqrt(2 eps T) n: mean z + eps g, covariance 2 eps T I, for both kernels."""
    grad_fn, (x, y) = _problem()
    eps, temp, reps = 1e-2, 0.7, 6000
    start = _start()
    g = grad_fn(start, (x[:8], y[:8]))
    expected_mean = np.concatenate([start["w"] + eps * g["w"], [start["b"] + eps * g["b"]]])
    keys = jax.random.split(jax.random.key(1), reps)
    for algo in (sgmcmc.as_top_level_api(grad_fn), blackjax.sgld(grad_fn)):
        new = jax.vmap(lambda k: algo.step(k, start, (x[:8], y[:8]), eps, temp))(keys)
        flat = np.concatenate([np.asarray(new["w"]), np.asarray(new["b"])[:, None]], axis=1)
        var = 2 * eps * temp
        np.testing.assert_allclose(flat.mean(0), expected_mean, atol=4 * np.sqrt(var / reps))
        np.testing.assert_allclose(np.cov(flat.T), var * np.eye(D + 1), atol=0.1 * var)


def test_per_leaf_step_sizes_are_a_diagonal_preconditioner():
    grad_fn, (x, y) = _problem()
    steps = {"w": 1e-2, "b": 1e-3}
    start, batch = _start(), (x[:8], y[:8])
    g = grad_fn(start, batch)
    kernel = sgmcmc.build_kernel()
    cold = kernel(jax.random.key(0), start, grad_fn, batch, steps, 0.0)
    np.testing.assert_allclose(cold["w"], start["w"] + 1e-2 * g["w"], rtol=1e-6)
    np.testing.assert_allclose(cold["b"], start["b"] + 1e-3 * g["b"], rtol=1e-6)
    keys = jax.random.split(jax.random.key(2), 6000)
    new = jax.vmap(lambda k: kernel(k, start, grad_fn, batch, steps, 1.0))(keys)
    np.testing.assert_allclose(np.asarray(new["w"]).var(0), 2e-2, rtol=0.1)
    np.testing.assert_allclose(np.asarray(new["b"]).var(), 2e-3, rtol=0.1)


def test_stationary_law_of_a_gaussian_target():
    """On N(mu, s^2) the Euler chain z' = z - (eps / s^2)(z - mu) + sqrt(2 eps T) n has stationary
    mean mu and variance T s^2 / (1 - a / 2), a = eps / s^2 (solve v = (1 - a)^2 v + 2 eps T)."""
    mu, s2, eps, temp = {"u": 1.5, "v": -0.5}, {"u": 0.25, "v": 2.0}, 0.05, 0.8
    integrator = sgmcmc.overdamped_langevin()
    chains, burn, keep = 1000, 200, 400

    def grad(z):
        return {k: -(z[k] - mu[k]) / s2[k] for k in z}

    def chain(key):
        def body(z, k):
            z = integrator(k, z, grad(z), eps, temp)
            return z, z
        _, zs = jax.lax.scan(body, {"u": jnp.zeros(()), "v": jnp.zeros(())}, jax.random.split(key, burn + keep))
        return jax.tree.map(lambda a: a[burn:], zs)

    zs = jax.vmap(chain)(jax.random.split(jax.random.key(3), chains))
    for k in ("u", "v"):
        a = eps / s2[k]
        var = temp * s2[k] / (1 - a / 2)
        n_eff = chains * keep * a / 2  # AR(1) with coefficient 1 - a: integrated autocorrelation 2 / a
        samples = np.asarray(zs[k])
        np.testing.assert_allclose(samples.mean(), mu[k], atol=5 * np.sqrt(var / n_eff))
        np.testing.assert_allclose(samples.var(), var, rtol=4 * np.sqrt(2 / n_eff))


def test_noise_is_drawn_per_leaf_with_its_shape_and_dtype():
    position = {"a": jnp.zeros((2, 3)), "b": jnp.zeros((4,), jnp.bfloat16)}
    noise = sgmcmc.leaf_noise(jax.random.key(0), position)
    assert noise["a"].shape == (2, 3) and noise["b"].dtype == jnp.bfloat16
    assert not np.allclose(np.asarray(noise["a"]).ravel()[:4], np.asarray(noise["b"], np.float32))


def test_non_partitionable_threefry_is_refused():
    jax.config.update("jax_threefry_partitionable", False)
    try:
        with pytest.raises(InputError, match="jax_threefry_partitionable"):
            sgmcmc.leaf_noise(jax.random.key(0), {"a": jnp.zeros(3)})
    finally:
        jax.config.update("jax_threefry_partitionable", True)


def test_rademacher_noise_is_plus_minus_one_with_the_right_moments_and_shape():
    from jdps.bads.sgmcmc import rademacher

    x = np.asarray(rademacher(jax.random.key(0), (300, 70)))      # 70 = 2 words + 6 signs a row
    assert x.shape == (300, 70) and set(np.unique(x).tolist()) == {-1.0, 1.0}
    assert abs(x.mean()) < 4 / np.sqrt(x.size)                    # mean 0 within 4 standard errors
    corr = np.corrcoef(x[:, :40].T)[np.triu_indices(40, 1)]       # coordinates uncorrelated
    assert np.abs(corr).max() < 5 / np.sqrt(300)
    assert np.asarray(rademacher(jax.random.key(1), ())).shape == ()
