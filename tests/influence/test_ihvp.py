"""iHVP estimators against influence computed directly in float64 numpy (closed-form Jacobians, solve)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree
from scipy.stats import spearmanr

from jdps import influence

from jdps.influence import ihvp
from jdps.errors import InputError
from jdps.models.functional import functional
from jdps.models.layers import Dense
from jdps.models.mlp import MLP
from jdps.task import Task
from tests.references import ce, influence_ref
from tests.references import softmax_ggn as reference


pytestmark = pytest.mark.usefixtures("x64")


class LogReg(nnx.Module):
    def __init__(self, d, c, rngs):
        self.head = Dense(d, c, rngs=rngs)

    def __call__(self, x):
        return self.head(x)


def make(module, n, n_query, d, c, seed):
    model, params = functional(module)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + n_query, d))
    y = np.argmax(x @ rng.normal(size=(d, c)) + rng.normal(size=(n + n_query, c)), axis=1)
    train, query = {"x": x[:n], "y": y[:n]}, {"x": x[n:], "y": y[n:]}
    g, ggn = reference(params, train["x"], train["y"])
    g_query, _ = reference(params, query["x"], query["y"])
    return Task.from_model(model, ce), params, train, query, g, g_query, ggn


@pytest.fixture(scope="module")
def logreg():
    return make(LogReg(4, 3, nnx.Rngs(0)), 40, 6, 4, 3, 0)


@pytest.fixture(scope="module")
def mlp():
    return make(MLP(5, [8], 3, rngs=nnx.Rngs(1)), 48, 8, 5, 3, 1)


def scores_of(method, task, params, train, query, batch_size=16):
    fitted = influence.fit(task, params, train, ihvp=method, batch_size=batch_size)
    return influence.query_scores(fitted, query, train, batch_size=batch_size)


def test_exact_hessian_of_logistic_regression_matches_numpy(logreg):
    task, params, train, query, g, g_query, hessian = logreg   # a linear model: Hessian = Gauss-Newton
    want = influence_ref(g, g_query, hessian, 0.01)
    np.testing.assert_allclose(scores_of(ihvp.exact(0.01, curvature="hessian"), task, params, train, query),
                               want, rtol=1e-8)
    np.testing.assert_allclose(scores_of(ihvp.exact(0.01, curvature="ggn"), task, params, train, query),
                               want, rtol=1e-8)


def test_cg_on_hessian_vector_products_of_a_bare_loss_fn(logreg):
    task, params, train, query, g, g_query, hessian = logreg
    bare = Task(loss_fn=task.loss_fn)                            # no model view: Hessian-vector products only
    got = scores_of(ihvp.cg(0.01, curvature="hessian", tol=1e-10), bare, params, train, query)
    np.testing.assert_allclose(got, influence_ref(g, g_query, hessian, 0.01), rtol=1e-4)


def test_exact_and_cg_gauss_newton_match_numpy_on_an_mlp(mlp):
    task, params, train, query, g, g_query, ggn = mlp
    want = influence_ref(g, g_query, ggn, 0.01)
    np.testing.assert_allclose(scores_of(ihvp.exact(0.01), task, params, train, query), want, rtol=1e-8)
    np.testing.assert_allclose(scores_of(ihvp.cg(0.01, tol=1e-10), task, params, train, query), want, rtol=1e-4)


def test_exact_hessian_of_an_mlp_matches_jax_hessian(mlp):
    task, params, train, query, g, g_query, _ = mlp
    flat, unravel = ravel_pytree(params)
    mean_loss = lambda f: task.loss_fn(unravel(f), {k: jnp.asarray(v) for k, v in train.items()}).mean()
    hessian_w = np.asarray(jax.jit(jax.hessian(mean_loss))(flat))
    # reorder jax's flat order (head/bias, head/kernel, hidden/0/bias, hidden/0/kernel) to [W1, b1, W2, b2]
    sizes = [3, 24, 8, 40]
    starts = np.cumsum([0] + sizes)
    order = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in (3, 2, 1, 0)])
    hessian = hessian_w[np.ix_(order, order)]
    want = influence_ref(g, g_query, hessian, 0.5)
    np.testing.assert_allclose(scores_of(ihvp.exact(0.5, curvature="hessian"), task, params, train, query),
                               want, rtol=1e-8)


def test_lissa_ranks_like_the_exact_influence(mlp):
    task, params, train, query, g, g_query, ggn = mlp
    damping = 0.1 * np.linalg.eigvalsh(ggn).max()
    got = scores_of(ihvp.lissa(damping, jax.random.key(0), depth=200, batch_size=24), task, params, train, query)
    assert spearmanr(got, influence_ref(g, g_query, ggn, damping))[0] >= 0.95


def test_bad_damping_and_curvature_errors(logreg):
    task, params, train, *_ = logreg
    with pytest.raises(InputError, match="damping >= 0"):
        ihvp.exact(-1.0)
    for method in (ihvp.cg, lambda d: ihvp.lissa(d, 0)):
        with pytest.raises(InputError, match="damping > 0"):
            method(0.0)
    twice = {"x": np.concatenate([train["x"], train["x"][:, :1]], axis=1), "y": train["y"]}  # a repeated column
    model, params5 = functional(LogReg(5, 3, nnx.Rngs(0)))
    params5 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params5)
    with pytest.raises(InputError, match="singular"):
        influence.fit(Task.from_model(model, ce), params5, twice, ihvp=ihvp.exact(0.0))
    with pytest.raises(InputError, match="curvature='hessian'"):
        influence.fit(Task(loss_fn=task.loss_fn), params, train, ihvp=ihvp.exact(0.1))


def test_exact_gauss_newton_accepts_a_small_damping_on_a_singular_curvature(logreg):
    """A repeated input column makes the GGN singular: damping 0 is refused (above), but a damping of 1e-5 x
    its largest eigenvalue in float32 is accepted (the GGN is PSD: its eigenvalues are clipped at 0) and the
    solve matches numpy.linalg.solve on the hand GGN in float64, up to float32 rounding x the condition."""
    _, _, train, *_ = logreg
    twice = {"x": np.concatenate([train["x"], train["x"][:, :1]], axis=1).astype(np.float32), "y": train["y"]}
    model, params = functional(LogReg(5, 3, nnx.Rngs(0)))
    _, ggn = reference(params, twice["x"].astype(np.float64), twice["y"])            # over [W (5 x 3), b (3)]
    assert np.linalg.matrix_rank(ggn) < len(ggn)
    v = np.random.default_rng(2).normal(size=len(ggn))
    damping = 1e-5 * np.linalg.eigvalsh(ggn).max()
    fitted = influence.fit(Task.from_model(model, ce), params, twice, ihvp=ihvp.exact(damping))
    got = fitted.ihvp.solve(fitted.state, {"head/kernel": jnp.asarray(v[:15].reshape(5, 3), jnp.float32),
                                           "head/bias": jnp.asarray(v[15:], jnp.float32)})
    assert got["head/kernel"].dtype == jnp.float32
    got = np.concatenate([np.ravel(got["head/kernel"]), np.ravel(got["head/bias"])])
    want = np.linalg.solve(ggn + damping * np.eye(len(ggn)), v)
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
