"""Influence scores (matrix, JVP per-candidate scores, cosines, TracIn) against numpy gradients in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jdps import influence

from jdps.influence import ihvp
from jdps.errors import InputError
from jdps.losses import PAD_ID
from jdps.models.functional import functional
from jdps.models.mlp import MLP
from jdps.models.transformer import transformer_lm_task
from jdps.task import Task
from tests.references import as_tree, ce, cosines
from tests.references import softmax_ggn as reference


pytestmark = pytest.mark.usefixtures("x64")


@pytest.fixture(scope="module")
def mlp():
    model, params = functional(MLP(5, [8], 3, rngs=nnx.Rngs(0)))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = np.argmax(x @ rng.normal(size=(5, 3)) + rng.normal(size=(40, 3)), axis=1)
    return Task.from_model(model, ce), params, {"x": x[:32], "y": y[:32]}, {"x": x[32:], "y": y[32:]}


def test_jvp_scores_equal_per_example_gradient_dot_products(mlp):
    task, params, train, _ = mlp
    g, _ = reference(params, train["x"], train["y"])
    v = np.random.default_rng(1).normal(size=g.shape[1])
    batch = {k: jnp.asarray(a) for k, a in train.items()}
    dots = jax.jit(lambda p, v, b: influence.jvp_scores(task, p, v, b))(params, as_tree(v), batch)
    np.testing.assert_allclose(dots, g @ v, rtol=1e-10)
    cos = jax.jit(lambda p, v, b: influence.jvp_scores(task, p, v, b, normalize=True))(params, as_tree(v), batch)
    np.testing.assert_allclose(cos, cosines(g, v[None])[:, 0], rtol=1e-5)  # ghost norms run in float32


def test_score_matrix_and_query_scores_match_numpy(mlp):
    task, params, train, query = mlp
    g, ggn = reference(params, train["x"], train["y"])
    g_query, _ = reference(params, query["x"], query["y"])
    v = np.linalg.solve(ggn + 0.05 * np.eye(len(ggn)), g_query.T).T                   # [n_query, p]
    fitted = influence.fit(task, params, train, ihvp=ihvp.exact(0.05), batch_size=16)
    np.testing.assert_allclose(influence.scores(fitted, query, train, batch_size=16), v @ g.T, rtol=1e-8)
    np.testing.assert_allclose(influence.scores(fitted, query, train, batch_size=16, normalize=True),
                               cosines(v, g), rtol=1e-8)
    np.testing.assert_allclose(influence.query_scores(fitted, query, train, batch_size=16), g @ v.mean(0),
                               rtol=1e-8)
    np.testing.assert_allclose(influence.query_scores(fitted, query, train, batch_size=16, normalize=True),
                               cosines(g, v.mean(0)[None])[:, 0], rtol=1e-5)


def test_tracin_sums_learning_rate_weighted_gradient_dots_in_index_order(mlp):
    task, params, train, query = mlp
    later = jax.tree.map(lambda a: a + 0.1 * jnp.sign(a), params)
    want = 0.0
    for p, lr in ((params, 0.1), (later, 0.3)):
        g, _ = reference(p, train["x"], train["y"])
        g_query, _ = reference(p, query["x"], query["y"])
        want = want + lr * g @ g_query.mean(0)
    # the training set as hand-made batches, out of order, the last one padded
    rows = [np.arange(16, 32), np.arange(0, 16)]
    batches = [{"x": jnp.asarray(train["x"][r]), "y": jnp.asarray(train["y"][r]), "index": jnp.asarray(r),
                "mask": jnp.asarray(np.ones(16, bool))} for r in rows]
    batches[1]["mask"] = batches[1]["mask"].at[-1].set(False)
    got = influence.tracin(task, [params, later], [0.1, 0.3], query, batches, batch_size=16)
    np.testing.assert_allclose(got, np.delete(want, 15), rtol=1e-8)


def test_empty_query_sets_and_unindexed_batches_are_refused(mlp):
    task, params, train, query = mlp
    fitted = influence.fit(task, params, train, ihvp=ihvp.identity())
    with pytest.raises(InputError, match="query set is empty"):
        influence.query_scores(fitted, {"x": np.zeros((0, 5)), "y": np.zeros(0, int)}, train)
    with pytest.raises(InputError, match="query set is empty"):
        influence.query_gradient(fitted, [{"x": query["x"], "y": query["y"], "index": np.arange(8),
                                           "mask": np.zeros(8, bool)}])
    with pytest.raises(InputError, match="index"):
        influence.query_scores(fitted, query, [{"x": train["x"], "y": train["y"]}])


@jax.enable_x64(False)   # float32, as a language model runs
def test_transformer_self_influence_through_attention_factors_is_positive():
    task, params = transformer_lm_task(0, vocab_size=11, d_model=8, n_heads=2, n_layers=1, max_len=8, d_ff=16)
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 11, size=(6, 8))
    for row, length in enumerate([8, 5, 3, 8, 6, 4]):
        tokens[row, length:] = PAD_ID
    data = {"x": tokens}
    fitted = influence.fit(task, params, data, ihvp=ihvp.ekfac(1e-3, key=0), param_filter="blocks/*/attn/*")
    assert set(fitted.paths) == {f"blocks/0/attn/{p}/{leaf}" for p in "qkvo" for leaf in ("bias", "kernel")}
    assert (np.diag(influence.scores(fitted, data, data)) > 0).all()
