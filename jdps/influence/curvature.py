"""Kronecker-factored curvature (K-FAC, EK-FAC) of Dense layers, and its damped inverse.

A Dense layer y = x W + b seen by example i at tokens t (every middle axis; T = 1 for a vector input) has
inputs a_t = [x_t, 1] (x_t alone if only the kernel is selected, 1 alone if only the bias) of width m and
output gradients delta_t of width n, so its gradient is g_i = sum_t a_t delta_t^T [m, n] (kernel rows, then
the bias row). Its curvature block E_i[vec g_i vec g_i^T] is approximated by

    A = (1 / N_tok) sum_{i,t} a_t a_t^T          [m, m]   the mean over the real tokens
    G = (1 / N) sum_i sum_t delta_t delta_t^T      [n, n]   summed over an example's tokens, mean over examples
    A = Q_A diag(s_A) Q_A^T,  G = Q_G diag(s_G) Q_G^T       (host, float64)
    F = (Q_A kron Q_G) diag(vec S) (Q_A kron Q_G)^T,  with
        K-FAC:   S = s_A s_G^T                     (F = A kron G)
        EK-FAC:  S = (1 / N) sum_i (Q_A^T g_i Q_G)^2  (the exact diagonal of the curvature in that eigenbasis)

(vec row-major, so (A kron G) vec V = vec(A V G)). The damped inverse is applied exactly in the eigenbasis:

    (F + lambda I)^{-1} vec V = vec(Q_A [(Q_A^T V Q_G) / (S + lambda)] Q_G^T)      V [m, n].

delta is the gradient of the loss w.r.t. the layer output at labels sampled from the model's predictive
distribution (fisher='true', the default: the factors then estimate the Gauss-Newton matrix) or at the data's
labels (fisher='empirical': the empirical Fisher, for any output loss). The true Fisher assumes the outputs
are logits of softmax cross-entropy terms over the last axis (classification and language-model tasks),
weighted by w >= 0 per position: r = sqrt(w) (onehot(y) - p), y ~ p = softmax(logits), has E[r r^T] = the
output loss's Hessian w (diag p - p p^T); w is read off one output-space Hessian-vector product.
A token is real unless batch['x'] holds integer tokens [B, L] of the layer's length and it is padding;
padding examples (batch['mask'] False) are dropped. Factors are a dict {layer: {'a', 'g', 'qa', 'qg', 's'}}
of arrays, saved and restored with orbax by `save_factors` / `load_factors`.
"""

from __future__ import annotations

import itertools
import os
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jdps import distributed as dist
from jdps.gradients import factored as fa
from jdps.gradients import param_filter as pf
from jdps.data import batching
from jdps.errors import CheckpointError, InputError
from jdps.losses import PAD_ID

KINDS = ("kfac", "ekfac")
FISHERS = ("true", "empirical")


def check_key(key, fisher: str):
    """The sampling key of the true Fisher (an int seed is turned into a key); None for the empirical one."""
    if fisher not in FISHERS:
        raise InputError(f"unknown fisher {fisher!r}; pass one of {FISHERS}")
    if fisher == "empirical":
        return None
    if key is None:
        raise InputError("fisher='true' samples labels from the model: pass key=jax.random.key(seed), "
                         "or fisher='empirical' to use the data's labels")
    return jax.random.key(key) if isinstance(key, (int, np.integer)) else key


def dense_paths(task, params, batch, param_filter) -> tuple[tuple[str, ...], dict[str, tuple[bool, bool]]]:
    """The selected Dense leaves and {layer: (kernel, bias)}; raises if the filter selects anything else."""
    if task.model is None:
        raise InputError("K-FAC factors need the model's Dense taps: build the task with "
                         "Task.from_model(model, output_loss)")
    paths, layers, rest = fa.dense_selection(task, params, batch, param_filter, "K-FAC factors")
    if rest:
        raise InputError(f"K-FAC factors cover Dense kernels and biases only, but the filter also selects {rest}; "
                         "narrow the filter to Dense layers, e.g. 'blocks/*/attn/*' or 'head'")
    return tuple(paths), layers


def _output_cotangent(task, out, batch, fisher: str, key):
    """The output-space vector pulled back to every layer: dl/dout, or a true-Fisher sample r."""
    mask = batch.get("mask", jnp.ones(out.shape[0], bool)).astype(out.dtype)
    loss = lambda o: (task.output_loss(o, batch) * mask).sum()
    if fisher == "empirical":
        return jax.grad(loss)(out)
    p = jax.nn.softmax(out, axis=-1)
    d = jax.nn.one_hot(jax.random.categorical(key, out, axis=-1), out.shape[-1], dtype=out.dtype) - p
    hd = jax.jvp(jax.grad(loss), (out,), (d,))[1]                    # w (diag p - p p^T) d, per position
    quad = (d * p * d).sum(-1) - jnp.square((d * p).sum(-1))         # d^T (diag p - p p^T) d
    w = jnp.where(quad > 1e-12, (d * hd).sum(-1) / jnp.where(quad > 1e-12, quad, 1.0), 0.0)
    return jnp.sqrt(jnp.maximum(w, 0.0))[..., None] * d


def _token_mask(batch, b: int, t: int):
    """[B, T] bool: True on the real tokens of the real examples."""
    mask = jnp.broadcast_to(batch.get("mask", jnp.ones(b, bool))[:, None], (b, t))
    x = batch["x"]
    if jnp.issubdtype(x.dtype, jnp.integer) and x.ndim == 2 and x.shape[1] == t:
        mask = mask & (x != PAD_ID)
    return mask


def layer_taps(task, params, batch, layers: dict[str, tuple[bool, bool]], fisher: str, key):
    """{layer: (a [B, T, m], delta [B, T, n], token mask [B, T])}, from one forward and one backward."""
    x = batch["x"]
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(task.model.zero_perturbations, params, x))
    chosen = pf.take(zeros, [f"{layer}/outputs" for layer in layers])
    forward = lambda pert: task.model.apply_tapped(params, pf.put(zeros, pert), x)
    out, pullback, inputs = jax.vjp(forward, chosen, has_aux=True)
    (deltas,) = pullback(_output_cotangent(task, out, batch, fisher, key))
    inputs, b = pf.flat(inputs), x.shape[0]
    taps = {}
    for layer, (kernel, bias) in layers.items():
        delta = deltas[f"{layer}/outputs"]
        delta = delta.reshape(b, -1, delta.shape[-1])
        parts = [inputs[f"{layer}/inputs"].reshape(b, delta.shape[1], -1)] if kernel else []
        if bias:
            parts.append(jnp.ones(delta.shape[:2] + (1,), delta.dtype))
        taps[layer] = (jnp.concatenate(parts, axis=-1), delta, _token_mask(batch, b, delta.shape[1]))
    return taps


def _sums(task, params, batch, layers, fisher, key, bases=None):
    """One batch's {layer: {'a': sum a a^T, 'g': sum delta delta^T, 'tokens': count}}, and with eigenbases
    {layer: (Q_A, Q_G)} also 's': sum_i (Q_A^T g_i Q_G)^2 (one function for both EK-FAC passes: one compile)."""
    out = {}
    for layer, (a, delta, mask) in layer_taps(task, params, batch, layers, fisher, key).items():
        am = a * mask[..., None]
        dm = delta * mask[..., None]
        out[layer] = {"a": jnp.einsum("btm,btk->mk", am, a), "g": jnp.einsum("btn,btk->nk", dm, delta),
                      "tokens": mask.sum()}
        if bases is not None:
            qa, qg = bases[layer]
            out[layer]["s"] = jnp.square(jnp.einsum("btk,btl->bkl", am @ qa, delta @ qg)).sum(0)
    return out


@partial(jax.jit, static_argnums=(0, 1, 2))
def _batch_sums(task, layers: tuple, fisher: str, params, batch, key, bases):
    """`_sums` compiled once per (task, layers, fisher) and batch shape, reused by every `fit` call."""
    return _sums(task, params, batch, dict(layers), fisher, key, bases)


def fit(task, params, data, *, kind: str = "ekfac", param_filter=None, fisher: str = "true", key=None,
        batch_size: int = 256, mesh=None) -> dict[str, dict[str, jax.Array]]:
    """K-FAC or EK-FAC factors {layer: {'a' [m, m], 'g' [n, n], 'qa', 'qg', 's' [m, n]}} of the selected Dense
    layers, from the examples of `data` (a Dataset, a dict of arrays, or a list of batches).

    param_filter: which Dense kernels/biases (default: all); it may select nothing else. key: a
    `jax.random` key (or int seed) for the true Fisher's labels. EK-FAC reads the data twice. mesh: each
    batch (rounded up to a multiple of the 'data' shards) is split over 'data'; every device sums its own
    rows' a a^T, delta delta^T (and EK-FAC's squares) and the sums are all-reduced, so every process gets
    the same factors (`jdps.distributed`). The true Fisher's labels are drawn per example row from the
    batch key, so they depend on the batch size, not on the mesh.
    """
    task = fa.as_task(task)
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r}; pass one of {KINDS}")
    key = check_key(key, fisher)
    batches = batching.scoring_batches(data, dist.round_up(batch_size, mesh), "curvature data")
    first = next(iter(batches), None)
    if iter(batches) is batches:  # a one-shot iterator: put the first batch back
        if kind == "ekfac":
            raise InputError("EK-FAC reads the data twice; pass a Dataset, a dict of arrays or a list of "
                             "batches, not a one-shot iterator")
        batches = itertools.chain([first], batches)
    if first is None:
        raise InputError("the curvature data holds no batch; pass at least one example")
    paths, layers = dense_paths(task, params, first, param_filter)
    batch_key = lambda i: None if key is None else jax.random.fold_in(key, i)

    dtype = jnp.result_type(*pf.take(params, paths).values())
    layer_items = tuple(layers.items())  # hashable: a static argument of the compiled step
    device_params = params if mesh is None else dist.put_params(params, mesh)
    step = lambda p, b, k, q: _batch_sums(task, layer_items, fisher, device_params, dist.on_mesh(b, mesh), k, q)
    eye = lambda n: jnp.eye(int(n), dtype=dtype)

    def accumulate(bases):
        """Sums over every batch on the host in float64, and the number of real examples."""
        total, examples = {}, 0
        for i, batch in enumerate(batches):
            for layer, sums in step(params, batch, batch_key(i), bases).items():
                for name, value in sums.items():
                    total.setdefault(layer, {}).setdefault(name, 0.0)
                    total[layer][name] = total[layer][name] + np.asarray(value, np.float64)
            examples += int(np.asarray(batch.get("mask", np.ones(len(batch["x"]), bool))).sum())
        if examples == 0:
            raise InputError("the curvature data holds no real example (every mask is False); pass at least one")
        return total, examples

    # EK-FAC's first pass runs with identity bases so that both passes share one compiled function
    identity = None
    if kind == "ekfac":
        leaves, identity = pf.flat(params), {}
        for layer, (kernel, bias) in layers.items():
            d_in, d_out = leaves[f"{layer}/kernel"].shape
            identity[layer] = (eye(d_in * kernel + bias), eye(d_out))
    sums, examples = accumulate(identity)
    factors, bases = {}, {}
    for layer, s in sums.items():
        a = s["a"] / max(s["tokens"], 1.0)
        g = s["g"] / examples
        sa, qa = np.linalg.eigh((a + a.T) / 2)
        sg, qg = np.linalg.eigh((g + g.T) / 2)
        factors[layer] = {"a": a, "g": g, "qa": qa, "qg": qg, "s": np.outer(np.maximum(sa, 0), np.maximum(sg, 0))}
        bases[layer] = (jnp.asarray(qa, dtype), jnp.asarray(qg, dtype))
    if kind == "ekfac":
        corrected, _ = accumulate(bases)
        for layer in layers:
            factors[layer]["s"] = corrected[layer]["s"] / examples
    return jax.tree.map(lambda v: jnp.asarray(v, dtype), factors)


def place(factors, mesh):
    """Factors on `mesh`: with a 'model' axis of M devices, the rows of every factor matrix whose row count
    M divides are split over it (each device holds 1 / M of A, Q_A, G, Q_G, S; XLA adds the collectives of
    `solve`), the rest replicated; without one, all replicated."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    m = int(mesh.shape[dist.MODEL]) if dist.MODEL in mesh.axis_names else 1

    def put(x):
        x = np.asarray(x)
        split = m > 1 and x.ndim == 2 and x.shape[0] % m == 0
        return jax.device_put(x, NamedSharding(mesh, P(dist.MODEL, None) if split else P()))

    return jax.tree.map(put, factors)


def check_damping(factors, damping: float) -> None:
    """Raise if some layer's damped curvature S + lambda is singular: its smallest eigenvalue at most eps
    times its largest, i.e. zero up to the rounding of the factors in their dtype. S >= 0 by construction
    (products of clipped factor eigenvalues; EK-FAC: means of squares), so any damping above that passes."""
    for layer, f in factors.items():
        s = np.asarray(f["s"], np.float64) + damping
        tol = np.abs(s).max() * np.finfo(np.asarray(f["s"]).dtype).eps
        if s.min() <= tol:
            raise InputError(
                f"the damped K-FAC curvature of layer {layer!r} is singular (smallest eigenvalue {s.min():.3g} "
                f"with damping {damping}); pass damping > 0, e.g. 1e-3 x its largest eigenvalue "
                f"({1e-3 * np.abs(s).max():.3g})")


def solve(factors, v: dict[str, jax.Array], damping: float) -> dict[str, jax.Array]:
    """(F + damping I)^{-1} v, layer by layer, for v = {path: leaf} over Dense kernels/biases with factors."""
    layers: dict[str, dict[str, jax.Array]] = {}
    for path, leaf in v.items():
        layer, _, name = path.rpartition("/")
        if layer not in factors or name not in ("kernel", "bias"):
            raise InputError(f"no K-FAC factors for {path!r}; the factors cover the layers {list(factors)}: "
                             "fit them with a parameter filter that selects this leaf")
        layers.setdefault(layer, {})[name] = leaf
    out = {}
    for layer, leaves in layers.items():
        f = factors[layer]
        rows = [leaves["kernel"]] if "kernel" in leaves else []
        if "bias" in leaves:
            rows.append(leaves["bias"][None])
        mat = jnp.concatenate(rows, axis=0)
        if mat.shape != f["s"].shape:
            raise InputError(f"layer {layer!r}: the vector has shape {mat.shape} (kernel rows, bias row) but the "
                             f"factors were fitted for {f['s'].shape}; fit them with the same parameter filter")
        inv = f["qa"] @ ((f["qa"].T @ mat @ f["qg"]) / (f["s"] + damping)) @ f["qg"].T
        if "kernel" in leaves:
            out[f"{layer}/kernel"] = inv[:leaves["kernel"].shape[0]]
        if "bias" in leaves:
            out[f"{layer}/bias"] = inv[-1]
    return {p: out[p] for p in v}


def save_factors(path: str, factors) -> None:
    """Write factors to the directory `path` with orbax (overwriting it)."""
    import orbax.checkpoint as ocp

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.abspath(path), factors, force=True)
    checkpointer.wait_until_finished()


def load_factors(path: str):
    """Read factors written by `save_factors`."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(path):
        raise CheckpointError(f"no saved factors at {path!r}; fit them with jdps.influence.curvature.fit and write them "
                              "with save_factors first")
    return ocp.StandardCheckpointer().restore(os.path.abspath(path))
