"""Bi-level reweighting baselines (BLO): Learning to Reweight (L2RW) and Meta-Weight-Net (MWN).

Both look one SGD step ahead. For a batch B (b rows, per-example losses l_i), a meta batch B_m with
mean loss L_m, per-example weights eps [b] and a look-ahead step alpha:

    theta'(eps) = theta - alpha grad_theta sum_{i in B} eps_i l_i(theta)
    g_i = d L_m(theta'(eps)) / d eps_i = -alpha grad l_i(theta) . grad L_m(theta'(eps))

L2RW (Ren et al. 2018): g at eps = 0 (where theta' = theta), w_i = max(-g_i, 0) / sum_B max(-g_j, 0)
(all 0 when no g_i is negative), then theta <- optimizer step on sum_B w_i l_i(theta).

MWN (Shu et al. 2019): w_i = V(l_i; phi) = sigmoid(relu(l_i a + c) . v + d), a net of hidden width H
(100) fed each loss as a constant; with the mean over the batch's rows,
    phi <- net optimizer step on grad_phi L_m(theta - alpha grad_theta mean_B V(l_i; phi) l_i(theta)),
    theta <- optimizer step on mean_B V(l_i; phi_new) l_i(theta).

A step is a pure function `step(state, batch, meta_batch) -> (state, StepInfo)` over a
`ReweightState`; `run` drives it with the one epoch driver (`jdps.loop`: one compiled `lax.scan` an
epoch, padding rows masked, a meta batch of distinct meta examples each step). A
step costs a forward and backward pass, a backward pass through that one (the look-ahead's
meta-gradient) and the update's own forward and backward pass: about three plain steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdps import loop
from jdps.baselines.common import BaselineResult, check_alike
from jdps.data import batching
from jdps.data.dataset import host_arrays
from jdps.errors import InputError, TrainingDivergedError
from jdps.task import Task
from jdps.train import DEFAULT_OPTIMIZER
from jdps.validate import as_key


class ReweightState(NamedTuple):
    """theta (`params`) and its optimizer state; MWN's weight net phi (`net`) and its optimizer state."""

    params: Any
    opt_state: Any
    net: Any = None
    net_opt_state: Any = None


class StepInfo(NamedTuple):
    """Per step: mean training loss of the batch at theta (unweighted), meta loss at the look-ahead
    theta' (for L2RW theta' = theta), and `weights` [b]: b_valid w_i for L2RW (1 is an even share of
    the batch), V(l_i; phi_new) for MWN; 0 on padding rows."""

    loss: jax.Array
    meta_loss: jax.Array
    weights: jax.Array


def _mask(batch, b: int) -> jax.Array:
    return jnp.asarray(batch.get("mask", jnp.ones((b,), bool))).astype(jnp.float32)


def _mean(values, mask):
    return (mask * values).sum() / jnp.maximum(mask.sum(), 1.0)


def _ahead(params, grads, lr):
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def lookahead_meta_grad(loss_fn: Callable, meta_loss_fn: Callable, params, batch, meta_batch, eps,
                        lookahead_lr: float):
    """(L_m(theta'(eps)), g = d L_m(theta'(eps)) / d eps [b]) for theta'(eps) = theta - alpha grad sum_B eps_i l_i."""
    mask = _mask(batch, eps.shape[0])

    def meta_at(e):
        grads = jax.grad(lambda p: jnp.sum(mask * e * loss_fn(p, batch)))(params)
        meta = meta_loss_fn(_ahead(params, grads, lookahead_lr), meta_batch)
        return _mean(meta, _mask(meta_batch, meta.shape[0]))

    return jax.value_and_grad(meta_at)(eps)


def l2rw_weights(g, mask):
    """w = max(-g, 0) over the valid rows, normalised to sum 1 (all 0 when no g_i < 0): [b] -> [b]."""
    w = jnp.maximum(-g, 0.0) * mask
    total = w.sum()
    return jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), 0.0)


def build_l2rw_step(loss_fn: Callable, optimizer: optax.GradientTransformation, *,
                    meta_loss_fn: Callable | None = None, lookahead_lr: float = 0.1) -> Callable:
    """The pure L2RW step `step(state, batch, meta_batch) -> (state, StepInfo)`; `loss_fn(params, batch)
    -> [b]` (and `meta_loss_fn`, default the same) give per-example losses."""
    meta_loss_fn = loss_fn if meta_loss_fn is None else meta_loss_fn

    def step(state: ReweightState, batch, meta_batch):
        b = batch["x"].shape[0]
        mask = _mask(batch, b)
        meta_loss, g = lookahead_meta_grad(loss_fn, meta_loss_fn, state.params, batch, meta_batch,
                                           jnp.zeros((b,), jnp.float32), lookahead_lr)
        w = jax.lax.stop_gradient(l2rw_weights(g, mask))

        def objective(p):
            losses = loss_fn(p, batch)
            return jnp.sum(w * mask * losses), losses

        (_, losses), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = state._replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)
        return new, StepInfo(_mean(losses, mask), meta_loss, w * mask.sum())

    return step


def mwn_init(key, width: int = 100):
    """phi of V(l) = sigmoid(relu(l a + c) . v + d): a ~ N(0, 1) [1, H], v ~ N(0, 1 / H) [H], c = 0, d = 0."""
    if int(width) != width or width < 1:
        raise InputError(f"net_width must be a positive integer, got {width}")
    k1, k2 = jax.random.split(as_key(key))
    return {"hidden": {"kernel": jax.random.normal(k1, (1, width)), "bias": jnp.zeros((width,))},
            "out": {"kernel": jax.random.normal(k2, (width,)) / np.sqrt(width), "bias": jnp.zeros(())}}


def mwn_weight(net, losses):
    """V(l; phi): losses [b] -> weights [b] in (0, 1)."""
    h = jax.nn.relu(losses[:, None] @ net["hidden"]["kernel"] + net["hidden"]["bias"])
    return jax.nn.sigmoid(h @ net["out"]["kernel"] + net["out"]["bias"])


def mwn_meta_grad(loss_fn: Callable, meta_loss_fn: Callable, net, params, batch, meta_batch, lookahead_lr: float):
    """(L_m(theta'(phi)), grad_phi L_m(theta'(phi))) for theta'(phi) = theta - alpha grad mean_B V(l_i; phi) l_i."""
    losses = loss_fn(params, batch)
    mask = _mask(batch, losses.shape[0])
    fed = jax.lax.stop_gradient(losses)

    def meta_at(phi):
        w = mwn_weight(phi, fed)
        grads = jax.grad(lambda p: _mean(w * loss_fn(p, batch), mask))(params)
        meta = meta_loss_fn(_ahead(params, grads, lookahead_lr), meta_batch)
        return _mean(meta, _mask(meta_batch, meta.shape[0]))

    return jax.value_and_grad(meta_at)(net), fed


def build_mwn_step(loss_fn: Callable, optimizer: optax.GradientTransformation,
                   net_optimizer: optax.GradientTransformation, *, meta_loss_fn: Callable | None = None,
                   lookahead_lr: float = 0.1) -> Callable:
    """The pure MWN step `step(state, batch, meta_batch) -> (state, StepInfo)`: phi, then theta."""
    meta_loss_fn = loss_fn if meta_loss_fn is None else meta_loss_fn

    def step(state: ReweightState, batch, meta_batch):
        (meta_loss, net_grads), fed = mwn_meta_grad(loss_fn, meta_loss_fn, state.net, state.params, batch,
                                                    meta_batch, lookahead_lr)
        net_updates, net_opt_state = net_optimizer.update(net_grads, state.net_opt_state, state.net)
        net = optax.apply_updates(state.net, net_updates)
        mask = _mask(batch, fed.shape[0])
        w = jax.lax.stop_gradient(mwn_weight(net, fed))
        grads = jax.grad(lambda p: _mean(w * loss_fn(p, batch), mask))(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        new = ReweightState(optax.apply_updates(state.params, updates), opt_state, net, net_opt_state)
        return new, StepInfo(_mean(fed, mask), meta_loss, w * mask)

    return step


def _counting(step: Callable) -> Callable:
    """`step` as a `jdps.loop` step whose state also sums each example's weight [N] and counts its visits [N]."""

    def counted(key, carry, batch, meta_batch):
        state, total, visits = carry
        state, info = step(state, batch, meta_batch)
        slot = jnp.where(batch["mask"], batch["index"], total.shape[0])  # scatters to row N are dropped
        total = total.at[slot].add(info.weights, mode="drop")
        visits = visits.at[slot].add(1, mode="drop")
        return (state, total, visits), (info.loss, info.meta_loss)

    return counted


def _diverged(epoch: int, step: int, global_step: int) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"reweighted training diverged at epoch {epoch}, step {step}: the loss became NaN or Inf; lower the "
        "learning rate (or lookahead_lr), or clip gradients")


def run(step: Callable, state: ReweightState, train, meta, *, key, epochs: int | None = None,
        batch_size: int, meta_batch_size: int = 100, steps: int | None = None, remainder: str = "pad",
        progress=None, checkpoints=None, on_epoch=None) -> tuple[ReweightState, np.ndarray, dict[str, np.ndarray]]:
    """Run `epochs` epochs (or `steps` steps) of `step` over the training set with the one epoch driver
    (`jdps.loop`: epoch e takes its order and meta batches from fold_in(key, e)). A batch size above N is
    cut to N, a meta batch size above M to M.

    Returns (state, weights [N], history): weights are each example's mean StepInfo weight over its
    visits; history holds `loss` and `meta_loss` [epochs] and `step_loss`, `step_meta_loss` [steps].
    Raises TrainingDivergedError, naming the epoch and step, at the first NaN or Inf loss.
    """
    dt, dm = host_arrays(train, "train"), host_arrays(meta, "meta")
    keys = check_alike(dt, dm)
    arrays = batching.device_arrays(dt)
    meta_arrays = batching.device_arrays({k: dm[k] for k in keys})
    n, m = len(dt["x"]), len(dm["x"])
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")
    b = min(int(batch_size), n)
    if int(meta_batch_size) != meta_batch_size or meta_batch_size < 1:
        raise InputError(f"meta_batch_size must be a positive integer, got {meta_batch_size}")
    carry = (state, jnp.zeros(n, jnp.float32), jnp.zeros(n, jnp.int32))
    (state, total, visits), infos = loop.run(
        _counting(step), carry, arrays, key=key, batch_size=b, epochs=epochs, steps=steps,
        meta_arrays=meta_arrays, meta_batch_size=min(int(meta_batch_size), m), remainder=remainder,
        diverged=_diverged, progress=progress, checkpoints=checkpoints,
        checkpoint=None if on_epoch is None else (lambda e, carry: on_epoch(e, carry[0].params)))
    losses, meta_losses = (np.zeros(0, np.float32),) * 2 if infos is None else infos   # None: all restored
    weights = np.asarray(total) / np.maximum(np.asarray(visits), 1)
    plan = loop.schedule(n, b, epochs=epochs, steps=steps, remainder=remainder)
    bounds = range(plan.steps_per_epoch, len(losses), plan.steps_per_epoch)
    history = {"loss": np.array([x.mean() for x in np.split(losses, bounds) if len(x)]),
               "meta_loss": np.array([x.mean() for x in np.split(meta_losses, bounds) if len(x)]),
               "step_loss": losses, "step_meta_loss": meta_losses}
    return state, weights.astype(np.float32), history


def _steps(train, epochs: int, batch_size: int) -> int:
    """The steps of a run of `epochs` epochs (all of them, also when it resumed part way)."""
    n = len(host_arrays(train, "train")["x"])
    return loop.schedule(n, min(int(batch_size), n), epochs=epochs, remainder="pad").steps


def run_l2rw(task: Task, params, train, meta, *, key, epochs: int, batch_size: int,
             optimizer: optax.GradientTransformation | None = None, meta_batch_size: int = 100,
             lookahead_lr: float = 0.1, checkpoints=None, on_epoch=None) -> BaselineResult:
    """L2RW for epochs * ceil(N / b) steps; weights [N]: each example's mean b_valid w_i over its visits
    (1: an even share of its batch). The normalised weights do not depend on lookahead_lr."""
    optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    step = build_l2rw_step(task.loss_fn, optimizer, lookahead_lr=lookahead_lr)
    state, weights, history = run(step, ReweightState(params, optimizer.init(params)), train, meta, key=key,
                                  epochs=epochs, batch_size=batch_size, meta_batch_size=meta_batch_size,
                                  checkpoints=checkpoints, on_epoch=on_epoch)
    return BaselineResult(state.params, weights, history, {"method": "l2rw", "steps": _steps(train, epochs, batch_size)})


def run_mwn(task: Task, params, train, meta, *, key, epochs: int, batch_size: int,
            optimizer: optax.GradientTransformation | None = None, meta_batch_size: int = 100,
            lookahead_lr: float = 0.1, net_optimizer: optax.GradientTransformation | None = None,
            net_width: int = 100, checkpoints=None, on_epoch=None) -> BaselineResult:
    """Meta-Weight-Net for epochs * ceil(N / b) steps; the weight net starts from `key` and is trained by
    net_optimizer (default adam(1e-3), as Shu et al.). weights [N]: each example's mean V(l_i) over its
    visits; info["net"]: the trained phi."""
    optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    net_optimizer = optax.adam(1e-3) if net_optimizer is None else net_optimizer
    k_net, k_run = jax.random.split(as_key(key))
    net = mwn_init(k_net, net_width)
    step = build_mwn_step(task.loss_fn, optimizer, net_optimizer, lookahead_lr=lookahead_lr)
    state = ReweightState(params, optimizer.init(params), net, net_optimizer.init(net))
    state, weights, history = run(step, state, train, meta, key=k_run, epochs=epochs, batch_size=batch_size,
                                  meta_batch_size=meta_batch_size, checkpoints=checkpoints, on_epoch=on_epoch)
    info = {"method": "mwn", "steps": _steps(train, epochs, batch_size), "net": state.net}
    return BaselineResult(state.params, weights, history, info)
