"""Dense-layer forms from taps (layer gradients, ghost norms, factored projections) against references."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jdps.gradients import factored as fa
from jdps import losses
from jdps.gradients import param_filter as pf
from jdps.errors import InputError
from jdps.models.functional import functional
from jdps.models.layers import Dense
from jdps.task import Task


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.List([Dense(6, 8, rngs=rngs), Dense(8, 8, rngs=rngs, use_bias=False)])
        self.head = Dense(8, 4, rngs=rngs)

    def __call__(self, x):
        for layer in self.hidden:
            x = jax.nn.relu(layer(x))
        return self.head(x)


class Seq(nnx.Module):
    """x [B, T=6, 4] -> logits [B, 3]; every Dense sees T = 6 tokens, with a LayerNorm between.

    Per-example squared norms: `embed` (m=5, n=16) and `head` (m=16, n=3) are cheaper formed directly,
    `mix` (m=17, n=16) by the ghost (T^2) form, so both branches are checked.
    """

    def __init__(self, rngs):
        self.embed = Dense(4, 16, rngs=rngs)
        self.norm = nnx.LayerNorm(16, rngs=rngs)
        self.mix = Dense(16, 16, rngs=rngs)
        self.head = Dense(16, 3, rngs=rngs, use_bias=False)

    def __call__(self, x):
        h = self.norm(jnp.tanh(self.embed(x)))
        h = jnp.tanh(self.mix(h))
        return self.head(h).mean(axis=1)


def _setup(module, x_shape, classes, seed):
    model, params = functional(module)
    task = Task.from_model(model, lambda z, b: losses.cross_entropy(z, b["y"]))
    rng = np.random.default_rng(seed)
    b = x_shape[0]
    batch = {"x": jnp.asarray(rng.normal(size=x_shape), jnp.float32),
             "y": jnp.asarray(rng.integers(0, classes, b)), "index": jnp.arange(b)}
    return task, params, batch, loop_grads(task.loss_fn, params, batch)


@pytest.fixture(scope="module")
def mlp():
    return _setup(MLP(nnx.Rngs(0)), (5, 6), 4, 0)


@pytest.fixture(scope="module")
def seq():
    return _setup(Seq(nnx.Rngs(1)), (4, 6, 4), 3, 1)


def loop_grads(loss_fn, params, batch):
    """Reference: jax.grad of each example's loss, one example at a time -> {path: [B, ...]}."""
    grad = jax.jit(jax.grad(lambda p, example: loss_fn(p, example)[0]))
    grads = [grad(params, {k: v[i:i + 1] for k, v in batch.items()}) for i in range(len(batch["index"]))]
    return {path: np.stack([np.asarray(pf.flat(g)[path], np.float64) for g in grads]) for path in pf.flat(params)}


def test_head_gradient_is_the_softmax_closed_form(mlp):
    task, params, batch, ref = mlp
    g = fa.layer_grads(task, params, batch, param_filter=pf.last_layers(1))
    assert list(g) == ["head/bias", "head/kernel"]
    # numpy: head input h and p - onehot(y)
    x = np.asarray(batch["x"], np.float64)
    h = x
    for layer in params["hidden"].values():
        h = np.maximum(h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer.get("bias", 0.0)), 0)
    z = h @ np.asarray(params["head"]["kernel"], np.float64) + np.asarray(params["head"]["bias"])
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = p - np.eye(4)[np.asarray(batch["y"])]
    np.testing.assert_allclose(g["head/kernel"], h[:, :, None] * delta[:, None, :], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g["head/bias"], delta, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g["head/kernel"], ref["head/kernel"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "seq"])
def test_layer_grads_match_loop_of_grads(name, request):
    task, params, batch, ref = request.getfixturevalue(name)
    g = jax.jit(lambda p, b: fa.layer_grads(task, p, b))(params, batch)
    assert set(g) == {p for p in ref if p.rpartition("/")[2] in ("kernel", "bias") and "norm" not in p}
    for path in g:
        np.testing.assert_allclose(g[path], ref[path], rtol=1e-4, atol=1e-6)
    biases = [p for p in g if p.endswith("/bias")]
    only_bias = fa.layer_grads(task, params, batch, param_filter=biases)
    assert list(only_bias) == biases
    for path in only_bias:
        np.testing.assert_allclose(only_bias[path], ref[path], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "seq"])
def test_ghost_norms_match_norms_of_materialised_gradients(name, request):
    task, params, batch, ref = request.getfixturevalue(name)
    for param_filter in (None, "*/kernel", "head"):
        paths = pf.select(param_filter, params)
        want = np.sqrt(sum(np.square(ref[p]).reshape(len(ref[p]), -1).sum(1) for p in paths))
        got = jax.jit(lambda p, b, f=param_filter: fa.grad_norms(task, p, b, param_filter=f))(params, batch)
        np.testing.assert_allclose(got, want, rtol=1e-4)


def test_plain_loss_fn_falls_back_to_vmap_with_a_note(seq):
    task, params, batch, ref = seq
    want = np.sqrt(sum(np.square(v).reshape(len(v), -1).sum(1) for v in ref.values()))
    with pytest.warns(UserWarning, match="Task.from_model"):
        got = fa.grad_norms(task.loss_fn, params, batch, chunk_size=3)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def _rademacher(key, shape):
    """Signs s[r, c] = 1 - 2 * bit (c mod 32) of word [r, c div 32] of jax.random.bits, over sqrt(k)."""
    m, k = shape
    words = np.asarray(jax.random.bits(key, (m, -(-k // 32)), jnp.uint32))
    bits = (words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    return (1.0 - 2.0 * bits.reshape(m, -1)[:, :k]) / np.sqrt(k)


@pytest.mark.parametrize("name", ["mlp", "seq"])
def test_factored_projection_is_kronecker_projection_of_the_gradient(name, request):
    task, params, batch, ref = request.getfixturevalue(name)
    key, k = jax.random.key(3), (3, 2)
    phi = np.asarray(jax.jit(lambda p, b: fa.factored_features(task, p, b, key=key, k=k))(params, batch))
    cols = []
    for layer in ("head", "hidden/0", "hidden/1") if name == "mlp" else ("embed", "head", "mix"):  # tree order
        kernel = ref[f"{layer}/kernel"]
        g = np.concatenate([kernel, ref[f"{layer}/bias"][:, None]], 1) if f"{layer}/bias" in ref else kernel
        layer_key = jax.random.fold_in(key, zlib.crc32(layer.encode()))
        p_in = _rademacher(jax.random.fold_in(layer_key, 0), (g.shape[1], k[0]))
        p_out = _rademacher(jax.random.fold_in(layer_key, 1), (g.shape[2], k[1]))
        cols.append(g.reshape(len(g), -1) @ np.kron(p_in, p_out))  # (P_in kron P_out)^T vec(g)
    assert phi.shape == (len(batch["index"]), sum(c.shape[1] for c in cols))
    np.testing.assert_allclose(phi, np.concatenate(cols, 1), rtol=1e-4, atol=1e-5)


def test_factored_errors_name_the_fix(seq):
    task, params, batch, _ = seq
    with pytest.raises(InputError, match="Dense kernels and biases only.*norm/scale"):
        fa.factored_features(task, params, batch, key=jax.random.key(0), k=2, param_filter=["mix", "norm"])
    with pytest.raises(InputError, match="selects no Dense layer"):
        fa.layer_grads(task, params, batch, param_filter="norm")
    with pytest.raises(InputError, match="Task.from_model"):
        fa.factored_features(task.loss_fn, params, batch, key=jax.random.key(0), k=2)
    with pytest.raises(InputError, match="k must be"):
        fa.factored_features(task, params, batch, key=jax.random.key(0), k=(2, 0))
