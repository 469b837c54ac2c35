"""The jdps models against plain numpy forward passes, and their masking and tapping contracts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import log_softmax, softmax

from jdps.errors import InputError
from jdps.models.cnn import CNN, cnn_task
from jdps.models.functional import functional
from jdps.models.mlp import MLP, mlp_task
from jdps.models.transformer import (
    Attention,
    TransformerClassifier,
    TransformerLM,
    transformer_classifier_task,
    transformer_lm_task,
)

V, D, H, LAYERS, MAXLEN = 13, 16, 4, 2, 10
# Two windows: the first right-padded, the second with a pad inside.
TOKENS = np.array([[5, 3, 9, 1, 7, 2, 0, 0], [4, 4, 0, 8, 12, 6, 11, 3]])


def f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def np_dense(p, x):
    return x @ p["kernel"] + p["bias"]


def np_layernorm(p, x, eps=1e-6):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def np_gelu(x):  # tanh approximation (jax.nn.gelu's default)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def np_allowed(tokens, causal):
    """allowed[b, q, k]: key k is not padding or is q itself, and k <= q when causal."""
    b, length = tokens.shape
    allowed = np.zeros((b, length, length), bool)
    for i in range(b):
        for q in range(length):
            for k in range(length):
                allowed[i, q, k] = (tokens[i, k] != 0 or k == q) and (k <= q or not causal)
    return allowed


def np_attention(p, x, allowed, n_heads):
    """Multi-head attention, one head and one example at a time."""
    b, _, d = x.shape
    dh = d // n_heads
    q, k, v = (np_dense(p[name], x) for name in "qkv")
    out = np.zeros_like(x)
    for i in range(b):
        for h in range(n_heads):
            cols = slice(h * dh, (h + 1) * dh)
            s = q[i][:, cols] @ k[i][:, cols].T / np.sqrt(dh)
            s[~allowed[i]] = -np.inf
            out[i][:, cols] = softmax(s, axis=-1) @ v[i][:, cols]
    return np_dense(p["o"], out)


def np_trunk(p, tokens, causal):
    length = tokens.shape[1]
    h = p["tok_embed"]["embedding"][tokens] + p["pos_embed"]["embedding"][:length]
    allowed = np_allowed(tokens, causal)
    for i in range(len(p["blocks"])):
        blk = p["blocks"][i]
        h = h + np_attention(blk["attn"], np_layernorm(blk["ln1"], h), allowed, H)
        h = h + np_dense(blk["fc2"], np_gelu(np_dense(blk["fc1"], np_layernorm(blk["ln2"], h))))
    return np_layernorm(p["ln_f"], h)


def tapped_paths(model, params, x):
    """The '/'-joined paths of every tapped Dense layer."""
    flat = jax.tree_util.tree_flatten_with_path(model.zero_perturbations(params, x))[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path[:-1]) for path, _ in flat}


@pytest.fixture(scope="module")
def lm():
    """(task, params, jitted apply) of a tiny TransformerLM."""
    task, params = transformer_lm_task(0, V, D, H, LAYERS, MAXLEN)
    return task, params, jax.jit(task.model.apply)


@pytest.fixture(scope="module")
def clf():
    task, params = transformer_classifier_task(1, V, 3, D, H, LAYERS, MAXLEN)
    return task, params, jax.jit(task.model.apply)


def test_mlp_matches_numpy_and_module():
    module = MLP(12, [7, 5], 4, rngs=nnx.Rngs(0))
    model, params = functional(module)
    x = np.random.default_rng(0).normal(size=(6, 3, 4)).astype(np.float32)
    out = jax.jit(model.apply)(params, x)
    assert out.shape == (6, 4)
    p = f64(params)
    h = x.reshape(6, -1).astype(np.float64)
    for j in range(2):
        h = np.maximum(np_dense(p["hidden"][j], h), 0)
    np.testing.assert_allclose(out, np_dense(p["head"], h), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, nnx.jit(lambda m, x: m(x))(module, x), rtol=1e-6, atol=1e-6)
    assert tapped_paths(model, params, x) == {"hidden/0", "hidden/1", "head"}


def test_cnn_matches_numpy_for_every_input_layout():
    module = CNN((8, 8, 1), 3, rngs=nnx.Rngs(0), channels=(2, 3))
    model, params = functional(module)
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 1)).astype(np.float32)
    p = f64(params)

    def conv_relu_pool(c, h):  # SAME 3x3 cross-correlation, ReLU, 2x2 max pool
        win = sliding_window_view(np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0))), (3, 3), axis=(1, 2))
        h = np.maximum(np.einsum("bhwcij,ijco->bhwo", win, c["kernel"]) + c["bias"], 0)
        b, hh, ww, co = h.shape
        return h.reshape(b, hh // 2, 2, ww // 2, 2, co).max(axis=(2, 4))

    h = conv_relu_pool(p["conv2"], conv_relu_pool(p["conv1"], x.astype(np.float64)))
    expected = np_dense(p["head"], h.reshape(2, -1))
    for layout in (x, x[..., 0], x.reshape(2, -1)):
        out = jax.jit(model.apply)(params, layout)
        assert out.shape == (2, 3)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out, nnx.jit(lambda m, x: m(x))(module, x), rtol=1e-6, atol=1e-6)
    assert tapped_paths(model, params, x) == {"head"}


def test_cnn_task_takes_28x28x1_images():
    task, params = cnn_task(0)
    assert jax.eval_shape(task.apply, params, jnp.zeros((2, 28, 28, 1))).shape == (2, 10)
    assert params["head"]["kernel"].shape == (7 * 7 * 32, 10)
    with pytest.raises(InputError, match="in_shape"):
        jax.eval_shape(task.apply, params, jnp.zeros((2, 10)))


def test_attention_matches_numpy_multihead_causal_attention():
    model, params = functional(Attention(8, 2, rngs=nnx.Rngs(3)))
    x = np.random.default_rng(2).normal(size=(2, 5, 8)).astype(np.float32)
    tokens = np.array([[1, 2, 3, 0, 0], [0, 4, 0, 5, 6]])
    allowed = np_allowed(tokens, causal=True)
    out = model.apply(params, x, allowed=jnp.asarray(allowed))
    np.testing.assert_allclose(out, np_attention(f64(params), x.astype(np.float64), allowed, 2),
                               rtol=1e-5, atol=1e-5)


def test_lm_matches_numpy_forward(lm):
    task, params, apply = lm
    logits = apply(params, TOKENS)
    assert logits.shape == (2, 8, V)
    p = f64(params)
    np.testing.assert_allclose(logits, np_dense(p["head"], np_trunk(p, TOKENS, causal=True)),
                               rtol=1e-4, atol=1e-5)
    expected = {f"blocks/{i}/{name}" for i in range(LAYERS)
                for name in ("attn/q", "attn/k", "attn/v", "attn/o", "fc1", "fc2")} | {"head"}
    assert tapped_paths(task.model, params, TOKENS) == expected


def test_classifier_matches_numpy_forward(clf):
    _, params, apply = clf
    logits = apply(params, TOKENS)
    assert logits.shape == (2, 3)
    p = f64(params)
    h = np_trunk(p, TOKENS, causal=False)
    m = (TOKENS != 0)[..., None]
    np.testing.assert_allclose(logits, np_dense(p["head"], (h * m).sum(1) / m.sum(1)), rtol=1e-4, atol=1e-5)


def test_module_call_equals_functional_apply(lm, clf):
    for module, (_, params, apply) in ((TransformerLM(V, D, H, LAYERS, MAXLEN, rngs=nnx.Rngs(0)), lm),
                                       (TransformerClassifier(V, D, H, LAYERS, MAXLEN, 3, rngs=nnx.Rngs(1)), clf)):
        np.testing.assert_allclose(nnx.jit(lambda m, t: m(t))(module, jnp.asarray(TOKENS)), apply(params, TOKENS),
                                   rtol=1e-6, atol=1e-6)


def test_lm_is_causal(lm):
    _, params, apply = lm
    changed = TOKENS.copy()
    changed[:, 5] = [10, 10]
    a, b = np.asarray(apply(params, TOKENS)), np.asarray(apply(params, changed))
    np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=0, atol=1e-6)
    assert np.abs(a[:, 5:] - b[:, 5:]).max(axis=-1).min() > 1e-4


def test_padding_is_masked(lm, clf):
    real = TOKENS != 0
    for _, params, apply in (lm, clf):
        moved = jax.tree.map(lambda a: a, params)
        moved["tok_embed"]["embedding"] = params["tok_embed"]["embedding"].at[0].add(3.0)
        a, b = np.asarray(apply(params, TOKENS)), np.asarray(apply(moved, TOKENS))
        if a.ndim == 3:  # the LM: outputs at real positions ignore the pad embedding, pad positions see it
            np.testing.assert_allclose(a[real], b[real], rtol=0, atol=1e-5)
            assert np.abs(a[~real] - b[~real]).max() > 1e-3
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    # Trailing padding changes nothing in the classifier (TOKENS[0] is TOKENS[0, :6] and two pads).
    _, params, apply = clf
    np.testing.assert_allclose(apply(params, TOKENS[:, :6])[0], apply(params, TOKENS)[0], rtol=0, atol=1e-5)


def test_classification_loss_is_numpy_cross_entropy():
    task, params = mlp_task(0, 5, [4], 3)
    rng = np.random.default_rng(3)
    batch = {"x": rng.normal(size=(7, 5)).astype(np.float32), "y": rng.integers(0, 3, 7)}
    logits = np.asarray(task.apply(params, batch["x"]), np.float64)
    expected = -log_softmax(logits, axis=-1)[np.arange(7), batch["y"]]
    np.testing.assert_allclose(task.loss_fn(params, batch), expected, rtol=1e-5)


def test_lm_loss_is_numpy_masked_next_token_mean(lm, clf):
    task, params, apply = lm
    logp = log_softmax(np.asarray(apply(params, TOKENS), np.float64), axis=-1)
    expected = [np.mean([-logp[i, t - 1, TOKENS[i, t]] for t in range(1, 8) if TOKENS[i, t] != 0])
                for i in range(2)]
    np.testing.assert_allclose(jax.jit(task.loss_fn)(params, {"x": TOKENS}), expected, rtol=1e-5)
    ctask, cparams, capply = clf
    y = np.array([0, 2])
    expected = -log_softmax(np.asarray(capply(cparams, TOKENS), np.float64), axis=-1)[[0, 1], y]
    np.testing.assert_allclose(jax.jit(ctask.loss_fn)(cparams, {"x": TOKENS, "y": y}), expected, rtol=1e-5)


def test_seed_determines_parameters():
    same = jax.tree.map(np.array_equal, mlp_task(4, 5, [4], 3)[1], mlp_task(jax.random.key(4), 5, [4], 3)[1])
    assert all(jax.tree.leaves(same))
    assert not np.array_equal(mlp_task(4, 5, [4], 3)[1]["head"]["kernel"],
                              mlp_task(5, 5, [4], 3)[1]["head"]["kernel"])


def test_bad_inputs_raise_input_errors(lm):
    task, params, apply = lm
    with pytest.raises(InputError, match="max_len"):
        apply(params, np.ones((1, MAXLEN + 1), np.int32))
    with pytest.raises(InputError, match="token ids"):
        apply(params, np.ones((1, 4), np.float32))
    with pytest.raises(InputError, match="divisible"):
        TransformerLM(V, 10, 4, 1, MAXLEN, rngs=nnx.Rngs(0))
    task, mparams = mlp_task(0, 5, [4], 3)
    with pytest.raises(InputError, match="d_in=6"):
        jax.eval_shape(task.apply, mparams, jnp.ones((2, 6)))


def test_build_task_from_the_data_shape():
    from jdps.models.build import build_task

    shapes = lambda params: jax.tree.map(np.shape, params)
    _, grey = build_task("cnn", (8, 8), 10, seed=0)
    _, channel = build_task("cnn", (8, 8, 1), 10, seed=0)
    assert shapes(grey) == shapes(channel)                  # [N, H, W] images get a channel axis
    task, params = build_task("mlp", (8, 8), 3, seed=0, hidden=(5,))
    assert task.model.apply(params, jnp.zeros((2, 8, 8))).shape == (2, 3)
    _, lm = build_task("transformer", (16,), seed=0, d_model=8, n_heads=1, n_layers=1)
    assert lm["pos_embed"]["embedding"].shape == (16, 8) and lm["head"]["bias"].shape == (259,)  # byte vocabulary
    with pytest.raises(InputError, match=r"images shaped \[N, H, W\] or \[N, H, W, C\].*--model mlp"):
        build_task("cnn", (64,), 10, seed=0)
    with pytest.raises(InputError, match="H, W >= 4"):
        build_task("cnn", (2, 8), 10, seed=0)
    with pytest.raises(InputError, match="token windows"):
        build_task("transformer", (8, 8), seed=0)
    with pytest.raises(InputError, match="configure the transformer"):
        build_task("mlp", (8,), 3, seed=0, d_model=8)
