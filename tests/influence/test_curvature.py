"""K-FAC / EK-FAC factors and their damped inverse against hand-computed numpy references (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.stats import spearmanr

from jdps import influence

from jdps.influence import curvature

from jdps.influence import ihvp
from jdps.errors import CheckpointError, InputError
from jdps.losses import PAD_ID
from jdps.models.functional import functional
from jdps.models.mlp import MLP
from jdps.models.transformer import transformer_lm_task
from jdps.task import Task
from tests.references import ce
from tests.references import softmax_ggn as gauss_newton


pytestmark = pytest.mark.usefixtures("x64")


def mlp_setup(d, h, c, n, seed, n_query=0):
    model, params = functional(MLP(d, [h], c, rngs=nnx.Rngs(seed)))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + n_query, d))
    y = np.argmax(x @ rng.normal(size=(d, c)) + rng.normal(size=(n + n_query, c)), axis=1)
    return model, params, {"x": x[:n], "y": y[:n]}, {"x": x[n:], "y": y[n:]}


def forward(params, x, y):
    """By hand: per layer the inputs a = [x, 1] and the empirical output gradients delta; softmax p; pre-ReLU."""
    w1, b1, w2, b2 = (np.asarray(v, np.float64) for v in (params["hidden"][0]["kernel"], params["hidden"][0]["bias"],
                                                           params["head"]["kernel"], params["head"]["bias"]))
    pre = x @ w1 + b1
    h = np.maximum(pre, 0)
    z = h @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d_head = p - np.eye(z.shape[1])[y]
    ones = np.ones((len(x), 1))
    taps = {"hidden/0": (np.hstack([x, ones]), (d_head @ w2.T) * (pre > 0)), "head": (np.hstack([h, ones]), d_head)}
    return taps, p, pre


@pytest.fixture(scope="module")
def mlp():
    model, params, train, _ = mlp_setup(5, 8, 3, 64, 0)
    task = Task.from_model(model, ce)
    factors = curvature.fit(task, params, train, kind="ekfac", fisher="empirical", batch_size=32)
    return task, params, train, factors


def test_factors_of_a_dense_layer_are_the_hand_covariances(mlp):
    _, params, train, factors = mlp
    taps = forward(params, train["x"], train["y"])[0]
    assert set(factors) == {"hidden/0", "head"}
    for layer, (a, delta) in taps.items():
        f = {k: np.asarray(v) for k, v in factors[layer].items()}
        np.testing.assert_allclose(f["a"], a.T @ a / len(a), rtol=1e-10)
        np.testing.assert_allclose(f["g"], delta.T @ delta / len(a), rtol=1e-10, atol=1e-14)
        # the bases diagonalise the hand covariances, and S is the mean squared projected gradient
        for q, cov in ((f["qa"], a.T @ a / len(a)), (f["qg"], delta.T @ delta / len(a))):
            rotated = q.T @ cov @ q
            np.testing.assert_allclose(rotated - np.diag(np.diag(rotated)), 0, atol=1e-12)
        grads = np.einsum("nm,nk->nmk", a, delta)
        np.testing.assert_allclose(f["s"], np.mean(np.square(f["qa"].T @ grads @ f["qg"]), axis=0), rtol=1e-8,
                                   atol=1e-14)


def test_kernel_only_factors_drop_the_bias_column(mlp):
    task, params, train, _ = mlp
    factors = curvature.fit(task, params, train, kind="kfac", param_filter="head/kernel", fisher="empirical")
    a, delta = forward(params, train["x"], train["y"])[0]["head"]
    h = a[:, :-1]
    np.testing.assert_allclose(np.asarray(factors["head"]["a"]), h.T @ h / len(h), rtol=1e-10)
    sa, sg = np.linalg.eigvalsh(h.T @ h / len(h)), np.linalg.eigvalsh(delta.T @ delta / len(h))
    np.testing.assert_allclose(np.asarray(factors["head"]["s"]), np.outer(sa, sg), rtol=1e-8, atol=1e-14)


def test_kfac_inverse_is_the_explicit_damped_kronecker_inverse(mlp):
    task, params, train, _ = mlp
    factors = curvature.fit(task, params, train, kind="kfac", fisher="empirical")
    taps = forward(params, train["x"], train["y"])[0]
    rng = np.random.default_rng(0)
    for layer, (a, delta) in taps.items():
        m, n = a.shape[1], delta.shape[1]
        v = rng.normal(size=(m, n))
        explicit = np.kron(a.T @ a / len(a), delta.T @ delta / len(a)) + 0.01 * np.eye(m * n)
        got = curvature.solve(factors, {f"{layer}/kernel": v[:-1], f"{layer}/bias": v[-1]}, 0.01)
        got = np.vstack([got[f"{layer}/kernel"], got[f"{layer}/bias"][None]])
        np.testing.assert_allclose(got.ravel(), np.linalg.solve(explicit, v.ravel()), rtol=1e-8)


def test_ekfac_inverse_is_the_explicit_inverse_of_its_own_matrix(mlp):
    _, _, _, factors = mlp
    rng = np.random.default_rng(1)
    for layer, f in factors.items():
        qa, qg, s = (np.asarray(f[k]) for k in ("qa", "qg", "s"))
        basis = np.kron(qa, qg)
        explicit = basis @ np.diag(s.ravel()) @ basis.T + 0.03 * np.eye(s.size)
        v = rng.normal(size=s.shape)
        got = curvature.solve(factors, {f"{layer}/kernel": v[:-1], f"{layer}/bias": v[-1]}, 0.03)
        got = np.vstack([got[f"{layer}/kernel"], got[f"{layer}/bias"][None]])
        np.testing.assert_allclose(got.ravel(), np.linalg.solve(explicit, v.ravel()), rtol=1e-8)


def test_true_fisher_output_factor_is_the_weighted_output_hessian():
    model, params, train, _ = mlp_setup(5, 8, 3, 6, 2)
    reps = 800
    weights = np.tile([0.5, 2.0, 1.0, 0.5, 2.0, 1.0], reps)
    data = {"x": np.tile(train["x"], (reps, 1)), "y": np.tile(train["y"], reps), "w": weights}
    task = Task.from_model(model, lambda z, b: b["w"] * ce(z, b))
    factors = curvature.fit(task, params, data, kind="kfac", param_filter="head", key=0, batch_size=1600)
    p = forward(params, train["x"], train["y"])[1]
    want = np.mean([w * (np.diag(q) - np.outer(q, q)) for w, q in zip(weights[:6], p)], axis=0)
    np.testing.assert_allclose(np.asarray(factors["head"]["g"]), want, atol=0.08 * np.abs(want).max())


def test_kfac_and_ekfac_rank_like_the_exact_gauss_newton_influence():
    model, params, train, query = mlp_setup(6, 16, 4, 256, 3, n_query=16)
    task = Task.from_model(model, ce)
    g, ggn = gauss_newton(params, train["x"], train["y"])
    g_query, _ = gauss_newton(params, query["x"], query["y"])
    damping = 0.1 * np.linalg.eigvalsh(ggn).max()
    want = g @ np.linalg.solve(ggn + damping * np.eye(len(ggn)), g_query.mean(0))
    for method, floor in ((ihvp.kfac(damping, key=0), 0.8), (ihvp.ekfac(damping, key=0), 0.9)):
        fitted = influence.fit(task, params, train, ihvp=method, batch_size=128)
        got = influence.query_scores(fitted, query, train, batch_size=128)
        assert spearmanr(got, want)[0] >= floor


@pytest.fixture(scope="module")
def lm():
    task, params = transformer_lm_task(0, vocab_size=11, d_model=8, n_heads=2, n_layers=1, max_len=8, d_ff=16)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 11, size=(6, 8))
    for row, length in enumerate([8, 5, 3, 8, 6, 2]):
        tokens[row, length:] = PAD_ID
    return task, params, {"x": tokens}


def test_attention_factors_have_the_right_shapes_and_skip_padding(lm):
    task, params, data = lm
    factors = curvature.fit(task, params, data, kind="kfac", param_filter="blocks/*/attn/*", key=0)
    assert set(factors) == {f"blocks/0/attn/{p}" for p in "qkvo"}
    for f in factors.values():
        assert (f["a"].shape, f["g"].shape, f["qa"].shape, f["qg"].shape, f["s"].shape) == \
            ((9, 9), (8, 8), (9, 9), (8, 8), (9, 8))
    def inputs_of(params, x):
        zeros = jax.tree.map(jnp.zeros_like, task.model.zero_perturbations(params, x))
        return task.model.apply_tapped(params, zeros, x)[1]
    inputs = jax.jit(inputs_of)(params, data["x"])
    x = np.asarray(inputs["blocks"][0]["attn"]["q"]["inputs"], np.float64)[data["x"] != PAD_ID]   # real tokens
    a = np.hstack([x, np.ones((len(x), 1))])
    np.testing.assert_allclose(np.asarray(factors["blocks/0/attn/q"]["a"]), a.T @ a / len(a), rtol=1e-5, atol=1e-6)


def test_factors_round_trip_through_orbax(mlp, tmp_path):
    factors = mlp[3]
    curvature.save_factors(tmp_path / "factors", factors)
    loaded = curvature.load_factors(tmp_path / "factors")
    assert jax.tree.structure(loaded) == jax.tree.structure(factors)
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(factors)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    with pytest.raises(CheckpointError, match="save_factors"):
        curvature.load_factors(tmp_path / "missing")


def test_bad_factor_requests_get_clear_errors(mlp, lm):
    task, params, data = lm
    with pytest.raises(InputError, match="selects no parameter"):
        curvature.fit(task, params, data, param_filter="blocks/7/attn/q", key=0)
    with pytest.raises(InputError, match="Dense kernels and biases only"):
        curvature.fit(task, params, data, param_filter=["blocks/0/ln1", "head"], key=0)
    with pytest.raises(InputError, match="key="):
        curvature.fit(task, params, data)
    mlp_task, mlp_params, train, factors = mlp
    with pytest.raises(InputError, match="no K-FAC factors for 'other/kernel'"):
        curvature.solve(factors, {"other/kernel": jnp.zeros((2, 2))}, 0.1)
    few = {k: v[:3] for k, v in train.items()}        # 3 examples: A [6, 6] has rank 3
    with pytest.raises(InputError, match="singular"):
        influence.fit(mlp_task, mlp_params, few, ihvp=ihvp.kfac(0.0, fisher="empirical"))


def test_damping_makes_a_rank_deficient_kfac_curvature_invertible(mlp):
    """3 examples in float32: the head's A [9, 9] (8 inputs + bias) has rank <= 3, and a damping far below
    eps x the largest eigenvalue is still accepted (S >= 0, so S + lambda >= lambda > 0); the solve is
    (A kron G + lambda I)^{-1} vec V computed by hand in float64 (numpy.linalg.solve), up to float32 rounding
    amplified by the condition number (~2e6 at lambda = 1e-6)."""
    task, params, train, _ = mlp
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    few = {"x": train["x"][:3].astype(np.float32), "y": train["y"][:3]}
    a, delta = forward(jax.tree.map(np.asarray, params), few["x"].astype(np.float64), few["y"])[0]["head"]
    cov_a, cov_g = a.T @ a / 3, delta.T @ delta / 3
    assert np.linalg.matrix_rank(cov_a) <= 3
    rng = np.random.default_rng(1)
    v = {"head/kernel": rng.normal(size=(8, 3)).astype(np.float32), "head/bias": rng.normal(size=3).astype(np.float32)}
    mat = np.vstack([v["head/kernel"], v["head/bias"][None]]).astype(np.float64)       # [9, 3]: kernel rows, bias
    for damping, rtol in ((1e-3, 1e-4), (1e-6, 5e-2)):
        fitted = influence.fit(task, params, few, ihvp=ihvp.kfac(damping, fisher="empirical"), param_filter=["head"])
        got = fitted.ihvp.solve(fitted.state, v)
        got = np.vstack([np.asarray(got["head/kernel"]), np.asarray(got["head/bias"])[None]])
        want = np.linalg.solve(np.kron(cov_a, cov_g) + damping * np.eye(27), mat.reshape(-1)).reshape(9, 3)
        assert np.abs(got - want).max() <= rtol * np.abs(want).max()
