"""BADS: Bayesian data point selection, by SGLD over the network and one weight per example.

Energy (reconstructed: the paper's exact energy is not published), parameters theta, weights w in [0, 1]^N:

    U(theta, w) = rho sum_i w_i l_i(theta) + sum_j l^m_j(theta) + |theta|^2 / (2 sigma_theta^2) + R(w)

with N training losses l_i, M meta losses l^m_j, R = -log p(w) (`jdps.bads.weight_prior`) and the normaliser
log Z(w) of p(theta | w, D_t) dropped; with `log_z="contrastive"` a meta-free chain theta' estimates its
gradient, so the weights see l_i(theta) - l_i(theta') in place of l_i(theta). With loss_reference="held_out"
the weights see l_i(theta) - c instead, c a running mean of the loss of the meta rows flagged
`meta_batch["reference"]` (which theta does not fit): the term rho c sum_i w_i, constant in theta, tilts
the weights' prior so that an example costing what a clean unseen one costs feels no force.

A step takes a minibatch B (b rows, global indices `batch["index"]`, padding rows masked) and a meta
batch B_m (b_m rows); it is SGLD on each block at one temperature T with the block's own step size
(a constant diagonal preconditioner, so the stationary law stays exp(-U / T)):

  theta, step lr / N (the SGD-like parametrisation: U / N, alpha = lr):
    theta <- theta - lr [rho sum_B w_i grad l_i / b + (M / N) mean_{B_m} grad l^m_j
                         + theta / (N sigma_theta^2)] + sqrt(2 lr T / N) n
    (theta_loss="self_normalised" divides the weighted sum by sum_B w_i instead of b.)
  weights, step eta_w = weight_lr b / N (one visit moves a weight by weight_lr times its gradient);
  the chain variable z is w ("reflect", reflected into [0, 1]) or logit(w) ("logit"):
    offbatch="lazy": only batch weights move, each with the noise missed since its last visit,
      z_i <- z_i - weight_lr [dw/dz rho l_i + R'_z(z_i)] + sqrt(2 eta_w T (t - last_i)) n_i,
      integrated in K = weight_substeps Euler sub-steps (step and noise variance split K ways,
      l_i held fixed), each followed by the reflection:
    offbatch="exact": every weight gets its prior drift and noise every step, batch weights the data:
      z <- z - eta_w [R'_z(z) + (N / b) dw/dz rho l 1_B] + sqrt(2 eta_w T) n
  weight network (weight_param="network", for N too large to visit each weight often):
    w_i = sigmoid(g_phi(f_i)) on stop-gradient features f_i = weight_features(theta, batch) [b, F];
    phi moves like theta with step net_lr / N on rho sum_B w_i l_i / b + mean_B R(w_i) + |phi|^2/(2 N sigma_theta^2).

Readout: after `burn_in` steps, at every `thin`-th step, each visited weight's new value joins its
running mean (a sample at a visit time, chosen independently of the weights); `avg_window` S turns
it into an exponential average over about S samples. theta: a ring of `num_theta_samples` snapshots,
one every `theta_thin` steps (default: an epoch, ceil(N / b)) after burn-in, for posterior-averaged
prediction. Batches come from `jdps.data.batching`; `jdps.bads.sampler` runs the kernel over whole
epochs with the one epoch driver (`jdps.loop`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.base import SamplingAlgorithm
from jax.sharding import NamedSharding, PartitionSpec

from jdps.bads import sgmcmc
from jdps.bads import weight_prior as wp
from jdps.bads.config import BADSConfig
from jdps.errors import InputError
from jdps.validate import as_key

__all__ = ["BADSState", "BADSInfo", "init", "build_kernel", "as_top_level_api", "posterior_mean_weights",
           "theta_samples", "posterior_predictive", "state_shardings"]

class BADSState(NamedTuple):
    """The sampler state; per-example arrays [N] are indexed by global example index.

    params: theta. chain: the weights' chain variables [N] (w for "reflect", logit(w) for "logit") or the
    weight network's parameters phi (read weights with `posterior_mean_weights`). step: int32 [] steps
    taken. last_visit: int32 [N] the step count after each
    weight's last update (lazy per-example weights only, else None). weight_mean: float32 [N] running
    posterior mean of w_i; weight_count: int32 [N] samples in it. shadow: theta' of the contrastive
    chain (else None). theta_ring: params stacked [K, ...], a ring of snapshots (else None); num_theta: int32 []
    snapshots taken. precond: theta_kernel="psgld"'s running mean of squared gradients V, (theta's,
    the shadow chain's or None), else None. reference: float32 [], loss_reference="held_out"'s c (else
    None).
    """

    params: Any
    chain: Any
    step: jax.Array
    last_visit: jax.Array | None
    weight_mean: jax.Array
    weight_count: jax.Array
    shadow: Any
    theta_ring: Any
    num_theta: jax.Array
    precond: Any = None
    reference: jax.Array | None = None


class BADSInfo(NamedTuple):
    """Per step: mean training loss and meta loss of the batch (unweighted), mean batch weight, and
    whether the batch's losses and new weights are finite (a NaN in theta shows in the next step's losses)."""

    loss: jax.Array
    meta_loss: jax.Array
    batch_weight: jax.Array
    finite: jax.Array


def _count(name: str, n) -> int:
    if int(n) != n or n < 1:
        hint = (" BADS needs a non-empty curated meta set as its likelihood: pass at least one meta example"
                if name == "n_meta" else " pass the number of training examples")
        raise InputError(f"{name} must be a positive integer, got {n}.{hint}")
    return int(n)


def _net_init(key, d_in: int, width: int, mean: float):
    return {"hidden": {"kernel": jax.random.normal(key, (d_in, width)) / np.sqrt(d_in),
                       "bias": jnp.zeros((width,))},
            "out": {"kernel": jnp.zeros((width,)), "bias": jnp.asarray(wp.initial_chain(mean, "logit"), jnp.float32)}}


def _net_weight(phi, features):
    """w = sigmoid(relu(f W_1 + b_1) w_2 + b_2): features [b, F] -> [b]."""
    h = jax.nn.relu(features @ phi["hidden"]["kernel"] + phi["hidden"]["bias"])
    return jax.nn.sigmoid(h @ phi["out"]["kernel"] + phi["out"]["bias"])


def init(key, params, n_train: int, config: BADSConfig = BADSConfig(),
         weight_feature_dim: int | None = None) -> BADSState:
    """The state at theta = params and every weight at the prior mean beta (the weight network's
    output bias at logit(beta), its hidden layer random from `key`)."""
    n = _count("n_train", n_train)
    cfg, key = config, as_key(key)
    params = jax.tree.map(lambda p: jnp.asarray(p, jnp.result_type(p)), params)  # no weak types: one compile
    if cfg.weight_param == "network":
        if weight_feature_dim is None:
            raise InputError("weight_param='network' needs weight_feature_dim, the width F of weight_features")
        chain = _net_init(key, _count("weight_feature_dim", weight_feature_dim), cfg.net_width,
                          cfg.weight_prior_mean)
    else:
        chain = jnp.full((n,), wp.initial_chain(cfg.weight_prior_mean, cfg.weight_param), jnp.float32)
    lazy = cfg.weight_param != "network" and cfg.offbatch == "lazy"
    ring = (jax.tree.map(lambda p: jnp.zeros((cfg.num_theta_samples, *jnp.shape(p)), jnp.result_type(p)), params)
            if cfg.num_theta_samples else None)
    return BADSState(
        params=params, chain=chain, step=jnp.zeros((), jnp.int32),
        last_visit=jnp.zeros((n,), jnp.int32) if lazy else None,
        weight_mean=jnp.zeros((n,), jnp.float32), weight_count=jnp.zeros((n,), jnp.int32),
        shadow=jax.tree.map(jnp.array, params) if cfg.log_z == "contrastive" else None,
        theta_ring=ring, num_theta=jnp.zeros((), jnp.int32),
        precond=_precond_init(params, cfg), 
        reference=jnp.zeros((), jnp.float32) if _uses_reference(cfg) else None)


def _uses_reference(cfg: BADSConfig) -> bool:
    """A loss reference c serves the absolute weight force; the contrastive log Z is relative already."""
    return cfg.loss_reference == "held_out" and cfg.log_z == "dropped"


def _precond_init(params, cfg: BADSConfig):
    if cfg.theta_kernel != "psgld":
        return None
    zeros = jax.tree.map(jnp.zeros_like, params)
    return (zeros, zeros if cfg.log_z == "contrastive" else None)


def _rows(batch, n: int | None, name: str):
    """(index int32 [b] or None, mask bool [b]) of a batch; masked rows are ignored."""
    if not isinstance(batch, Mapping) or not batch:
        raise InputError(f"{name} must be a dict of per-example arrays, as jdps.data.batching.gather builds")
    index = batch.get("index")
    if n is not None and index is None:
        raise InputError(f"{name} has no 'index' (global example indices); build batches with "
                         "jdps.data.batching.gather(arrays, index)")
    b = len(index) if index is not None else len(next(iter(batch.values())))
    if b == 0:
        raise InputError(f"{name} has no rows; pass a batch size >= 1")
    mask = batch.get("mask", jnp.ones((b,), bool))
    if n is None:
        return None, mask
    index = jnp.asarray(index, jnp.int32)
    return index, mask & (index < n)


def _sq_norm(tree):
    return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))


def _per_example(loss_fn, params, batch, b: int, name: str):
    losses = loss_fn(params, batch)
    if jnp.shape(losses) != (b,):
        raise InputError(f"the {name} loss_fn must return one loss per example, shape ({b},); got "
                         f"{jnp.shape(losses)}. Return per-example losses, not their mean")
    return losses.astype(jnp.float32)


def _visit(key, z, force, w_bar, share, cfg: BADSConfig):
    """Lazy visit of batch weights z [b] under the data force rho l [b]: time weight_lr of the SDE
    dz = -(dw/dz force + R'_z(z)) dt + sqrt(2 T) dW with noise variance scaled by share = gap b / N
    [b] (the steps missed, in visits), in `weight_substeps` Euler steps, each reflected."""
    param, prior = cfg.weight_param, (cfg.weight_prior, cfg.weight_prior_mean, cfg.weight_prior_std)
    h = cfg.weight_lr / cfg.weight_substeps
    sd = jnp.sqrt(2 * h * cfg.temperature * share)
    keys = jax.random.split(key, cfg.weight_substeps)

    def substep(i, z):
        drift = wp.dweight(z, param) * force + wp.prior_grad(z, w_bar, param, *prior)
        return wp.project(z - h * drift + sd * jax.random.normal(keys[i], z.shape), param)

    return jax.lax.fori_loop(0, cfg.weight_substeps, substep, z)


def _sweep(key, z, slot, force, w_bar, share, cfg: BADSConfig):
    """Exact off-batch step of all weights z [N], eta_w = weight_lr share (share = b / N): prior drift
    and noise for every weight, the data force (N / b) dw/dz rho l for the batch rows `slot` [b]."""
    param, prior = cfg.weight_param, (cfg.weight_prior, cfg.weight_prior_mean, cfg.weight_prior_std)
    eta_w = cfg.weight_lr * share
    drift = wp.prior_grad(z, w_bar, param, *prior)
    drift = drift.at[slot].add(wp.dweight(z[jnp.minimum(slot, len(z) - 1)], param) * force / share, mode="drop")
    noise = jax.random.normal(key, z.shape)
    return wp.project(z - eta_w * drift + jnp.sqrt(2 * eta_w * cfg.temperature) * noise, param)


def build_kernel(loss_fn: Callable, meta_loss_fn: Callable, n_train: int, n_meta: int,
                 config: BADSConfig = BADSConfig(), weight_features: Callable | None = None) -> Callable:
    """The pure step `kernel(rng_key, state, batch, meta_batch) -> (state, BADSInfo)`.

    `loss_fn(params, batch) -> [b]` and `meta_loss_fn(params, meta_batch) -> [b_m]` give per-example
    losses; `weight_features(params, batch) -> [b, F]` feeds the weight network.
    """
    cfg, n, m_total = config, _count("n_train", n_train), _count("n_meta", n_meta)
    if cfg.weight_param == "network" and weight_features is None:
        raise InputError("weight_param='network' needs weight_features(params, batch) -> [b, F]")
    integrator = sgmcmc.overdamped_langevin(cfg.noise)
    temp, per_example = cfg.temperature, cfg.weight_param != "network"
    theta_temp = temp if cfg.theta_temperature is None else cfg.theta_temperature  # theta's (and theta''s) T
    prior = (cfg.weight_prior, cfg.weight_prior_mean, cfg.weight_prior_std)
    # the meta set's mean loss enters U / N with weight M / N (its likelihood), or meta_strength * rho
    meta_coef = m_total / n if cfg.meta_strength is None else cfg.meta_strength * cfg.rho
    reference = _uses_reference(cfg)

    def langevin(key, position, grad_u_over_n, lr, temp=temp):
        # SGLD on U with step lr / N, given grad(U / N): z + (lr / N) (-N grad) + sqrt(2 T lr / N) n;
        # lr may be a pytree of arrays like position (a diagonal preconditioner)
        steps = jax.tree.map(lambda s: s / n, lr)
        return integrator(key, position, jax.tree.map(lambda g: -n * g, grad_u_over_n), steps, temp)

    def theta_move(key, position, grad_u_over_n, v, t):
        """theta's step: SGLD with step lr / N, or pSGLD (Li et al. 2016, its correction term dropped as
        there): V <- a V + (1 - a) g^2, step lr / (N (eps + sqrt(V / (1 - a^t)))) per coordinate (RMSprop's
        preconditioner, bias-corrected as Adam's), g = grad(U / N)."""
        if cfg.theta_kernel == "sgld":
            return langevin(key, position, grad_u_over_n, cfg.lr, theta_temp), v
        a, debias = cfg.precond_decay, 1.0 - cfg.precond_decay ** t.astype(jnp.float32)
        scale = jnp.sqrt(2.0 * theta_temp * cfg.lr / n)   # the noise of step lr h / N at theta's T
        noise = sgmcmc.leaf_noise(key, position, cfg.noise)

        v = jax.tree.map(lambda v, g: a * v + (1 - a) * jnp.square(g), v, grad_u_over_n)

        def move(z, g, v, e):  # XLA fuses this with V's update: one pass per leaf
            h = 1.0 / (cfg.precond_eps + jnp.sqrt(v / debias))
            return z - cfg.lr * h * g + scale * jnp.sqrt(h) * e

        return jax.tree.map(move, position, grad_u_over_n, v, noise), v

    def kernel(rng_key, state: BADSState, batch, meta_batch):
        index, mask = _rows(batch, n, "batch")
        _, meta_mask = _rows(meta_batch, None, "meta_batch")
        b = index.shape[0]
        held_out = meta_batch.get("reference") if reference else None
        fit_mask = meta_mask if held_out is None else meta_mask & ~held_out   # the meta rows theta fits
        ref_mask = meta_mask if held_out is None else meta_mask & held_out    # the rows c is measured on
        m, mm, mf = mask.astype(jnp.float32), meta_mask.astype(jnp.float32), fit_mask.astype(jnp.float32)
        nb, nbm, nbf = jnp.maximum(m.sum(), 1.0), jnp.maximum(mm.sum(), 1.0), jnp.maximum(mf.sum(), 1.0)
        t = state.step + 1
        k_theta, k_shadow, k_w = jax.random.split(rng_key, 3)
        safe = jnp.minimum(index, n - 1)
        if per_example:
            z_b = state.chain[safe]
            w_b = wp.weight_of(z_b, cfg.weight_param)
        else:
            features = jax.lax.stop_gradient(weight_features(state.params, batch))
            w_b = _net_weight(state.chain, features)
        w_b = jax.lax.stop_gradient(w_b)

        def train_energy(params):  # minibatch estimate of (rho sum_i w_i l_i + |theta|^2 / 2 sigma^2) / N
            losses = _per_example(loss_fn, params, batch, b, "training")
            denom = jnp.maximum((m * w_b).sum(), 1e-12) if cfg.theta_loss == "self_normalised" else nb
            value = cfg.rho * (m * w_b * losses).sum() / denom + _sq_norm(params) / (2 * n * cfg.prior_std**2)
            return value, losses

        def theta_energy(params):  # ... plus sum_j l^m_j / N
            value, losses = train_energy(params)
            meta = _per_example(meta_loss_fn, params, meta_batch, meta_mask.shape[0], "meta")
            coef = meta_coef
            if cfg.theta_loss == "filled":  # the meta set fills the data mass the batch weights remove
                coef = coef + cfg.rho * (1.0 - (m * w_b).sum() / nb)
            return value + coef * (mf * meta).sum() / nbf, (losses, meta)

        (_, (losses, meta)), grad = jax.value_and_grad(theta_energy, has_aux=True)(state.params)
        v_theta, v_shadow = state.precond if state.precond is not None else (None, None)
        params, v_theta = theta_move(k_theta, state.params, grad, v_theta, t)
        data, shadow = losses, state.shadow
        if cfg.log_z == "contrastive":
            (_, shadow_losses), shadow_grad = jax.value_and_grad(train_energy, has_aux=True)(state.shadow)
            shadow, v_shadow = theta_move(k_shadow, state.shadow, shadow_grad, v_shadow, t)
            data = losses - shadow_losses
        data = jax.lax.stop_gradient(data)
        ref_state = state.reference
        if reference:  # c: a running mean of the held-out rows' mean loss, from 0 (so it ramps up)
            rf = ref_mask.astype(jnp.float32)
            batch_c = (rf * jax.lax.stop_gradient(meta)).sum() / jnp.maximum(rf.sum(), 1.0)
            a = cfg.reference_decay
            ref_state = jnp.where(rf.sum() > 0, a * ref_state + (1 - a) * batch_c, ref_state)
            data = data - ref_state

        slot = jnp.where(mask, index, n)  # scatters to row n are dropped
        last_visit = state.last_visit
        if not per_example:
            def net_energy(phi):  # minibatch estimate of (rho sum_i w_i l_i + R(w) + |phi|^2 / 2 sigma^2) / N
                w = _net_weight(phi, features)
                return (cfg.rho * (m * data * w).sum() / nb + wp.batch_prior_energy(w, mask, *prior)
                        + _sq_norm(phi) / (2 * n * cfg.prior_std**2))

            weights = langevin(k_w, state.chain, jax.grad(net_energy)(state.chain), cfg.net_lr)
            w_new = _net_weight(weights, features)
        elif cfg.weight_lr == 0:  # frozen weights: a chain on theta alone
            weights, w_new = state.chain, w_b
        else:
            w_bar = (jnp.mean(wp.weight_of(state.chain, cfg.weight_param))
                     if cfg.weight_prior == "mean_penalty" else None)
            if cfg.offbatch == "lazy":
                gap = (t - state.last_visit[safe]).astype(jnp.float32)
                z_new = _visit(k_w, z_b, cfg.rho * data, w_bar, gap * b / n, cfg)
                weights = state.chain.at[slot].set(z_new, mode="drop")
                last_visit = state.last_visit.at[slot].set(t, mode="drop")
            else:
                weights = _sweep(k_w, state.chain, slot, cfg.rho * data, w_bar, b / n, cfg)
                z_new = weights[safe]
            w_new = wp.weight_of(z_new, cfg.weight_param)

        record = (t > cfg.burn_in) & ((t - cfg.burn_in) % cfg.thin == 0)
        count = state.weight_count[safe] + 1
        div = count if cfg.avg_window is None else jnp.minimum(count, cfg.avg_window)
        mean = state.weight_mean[safe] + (w_new - state.weight_mean[safe]) / div
        target = jnp.where(record, slot, n)
        weight_mean = state.weight_mean.at[target].set(mean, mode="drop")
        weight_count = state.weight_count.at[target].set(count, mode="drop")

        ring, num_theta = state.theta_ring, state.num_theta
        if cfg.num_theta_samples:
            every = cfg.theta_thin or -(-n // b)  # one padded epoch
            take = (t > cfg.burn_in) & ((t - cfg.burn_in) % every == 0)
            at = num_theta % cfg.num_theta_samples
            ring = jax.lax.cond(take, lambda r: jax.tree.map(lambda r, p: r.at[at].set(p), r, params),
                                lambda r: r, ring)  # written on snapshot steps only (once an epoch)
            num_theta = num_theta + take.astype(jnp.int32)

        # the batch's losses (a NaN in theta shows in the next step's) and the new weights: no pass over theta
        finite = (jnp.all(jnp.isfinite(jnp.where(mask, w_new, 0.0)))
                  & jnp.all(jnp.isfinite(jnp.where(mask, losses, 0.0))))
        finite &= jnp.all(jnp.isfinite(jnp.where(meta_mask, meta, 0.0)))
        precond = None if state.precond is None else (v_theta, v_shadow)
        new = BADSState(params, weights, t, last_visit, weight_mean, weight_count, shadow, ring, num_theta, precond,
                        ref_state)
        info = BADSInfo((m * losses).sum() / nb, (mm * meta).sum() / nbm, (m * w_b).sum() / nb, finite)
        return new, info

    return kernel


def as_top_level_api(task, meta_task, n_train: int, n_meta: int, config: BADSConfig | None = None, *,
                     weight_features: Callable | None = None,
                     weight_feature_dim: int | None = None) -> SamplingAlgorithm:
    """Bind a task into `SamplingAlgorithm(init, step)`.

    `task` (and `meta_task`; None: the same) is a jdps `Task` or a `loss_fn(params, batch) -> [b]`.
    `init(key, params) -> BADSState`; `step(key, state, batch, meta_batch) -> (BADSState, BADSInfo)`.
    """
    config = BADSConfig() if config is None else config
    loss_fn = getattr(task, "loss_fn", task)
    meta_loss_fn = loss_fn if meta_task is None else getattr(meta_task, "loss_fn", meta_task)
    kernel = build_kernel(loss_fn, meta_loss_fn, n_train, n_meta, config, weight_features)

    def init_fn(key, params):
        return init(key, params, n_train, config, weight_feature_dim)

    def step_fn(rng_key, state, batch, meta_batch):
        return kernel(rng_key, state, batch, meta_batch)

    step_fn.config, step_fn.n_train, step_fn.n_meta = config, int(n_train), int(n_meta)  # read by run_epochs
    return SamplingAlgorithm(init_fn, step_fn)


def posterior_mean_weights(state: BADSState) -> np.ndarray:
    """The posterior-mean weight of every example [N]; every example needs at least one sample."""
    from jdps.distributed import to_host

    count = to_host(state.weight_count)        # a mesh's shards, from every process
    missing = int((count == 0).sum())
    if missing:
        raise InputError(f"{missing} of {len(count)} weights have no posterior sample yet; run more steps "
                         "after burn_in (or lower burn_in) so that every example is visited after it")
    return to_host(state.weight_mean)


def theta_samples(state: BADSState):
    """The theta snapshots taken so far, stacked: params with a leading axis [k] (k <= num_theta_samples)."""
    if state.theta_ring is None or int(state.num_theta) == 0:
        raise InputError("no theta snapshots yet: set num_theta_samples >= 1 and run past burn_in + theta_thin steps")
    k = min(int(state.num_theta), jax.tree.leaves(state.theta_ring)[0].shape[0])
    return jax.tree.map(lambda r: r[:k], state.theta_ring)


def posterior_predictive(apply_fn: Callable, state: BADSState, x, link: Callable = jax.nn.softmax):
    """Posterior-averaged prediction: mean over theta snapshots of link(apply_fn(theta, x)) -> [B, ...]."""
    return jnp.mean(jax.vmap(lambda p: link(apply_fn(p, x)))(theta_samples(state)), axis=0)


def state_shardings(state: BADSState, mesh, data_axis: str = "data") -> BADSState:
    """NamedShardings for `state`: per-example arrays [N] over `data_axis`, everything else replicated."""
    rep, rows = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(data_axis))
    like = lambda tree, s: jax.tree.map(lambda _: s, tree)  # noqa: E731
    per_example = isinstance(state.chain, jax.Array) and state.chain.shape == state.weight_mean.shape
    return BADSState(
        params=like(state.params, rep), chain=like(state.chain, rows if per_example else rep),
        step=rep, last_visit=like(state.last_visit, rows), weight_mean=rows, weight_count=rows,
        shadow=like(state.shadow, rep), theta_ring=like(state.theta_ring, rep), num_theta=rep,
        precond=like(state.precond, rep), reference=like(state.reference, rep))
