"""Blockwise random projections and pool features, against projections built explicitly from the key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jdps.gradients import factored as fa
from jdps import losses
from jdps.gradients import param_filter as pf
from jdps.data.dataset import Dataset, DatasetInfo
from jdps.errors import InputError
from jdps.gradients.features import per_example_features
from jdps.models.functional import functional
from jdps.models.layers import Dense
from jdps.gradients.projection import BLOCK_ROWS, project
from jdps.task import Task

N = 10


def rademacher(key, m, d):
    """Signs s[r, c] = 1 - 2 * bit (c mod 32) of word [r, c div 32] of jax.random.bits(key, [m, ceil(d/32)])."""
    words = np.asarray(jax.random.bits(key, (m, -(-d // 32)), jnp.uint32))
    bits = (words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    return 1.0 - 2.0 * bits.reshape(m, -1)[:, :d].astype(np.float64)


def explicit_projection(key, p, d, kind="rademacher"):
    """P [p, d] stacked from its row blocks: block j drawn from fold_in(key, j), scaled by 1/sqrt(d)."""
    if kind == "rademacher":
        draw = lambda k: rademacher(k, BLOCK_ROWS, d)
    else:
        draw = lambda k: np.asarray(jax.random.normal(k, (BLOCK_ROWS, d), jnp.float32), np.float64)
    blocks = [draw(jax.random.fold_in(key, j)) for j in range(-(-p // BLOCK_ROWS))]
    return np.concatenate(blocks)[:p] / np.sqrt(d)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_project_equals_g_times_explicit_p(kind):
    p, d = 2 * BLOCK_ROWS + 5, 40  # three blocks, the last cut to 5 rows; two sign words per row
    g = np.random.default_rng(0).normal(size=(3, p)).astype(np.float32)
    key = jax.random.key(7)
    want = g.astype(np.float64) @ explicit_projection(key, p, d, kind)
    np.testing.assert_allclose(project(jnp.asarray(g), key, d, kind), want, rtol=1e-4, atol=1e-4)
    if kind == "rademacher":  # signs are fair: about half are +1
        signs = explicit_projection(key, p, d) * np.sqrt(d)
        assert set(np.unique(signs)) == {-1.0, 1.0} and abs(signs.mean()) < 0.02


def test_projection_preserves_inner_products_on_average():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(4, 300)).astype(np.float32)
    gram = g.astype(np.float64) @ g.T.astype(np.float64)
    # mean over 16 keys of (P^T g_a) . (P^T g_b): its standard error is about |g|^2 / sqrt(16 d)
    est = np.mean([np.asarray(project(jnp.asarray(g), jax.random.key(s), 512), np.float64) @
                   np.asarray(project(jnp.asarray(g), jax.random.key(s), 512), np.float64).T
                   for s in range(16)], axis=0)
    np.testing.assert_allclose(est, gram, atol=0.05 * np.diag(gram).max())


def test_bad_projection_arguments():
    with pytest.raises(InputError, match="unknown projection kind"):
        project(jnp.ones((2, 3)), jax.random.key(0), 4, "sparse")
    with pytest.raises(InputError, match="positive integer"):
        project(jnp.ones((2, 3)), jax.random.key(0), 0)


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = Dense(5, 7, rngs=rngs)
        self.head = Dense(7, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(jnp.tanh(self.hidden(x)))


@pytest.fixture(scope="module")
def pool():
    model, params = functional(MLP(nnx.Rngs(0)))
    task = Task.from_model(model, lambda z, b: losses.cross_entropy(z, b["y"]))
    rng = np.random.default_rng(2)
    data = {"x": rng.normal(size=(N, 5)).astype(np.float32), "y": rng.integers(0, 3, N)}
    grad = jax.jit(jax.grad(lambda p, ex: task.loss_fn(p, ex)[0]))
    ref = [pf.flat(grad(params, {"x": data["x"][i:i + 1], "y": data["y"][i:i + 1]})) for i in range(N)]
    grads = {path: np.stack([np.asarray(r[path], np.float64) for r in ref]) for path in ref[0]}
    return task, params, data, grads


def test_vmap_features_equal_explicit_projection_of_loop_gradients(pool):
    task, params, data, grads = pool
    key, d = jax.random.key(5), 16
    g = np.concatenate([v.reshape(N, -1) for v in grads.values()], 1)  # tree order: head, hidden
    want = g @ explicit_projection(key, g.shape[1], d)
    feats = per_example_features(task, params, data, d=d, key=key, batch_size=4, chunk_size=3)
    np.testing.assert_array_equal(feats.index, np.arange(N))
    assert feats.method == "vmap" and feats.paths == tuple(grads)
    np.testing.assert_allclose(feats.features, want, rtol=1e-4, atol=1e-5)
    head = per_example_features(task, params, data, d=d, key=key, param_filter="head", batch_size=N)
    gh = np.concatenate([grads["head/bias"], grads["head/kernel"].reshape(N, -1)], 1)
    np.testing.assert_allclose(head.features, gh @ explicit_projection(key, gh.shape[1], d), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["vmap", "factored"])
def test_features_do_not_depend_on_batch_or_chunk_size(pool, method):
    task, params, data, _ = pool
    runs = [per_example_features(task, params, data, d=18, key=jax.random.key(9), method=method,
                                 batch_size=b, chunk_size=c).features
            for b, c in [(N, None), (4, 3), (3, 1)]]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], rtol=1e-5, atol=1e-6)  # same P; only float summation order differs


def test_factored_features_cover_dense_layers_and_come_back_in_index_order(pool):
    task, params, data, grads = pool
    key = jax.random.key(4)
    # batches given out of order, the last padded (mask False) with a copy of row 0
    order = np.array([7, 2, 9, 0, 5, 1, 8, 3, 6, 4, 0, 0])
    batches = [{"x": jnp.asarray(data["x"][order[i:i + 4]]), "y": jnp.asarray(data["y"][order[i:i + 4]]),
                "index": jnp.asarray(order[i:i + 4]), "mask": jnp.asarray(np.arange(i, i + 4) < N)}
               for i in range(0, 12, 4)]
    feats = per_example_features(task, params, batches, d=8, key=key, method="factored")
    np.testing.assert_array_equal(feats.index, np.arange(N))
    assert feats.features.shape == (N, 8)  # 2 Dense layers, k = floor(sqrt(8 / 2)) = 2
    direct = fa.factored_features(task, params, {k: jnp.asarray(v) for k, v in data.items()}, key=key, k=2)
    np.testing.assert_allclose(feats.features, direct, rtol=1e-5, atol=1e-6)
    # and the head block is (P_in kron P_out)^T vec(g_head), checked against the loop gradients
    g = np.concatenate([grads["head/kernel"], grads["head/bias"][:, None]], 1)
    p_in, p_out = (np.asarray(m, np.float64) for m in fa.layer_factors(key, "head", 8, 3, (2, 2)))
    np.testing.assert_allclose(feats.features[:, :4], g.reshape(N, -1) @ np.kron(p_in, p_out), rtol=1e-4, atol=1e-5)


def test_features_from_a_dataset_and_a_plain_loss_fn(pool):
    task, params, data, grads = pool
    ds = Dataset(data["x"], data["y"], DatasetInfo("toy", "generated", "none"))
    key = jax.random.key(1)
    with pytest.warns(UserWarning, match="Task.from_model"):
        feats = per_example_features(task.loss_fn, params, ds, d=6, key=key, method="factored", batch_size=4)
    assert feats.method == "vmap"
    g = np.concatenate([v.reshape(N, -1) for v in grads.values()], 1)
    np.testing.assert_allclose(feats.features, g @ explicit_projection(key, g.shape[1], 6), rtol=1e-4, atol=1e-5)


def test_non_finite_gradients_name_the_examples(pool):
    task, params, data, _ = pool
    x = data["x"].copy()
    x[6, 2] = np.nan
    with pytest.raises(InputError, match=r"index \[6\]"):
        per_example_features(task, params, {**data, "x": x}, d=4, key=jax.random.key(0), batch_size=4)


def test_bad_feature_arguments(pool):
    task, params, data, _ = pool
    with pytest.raises(InputError, match="unknown method"):
        per_example_features(task, params, data, d=4, key=jax.random.key(0), method="exact")
    with pytest.raises(InputError, match="need d >= 2"):
        per_example_features(task, params, data, d=1, key=jax.random.key(0), method="factored")
    with pytest.raises(InputError, match="selects no parameter; available paths"):
        per_example_features(task, params, data, d=4, key=jax.random.key(0), param_filter="blocks/*")
