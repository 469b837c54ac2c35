"""Independent references shared by the test files: softmax cross-entropy, its per-example gradients and
Gauss-Newton matrix written out by hand with numpy (no jax autodiff), and the influence they give."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np


def ce(logits, batch):
    """Softmax cross-entropy per example (the jax loss the references describe): logits [B, C] -> [B]."""
    return -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["y"][:, None], axis=1)[:, 0]


def softmax_ggn(params, x, y):
    """Per-example gradients g [N, p] and the Gauss-Newton matrix (1/N) sum J^T (diag p - p p^T) J [p, p] of
    softmax cross-entropy for softmax regression (params {"head"}) or a one-hidden-layer ReLU MLP (params
    {"hidden": [layer], "head"}), J the logits' Jacobian in the layout [W1, b1, W2, b2], by hand."""
    w2, b2 = (np.asarray(params["head"][k], np.float64) for k in ("kernel", "bias"))
    h, blocks = x, []
    n, c = len(x), w2.shape[1]
    if "hidden" in params:
        w1, b1 = (np.asarray(params["hidden"][0][k], np.float64) for k in ("kernel", "bias"))
        pre = x @ w1 + b1
        h = np.maximum(pre, 0)
        dh = w2.T[None] * (pre > 0)[:, None, :]                      # d logit_c / d pre_j  [N, C, H]
        blocks += [np.einsum("nk,ncj->nckj", x, dh).reshape(n, c, -1), dh]
    z = h @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    blocks += [np.einsum("nj,ce->ncje", h, np.eye(c)).reshape(n, c, -1), np.broadcast_to(np.eye(c), (n, c, c))]
    jac = np.concatenate(blocks, axis=2)
    m = np.einsum("nc,cd->ncd", p, np.eye(c)) - np.einsum("nc,nd->ncd", p, p)
    return np.einsum("ncp,nc->np", jac, p - np.eye(c)[y]), np.einsum("ncp,ncd,ndq->pq", jac, m, jac) / n


def influence_ref(g_train, g_query, curvature, damping):
    """I(z_j, Q) = mean_q g_q^T (C + damping I)^{-1} g_j by numpy.linalg.solve."""
    return g_train @ np.linalg.solve(curvature + damping * np.eye(len(curvature)), g_query.mean(0))


def as_tree(flat, d=5, h=8, c=3):
    """A flat vector in the layout [W1, b1, W2, b2] of a d-h-c MLP as {path: leaf}."""
    sizes = np.cumsum([0, d * h, h, h * c, c])
    parts = [flat[a:b] for a, b in itertools.pairwise(sizes)]
    return {"hidden/0/kernel": parts[0].reshape(d, h), "hidden/0/bias": parts[1],
            "head/kernel": parts[2].reshape(h, c), "head/bias": parts[3]}


def cosines(a, b):
    """Row-by-row cosines of a [n, p] and b [m, p] -> [n, m]."""
    return (a @ b.T) / np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1))
