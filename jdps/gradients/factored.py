"""Exact per-example forms for Dense layers from their taps, with no per-example backward pass.

For a Dense layer y = x W + b, example i has inputs x_i [T, d_in] and output gradients
delta_i = dl_i/dy_i [T, d_out] (T = 1 for a vector input; all middle axes are flattened into T).
With a_t = [x_t, 1] (x_t if only the kernel is selected, 1 if only the bias), the layer's gradient is

    g_i = sum_t a_t delta_t^T                            [m, d_out] = [[dl_i/dW]; [dl_i/db]]
    |g_i|^2 = sum_{t,s} (a_t . a_s)(delta_t . delta_s)   (ghost norm: O(T^2 (m + d_out)); when
              T (m + d_out) >= m d_out, g_i is formed instead: O(T m d_out))
    phi_i = P_in^T g_i P_out = sum_t (P_in^T a_t)(P_out^T delta_t)^T   [k_in, k_out]  (factored projection)

and vec(phi_i) = (P_in kron P_out)^T vec(g_i) (row-major vec), computed without forming g_i. The deltas of
every example come from ONE backward pass of sum_i output_loss_i w.r.t. zero perturbations added to the
layer outputs; that is exact per example because examples do not interact in the forward pass (no batch
norm). This needs a `Task` with `model` and `output_loss` (`Task.from_model`); for a task with only a
`loss_fn`, `layer_grads` and `grad_norms` fall back to vmap(grad) and say so.
"""

from __future__ import annotations

import warnings
import zlib
from typing import Any

import jax
import jax.numpy as jnp

from jdps.gradients import param_filter as pf
from jdps.errors import InputError
from jdps.gradients.per_example import batch_size_of, flatten, per_example_grads
from jdps.gradients.projection import random_matrix
from jdps.task import Task

Batch = dict[str, Any]


def as_task(task) -> Task:
    """A `Task`, or a bare loss_fn(params, batch) -> [B] wrapped as one."""
    if isinstance(task, Task):
        return task
    if callable(task):
        return Task(loss_fn=task)
    raise InputError(f"expected a Task or a loss_fn(params, batch) -> [B], got {type(task).__name__}")


def _fallback_note(what: str) -> None:
    warnings.warn(
        f"{what}: this task has only a loss_fn, so per-example gradients are taken by vmap(grad) "
        "(exact, but it forms every per-example gradient); build the task with Task.from_model(model, "
        "output_loss) to use the factored Dense forms", stacklevel=3)


def dense_layers(task: Task, params, x) -> list[str]:
    """Paths of the tapped Dense layers the model runs on input `x` (tree order)."""
    shapes = jax.eval_shape(task.model.zero_perturbations, params, x)
    return [p.rpartition("/")[0] for p in pf.flat(shapes)]


def split_dense(paths, layers) -> tuple[dict[str, tuple[bool, bool]], list[str]]:
    """Selected paths -> ({layer: (kernel selected, bias selected)}, the selected paths of no Dense layer)."""
    dense, rest = {}, []
    for p in paths:
        module, _, name = p.rpartition("/")
        if module in layers and name in ("kernel", "bias"):
            kernel, bias = dense.get(module, (False, False))
            dense[module] = (kernel or name == "kernel", bias or name == "bias")
        else:
            rest.append(p)
    return dense, rest


def taps(task: Task, params, batch: Batch, layers: dict[str, tuple[bool, bool]]):
    """{layer: (a [B, T, m], delta [B, T, d_out])} for the given layers, from one forward and backward."""
    x = batch["x"]
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                         jax.eval_shape(task.model.zero_perturbations, params, x))
    chosen = pf.take(zeros, [f"{layer}/outputs" for layer in layers])

    def total_loss(perturbation):
        out, inputs = task.model.apply_tapped(params, pf.put(zeros, perturbation), x)
        return task.output_loss(out, batch).sum(), inputs

    deltas, inputs = jax.grad(total_loss, has_aux=True)(chosen)
    inputs = pf.flat(inputs)
    b = x.shape[0]
    out = {}
    for layer, (kernel, bias) in layers.items():
        delta = deltas[f"{layer}/outputs"].astype(jnp.float32)
        delta = delta.reshape(b, -1, delta.shape[-1])
        parts = []
        if kernel:
            xin = inputs[f"{layer}/inputs"].astype(jnp.float32)
            parts.append(xin.reshape(b, -1, xin.shape[-1]))
        if bias:
            parts.append(jnp.ones(delta.shape[:2] + (1,), jnp.float32))
        out[layer] = (jnp.concatenate(parts, axis=-1), delta)
    return out


def dense_selection(task: Task, params, batch: Batch, param_filter, what: str):
    """(selected paths, {layer: (kernel, bias)}, selected non-Dense paths); no filter: every Dense leaf."""
    layers = dense_layers(task, params, batch["x"])
    paths = pf.select(param_filter, params, loss_fn=task.loss_fn, batch=batch)
    dense, rest = split_dense(paths, layers)
    if param_filter is None:
        paths, rest = tuple(p for p in paths if p not in rest), []
    if not dense:
        raise InputError(f"{what}: the parameter filter selects no Dense layer (selected {list(paths)}); "
                         f"select the kernels or biases of the Dense layers here: {layers}")
    return paths, dense, rest


def layer_grads(task, params, batch: Batch, *, param_filter=None, chunk_size: int | None = None):
    """Exact per-example gradients {path: [B, ...]} of the selected Dense kernels/biases, from the taps.

    With the output layer selected (`last_layers(1)`) and softmax cross-entropy this is the closed form
    g_W = x (softmax(z) - onehot(y))^T, g_b = softmax(z) - onehot(y). Default filter: every Dense leaf.
    """
    task = as_task(task)
    if task.model is None:
        _fallback_note("layer_grads")
        return per_example_grads(task.loss_fn, params, batch, param_filter=param_filter, chunk_size=chunk_size)
    paths, dense, rest = dense_selection(task, params, batch, param_filter, "layer_grads")
    if rest:
        raise InputError(f"layer_grads covers Dense kernels and biases only, but the filter also selects "
                         f"{rest}; narrow the filter, or use per_example_grads for those leaves")
    out = {}
    for layer, (a, delta) in taps(task, params, batch, dense).items():
        g = jnp.einsum("btm,btn->bmn", a, delta)
        kernel, bias = dense[layer]
        if kernel:
            out[f"{layer}/kernel"] = g[:, :-1] if bias else g
        if bias:
            out[f"{layer}/bias"] = g[:, -1]
    return {p: out[p] for p in paths}


def _sq_norm(a, delta):
    """|sum_t a_t delta_t^T|_F^2 per example, by the cheaper of the ghost (T^2) and the direct form."""
    t, m, n = a.shape[1], a.shape[2], delta.shape[2]
    if t * (m + n) < m * n:
        return jnp.einsum("bts,bts->b", a @ a.transpose(0, 2, 1), delta @ delta.transpose(0, 2, 1))
    return jnp.square(jnp.einsum("btm,btn->bmn", a, delta)).sum(axis=(1, 2))


def grad_norms(task, params, batch: Batch, *, param_filter=None, chunk_size: int | None = None):
    """Per-example gradient norms |g_i| [B] over the selected leaves, without forming Dense gradients.

    Dense kernels/biases use ghost norms; any other selected leaf (a layer norm, an embedding) adds its
    vmap(grad) squared norm. Default filter: every leaf.
    """
    task = as_task(task)
    if task.model is None:
        _fallback_note("grad_norms")
        dense, rest = {}, list(pf.select(param_filter, params, loss_fn=task.loss_fn, batch=batch))
    else:
        paths = pf.select(param_filter, params, loss_fn=task.loss_fn, batch=batch)
        dense, rest = split_dense(paths, dense_layers(task, params, batch["x"]))
    sq = jnp.zeros(batch_size_of(batch), jnp.float32)
    if dense:
        for a, delta in taps(task, params, batch, dense).values():
            sq = sq + _sq_norm(a, delta)
    if rest:
        sq = sq + per_example_grads(task.loss_fn, params, batch, param_filter=rest, chunk_size=chunk_size,
                                    transform=lambda g: jnp.square(flatten(g)).sum(axis=1))
    return jnp.sqrt(sq)


def layer_factors(key, layer: str, m: int, n: int, k: tuple[int, int], kind: str = "rademacher"):
    """P_in [m, k_in], P_out [n, k_out] of one layer: drawn from fold_in(key, crc32(layer path))."""
    layer_key = jax.random.fold_in(key, zlib.crc32(layer.encode()))
    return (random_matrix(jax.random.fold_in(layer_key, 0), (m, k[0]), kind),
            random_matrix(jax.random.fold_in(layer_key, 1), (n, k[1]), kind))


def factored_features(task, params, batch: Batch, *, key, k, param_filter=None, kind: str = "rademacher"):
    """LoGra-style projected gradients [B, sum over layers k_in k_out] of the selected Dense layers.

    Layer by layer (tree order), vec(P_in^T g_i P_out) with P_in, P_out from `layer_factors`; `k` is an
    int (k_in = k_out = k) or a pair. The projection depends on (key, layer paths and shapes, k) only.
    Default filter: every Dense leaf.
    """
    task = as_task(task)
    if task.model is None:
        raise InputError("factored_features needs the model's Dense taps: build the task with "
                         "Task.from_model(model, output_loss), or project vmap(grad) gradients instead")
    k = (k, k) if isinstance(k, int) else tuple(k)
    if len(k) != 2 or min(k) < 1:
        raise InputError(f"k must be a positive int or a pair (k_in, k_out), got {k!r}")
    _, dense, rest = dense_selection(task, params, batch, param_filter, "factored_features")
    if rest:
        raise InputError(f"factored projections cover Dense kernels and biases only, but the filter also "
                         f"selects {rest}; narrow the filter, or use the dense projection of vmap(grad)")
    feats = []
    for layer, (a, delta) in taps(task, params, batch, dense).items():
        p_in, p_out = layer_factors(key, layer, a.shape[-1], delta.shape[-1], k, kind)
        phi = jnp.einsum("btk,btl->bkl", a @ p_in, delta @ p_out)
        feats.append(phi.reshape(phi.shape[0], -1))
    return jnp.concatenate(feats, axis=1)
