"""Per-example gradients by chunked vmap(grad) and parameter filters, against independent references."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jdps import losses
from jdps.gradients import param_filter as pf
from jdps.errors import InputError
from jdps.models.functional import functional
from jdps.models.layers import Dense
from jdps.gradients.per_example import check_finite_rows, flatten, per_example_grads
from jdps.task import Task


class MLP(nnx.Module):
    """Tree order (a_out, hidden/0, z_in) is the reverse of the order the layers run in."""

    def __init__(self, rngs):
        self.z_in = Dense(6, 8, rngs=rngs)
        self.hidden = nnx.List([Dense(8, 8, rngs=rngs, use_bias=False)])
        self.a_out = Dense(8, 4, rngs=rngs)

    def __call__(self, x):
        h = jnp.tanh(self.z_in(x))
        h = jnp.tanh(self.hidden[0](h))
        return self.a_out(h)


@pytest.fixture(scope="module")
def mlp():
    model, params = functional(MLP(nnx.Rngs(0)))
    task = Task.from_model(model, lambda z, b: losses.cross_entropy(z, b["y"]))
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.normal(size=(7, 6)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, 4, 7)), "index": jnp.arange(7)}
    return task, params, batch


def loop_grads(loss_fn, params, batch):
    """Reference: jax.grad of each example's loss, one example at a time."""
    grad = jax.jit(jax.grad(lambda p, example: loss_fn(p, example)[0]))
    grads = [grad(params, {k: v[i:i + 1] for k, v in batch.items()}) for i in range(len(batch["index"]))]
    return {path: np.stack([pf.flat(g)[path] for g in grads]) for path in pf.flat(params)}


def test_logistic_regression_matches_numpy_closed_form():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(11, 5)).astype(np.float32), rng.integers(0, 2, 11)
    params = {"w": jnp.asarray(rng.normal(size=5), jnp.float32), "b": jnp.float32(0.3)}

    def loss_fn(p, batch):  # -log sigmoid(s z), s = 2y - 1
        s = 2.0 * batch["y"] - 1.0
        return jax.nn.softplus(-s * (batch["x"] @ p["w"] + p["b"]))

    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y), "index": jnp.arange(11)}
    s = 2.0 * y - 1.0
    z = x.astype(np.float64) @ np.asarray(params["w"], np.float64) + 0.3
    coef = -s / (1.0 + np.exp(s * z))  # dl/dz
    for chunk in (None, 3, 11, 20):
        g = per_example_grads(loss_fn, params, batch, chunk_size=chunk)
        np.testing.assert_allclose(g["w"], coef[:, None] * x, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g["b"], coef, rtol=1e-5, atol=1e-6)
    flat = flatten(per_example_grads(loss_fn, params, batch, chunk_size=4))
    assert flat.shape == (11, 6)  # leaves in tree order: b then w
    np.testing.assert_allclose(flat, np.concatenate([coef[:, None], coef[:, None] * x], 1), rtol=1e-5, atol=1e-6)


def test_chunked_vmap_matches_loop_of_grads(mlp):
    task, params, batch = mlp
    ref = loop_grads(task.loss_fn, params, batch)
    for chunk in (None, 2, 3):
        g = jax.jit(lambda p, b, c=chunk: per_example_grads(task.loss_fn, p, b, chunk_size=c))(params, batch)
        assert list(g) == list(ref)
        for path in ref:
            np.testing.assert_allclose(g[path], ref[path], rtol=1e-5, atol=1e-6)


def test_filter_by_glob_regex_list_and_predicate(mlp):
    _, params, _ = mlp
    assert pf.select("z_in", params) == ("z_in/bias", "z_in/kernel")
    assert pf.select("*/kernel", params) == ("a_out/kernel", "hidden/0/kernel", "z_in/kernel")
    assert pf.select("hidden/*", params) == ("hidden/0/kernel",)
    assert pf.select(re.compile(r"(a_out|z_in)/b.*"), params) == ("a_out/bias", "z_in/bias")
    assert pf.select(["a_out", "hidden"], params) == ("a_out/bias", "a_out/kernel", "hidden/0/kernel")
    assert pf.select(lambda path, leaf: leaf.ndim == 1, params) == ("a_out/bias", "z_in/bias")
    assert len(pf.select(None, params)) == 5


def test_last_layers_follow_execution_order_not_tree_order(mlp):
    task, params, batch = mlp
    sel = lambda n: pf.select(pf.last_layers(n), params, loss_fn=task.loss_fn, batch=batch)
    assert sel(1) == ("a_out/bias", "a_out/kernel")
    assert sel(2) == ("a_out/bias", "a_out/kernel", "hidden/0/kernel")
    assert pf.layer_order(task.loss_fn, params, batch) == ["z_in", "hidden/0", "a_out"]
    with pytest.raises(InputError, match="pass n <= 3"):
        sel(4)
    with pytest.raises(InputError, match="needs loss_fn and batch"):
        pf.select(pf.last_layers(1), params)


def test_filtered_gradients_hold_only_selected_leaves(mlp):
    task, params, batch = mlp
    ref = loop_grads(task.loss_fn, params, batch)
    g = per_example_grads(task.loss_fn, params, batch, param_filter=pf.last_layers(1), chunk_size=4)
    assert list(g) == ["a_out/bias", "a_out/kernel"]
    for path in g:
        np.testing.assert_allclose(g[path], ref[path], rtol=1e-5, atol=1e-6)


def test_unselected_leaves_are_not_differentiated(mlp):
    task, params, batch = mlp

    def n_matmuls(param_filter):
        jaxpr = jax.make_jaxpr(lambda p: per_example_grads(task.loss_fn, p, batch, param_filter=param_filter))
        return str(jaxpr(params)).count("dot_general")

    # forward: 3 matmuls; the full backward adds 3 weight gradients and 2 backpropagations to hidden
    # states; the head alone adds its weight gradient only
    assert n_matmuls(pf.last_layers(1)) == 4
    assert n_matmuls(None) == 8


def test_filter_that_matches_nothing_lists_available_paths(mlp):
    _, params, _ = mlp
    with pytest.raises(InputError, match=r"selects no parameter; available paths: a_out/bias, a_out/kernel"):
        pf.select("blocks/*/attn/*", params)
    with pytest.raises(InputError, match="unknown parameter filter"):
        pf.select(3, params)


def test_take_and_put_round_trip(mlp):
    _, params, _ = mlp
    sel = pf.take(params, ["hidden/0/kernel"])
    new = pf.put(params, {"hidden/0/kernel": sel["hidden/0/kernel"] + 1.0})
    np.testing.assert_array_equal(new["hidden"][0]["kernel"], np.asarray(params["hidden"][0]["kernel"]) + 1.0)
    np.testing.assert_array_equal(new["z_in"]["kernel"], params["z_in"]["kernel"])
    with pytest.raises(InputError, match="no parameter at"):
        pf.take(params, ["nope/kernel"])


def test_non_finite_rows_are_named_by_index():
    values = np.ones((4, 3), np.float32)
    values[1, 2], values[3, 0] = np.nan, np.inf
    with pytest.raises(InputError, match=r"2 example\(s\), index \[11, 13\]"):
        check_finite_rows("per-example gradients", values, np.array([10, 11, 12, 13]))
    check_finite_rows("per-example gradients", values, np.array([10, 11, 12, 13]), mask=[1, 0, 1, 0])


def test_bad_chunk_size_and_ragged_batch(mlp):
    task, params, batch = mlp
    with pytest.raises(InputError, match="chunk_size"):
        per_example_grads(task.loss_fn, params, batch, chunk_size=0)
    with pytest.raises(InputError, match="same leading"):
        per_example_grads(task.loss_fn, params, {**batch, "y": batch["y"][:3]})
