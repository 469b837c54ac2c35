"""Trajectory features against closed-form softmax-regression gradients and projections built from the key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdps.gtp import trajectory as tj
from jdps.errors import InputError
from jdps.gradients.projection import BLOCK_ROWS

P_IN, C, N, D = 5, 3, 7, 16
KEY = jax.random.key(3)


def loss_fn(params, batch):
    logits = batch["x"] @ params["w"] + params["b"]
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1)[:, 0]


def checkpoint(seed):
    rng = np.random.default_rng(seed)
    return {"b": jnp.asarray(rng.normal(size=C), jnp.float32), "w": jnp.asarray(rng.normal(size=(P_IN, C)), jnp.float32)}


def data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, P_IN)).astype(np.float32), "y": rng.integers(0, C, n).astype(np.int32)}


def gradients(params, arrays):
    """Per-example gradients in closed form, leaves in tree order (b, then w row-major): [N, C + P_IN C]."""
    x, y = arrays["x"].astype(np.float64), arrays["y"]
    logits = x @ np.asarray(params["w"], np.float64) + np.asarray(params["b"], np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    e = p / p.sum(1, keepdims=True) - np.eye(C)[y]  # dl/dlogits
    return np.concatenate([e, (x[:, :, None] * e[:, None, :]).reshape(len(x), -1)], axis=1)


def projection(key, p, d=D):
    """P [p, d] from its first row block: Rademacher signs, 32 to a word of jax.random.bits, / sqrt(d)."""
    words = np.asarray(jax.random.bits(jax.random.fold_in(key, 0), (BLOCK_ROWS, -(-d // 32)), jnp.uint32))
    bits = (words[:, :, None] >> np.arange(32, dtype=np.uint32)) & 1
    return (1.0 - 2.0 * bits.reshape(BLOCK_ROWS, -1)[:, :d])[:p] / np.sqrt(d)


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


CKPTS = [checkpoint(1), checkpoint(2)]
P_DIM = C + P_IN * C


def test_one_projection_per_checkpoint_weighted_and_stacked():
    arrays = data()
    got = tj.trajectory_features(loss_fn, CKPTS, arrays, d=D, key=KEY, checkpoint_weights=[0.5, 2.0], batch_size=4)
    want = np.concatenate([c * gradients(theta, arrays) @ projection(jax.random.fold_in(KEY, t), P_DIM)
                           for t, (c, theta) in enumerate(zip([0.5, 2.0], CKPTS))], axis=1)
    assert got.features.shape == (N, 2 * D) and got.index.tolist() == list(range(N))
    np.testing.assert_allclose(got.features, want, rtol=1e-4, atol=1e-5)


def test_shared_projection_and_row_normalisation_as_less():
    arrays = data()
    got = tj.trajectory_features(loss_fn, CKPTS, arrays, d=D, key=KEY, shared_projection=True, normalize=True)
    p = projection(KEY, P_DIM)  # one projection for every checkpoint
    want = np.concatenate([unit_rows(gradients(theta, arrays) @ p) for theta in CKPTS], axis=1)
    np.testing.assert_allclose(got.features, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got.features[:, :D], axis=1), 1.0, rtol=1e-5)


def test_adam_preconditioning_follows_less():
    arrays = data()
    rng = np.random.default_rng(5)
    moments = [({"b": rng.normal(size=C) * 0.1, "w": rng.normal(size=(P_IN, C)) * 0.1},
                {"b": rng.uniform(0, 0.01, C), "w": rng.uniform(0, 0.01, (P_IN, C))}) for _ in CKPTS]
    moments = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), moments)
    got = tj.trajectory_features(loss_fn, CKPTS, arrays, d=D, key=KEY, adam=moments, batch_size=4)
    blocks = []
    for t, (theta, (mu, nu)) in enumerate(zip(CKPTS, moments)):
        g = gradients(theta, arrays)
        m = np.r_[np.ravel(mu["b"]), np.ravel(mu["w"])]
        v = np.r_[np.ravel(nu["b"]), np.ravel(nu["w"])]
        pre = (0.9 * m + 0.1 * g) / np.sqrt(0.999 * v + 0.001 * g ** 2 + 1e-8)  # LESS: m' / sqrt(v' + eps)
        blocks.append(pre @ projection(jax.random.fold_in(KEY, t), P_DIM))
    np.testing.assert_allclose(got.features, np.concatenate(blocks, axis=1), rtol=1e-4, atol=1e-4)


def test_written_to_a_memmap_and_targets(tmp_path):
    arrays, target = data(0), data(9, n=4)
    traj = tj.trajectory_features(loss_fn, CKPTS, arrays, d=D, key=KEY, out=tmp_path / "A.npy")
    assert isinstance(traj.features, np.memmap)
    reread = np.load(tmp_path / "A.npy")
    want = np.concatenate([gradients(theta, arrays) @ projection(jax.random.fold_in(KEY, t), P_DIM)
                           for t, theta in enumerate(CKPTS)], axis=1)
    np.testing.assert_allclose(reread, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tj.mean_row(traj.features, block_rows=3), want.mean(0), rtol=1e-4, atol=1e-6)
    b = tj.target_trajectory(loss_fn, CKPTS, target, d=D, key=KEY)  # the same projections, target examples
    want_b = np.concatenate([gradients(theta, target) @ projection(jax.random.fold_in(KEY, t), P_DIM)
                             for t, theta in enumerate(CKPTS)], axis=1).mean(0)
    np.testing.assert_allclose(b, want_b, rtol=1e-4, atol=1e-6)


def test_unstack_gives_one_checkpoint_per_sample():
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *CKPTS)
    got = tj.unstack(stacked)
    assert len(got) == 2 and all(np.array_equal(g["w"], c["w"]) for g, c in zip(got, CKPTS))


def test_bad_input_gets_clear_errors():
    arrays = data()
    with pytest.raises(InputError, match="non-empty list of params"):
        tj.trajectory_features(loss_fn, CKPTS[0], arrays, d=D, key=KEY)
    with pytest.raises(InputError, match="one-shot iterator"):
        tj.trajectory_features(loss_fn, CKPTS, iter([arrays]), d=D, key=KEY)
    with pytest.raises(InputError, match="one finite weight per checkpoint"):
        tj.trajectory_features(loss_fn, CKPTS, arrays, d=D, key=KEY, checkpoint_weights=[1.0])
    with pytest.raises(InputError, match="method='vmap'"):
        tj.trajectory_features(loss_fn, CKPTS, arrays, d=D, key=KEY, adam=[(c, c) for c in CKPTS],
                               method="factored")
    with pytest.raises(InputError, match="one \\(mu, nu\\) pair"):
        tj.trajectory_features(loss_fn, CKPTS, arrays, d=D, key=KEY, adam=[(CKPTS[0], CKPTS[0])])


def test_gtp_selects_global_indices_with_the_nnls_weights_of_its_support():
    from scipy.optimize import nnls

    from jdps import gtp
    arrays = data(0, n=24)
    batches = [{**{k: v[i:i + 8] for k, v in arrays.items()}, "index": np.arange(i, i + 8) + 100}
               for i in range(0, 24, 8)]  # global example ids 100..123
    state = gtp.fit(loss_fn, CKPTS, batches, d=D, key=KEY)
    a, b = state.features.astype(np.float64), state.target.astype(np.float64)
    np.testing.assert_allclose(b, a.mean(0), rtol=1e-5, atol=1e-7)  # in-domain: the mean row
    sel = gtp.select(state, fraction=0.2, method="omp")  # ceil(0.2 * 24) = 5
    rows = sel.indices - 100
    assert sel.info["budget"] == 5 and sel.info["count"] == len(sel) <= 5 and sel.info["stop_reason"] == "budget"
    want, _ = nnls(a[rows].T, b)
    np.testing.assert_allclose(sel.weights, want, rtol=1e-4, atol=1e-6)
    top = gtp.select(state, budget=4, method="topk")
    assert (top.indices - 100).tolist() == np.argsort(-(a @ b), kind="stable")[:4].tolist()
    with pytest.raises(InputError, match="non-negative training weights"):
        gtp.select(state, budget=4, nonneg=False)
