"""TRAK (Park et al. 2023): attribution by projected margin gradients over an ensemble of models.

For model m of the ensemble (theta_m) and the correct-class margin f(z; theta) = log p_y - log(1 - p_y):

    phi_m(z) = P_m^T grad_theta f(z; theta_m)    [D]: per Dense layer vec(P_in^T g P_out), the factored
                                                 projection of the layer's gradient from its taps (the
                                                 gradient itself is never formed); per layer with m inputs
                                                 (+1 for the bias) and n outputs, k_out = min(n, isqrt(d)),
                                                 k_in = min(m, d // k_out), so D is about d per layer
    Phi_m = [phi_m(z_1); ...; phi_m(z_N)]         [N, D]  the training set
    K_m = Phi_m^T Phi_m + lambda_m I,             lambda_m = damping tr(Phi_m^T Phi_m) / D  (the after-kernel)
    Q_m = diag(1 - p_m(y_i | x_i))                the reweighting
    tau(q, i) = [(1/M) sum_m phi_m(q)^T K_m^{-1} phi_m(z_i)] [(1/M) sum_m (1 - p_m(y_i | x_i))]    [Q, N]

Higher tau: training on z_i raises the query's margin more (the sign the LDS expects). Each model gets its
own projection (key fold_in(key, m)). The ensemble is a list of parameter pytrees: independently trained
models (`jdps.metrics.train_many`), or the theta samples of one SGLD chain (`sgld_samples`), so one run
gives an ensemble:

    theta <- theta - lr [mean_B grad l_i + theta / (N sigma^2)] + sqrt(2 lr T / N) n,   n ~ N(0, I)

(SGLD on the posterior exp(-U / T), U = sum_i l_i + |theta|^2 / (2 sigma^2), step lr / N; `jdps.bads.sgmcmc`),
run by the one epoch driver; after `burn_in` epochs a sample is kept every `thin` epochs.
"""

from __future__ import annotations

import math
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from jdps import loop
from jdps.bads.sgmcmc import overdamped_langevin
from jdps.data.batching import device_arrays, scoring_batches
from jdps.data.dataset import host_arrays
from jdps.errors import InputError, TrainingDivergedError
from jdps.gradients import factored as fa
from jdps.gradients import param_filter as pf
from jdps.influence.scores import _collect
from jdps.losses import margin
from jdps.task import Task
from jdps.validate import as_key, positive_int


@lru_cache(maxsize=16)
def margin_task(task: Task) -> Task:
    """The task whose per-example output is the correct-class margin f (one object per task: one compile)."""
    if task.model is None:
        raise InputError("TRAK projects the gradients of the model's margin: build the task with "
                         "Task.from_model(model, output_loss)")
    out = lambda logits, batch: margin(logits, batch["y"])
    return Task.from_model(task.model, out)


def layer_dims(params, layers: dict, d: int) -> tuple:
    """((layer, (kernel, bias), (k_in, k_out)), ...) for the selected Dense layers: about d features each."""
    leaves, dims = pf.flat(params), []
    for layer, (kernel, bias) in layers.items():
        d_in, d_out = np.shape(leaves[f"{layer}/kernel"])
        m = d_in * kernel + bias
        k_out = min(d_out, max(1, math.isqrt(d)))
        dims.append((layer, (kernel, bias), (min(m, max(1, d // k_out)), k_out)))
    return tuple(dims)


@partial(jax.jit, static_argnames=("task", "dims"))
def _features(params, batch, key, *, task, dims):
    """(phi [B, D], 1 - p_y [B]) of one batch: factored projections of the margin gradients."""
    taps = fa.taps(task, params, batch, {layer: kb for layer, kb, _ in dims})
    b = batch["x"].shape[0]
    feats = []
    for layer, _, k in dims:
        a, delta = taps[layer]
        p_in, p_out = fa.layer_factors(key, layer, a.shape[-1], delta.shape[-1], k)
        feats.append(jnp.einsum("btk,btl->bkl", a @ p_in, delta @ p_out).reshape(b, -1))
    logits = task.model.apply(params, batch["x"]).astype(jnp.float32)
    p = jnp.take_along_axis(jax.nn.softmax(logits, -1), batch["y"][:, None].astype(jnp.int32), -1)[:, 0]
    return jnp.concatenate(feats, axis=1), 1.0 - p


def features(task, params, data, *, key, d: int = 1024, param_filter=None, batch_size: int = 512):
    """(Phi [N, D], 1 - p_y [N]) of every example of `data` (x, y), in index order, for one model."""
    mtask = margin_task(task)
    first = next(iter(scoring_batches(data, batch_size, "data")))
    _, layers, rest = fa.dense_selection(mtask, params, first, param_filter, "TRAK")
    if rest:
        raise InputError(f"TRAK's factored projection covers Dense kernels and biases only, but the filter also "
                         f"selects {rest}; narrow the filter to Dense layers")
    dims = layer_dims(params, layers, positive_int("d", d))
    return _collect(lambda batch: _features(params, batch, key, task=mtask, dims=dims), data, batch_size, "data")


@jax.jit
def _kernel_scores(phi_train, phi_query, damping):
    """phi_query K^{-1} phi_train^T [Q, N], K = Phi^T Phi + damping tr(Phi^T Phi) / D I (Cholesky)."""
    k = phi_train.T @ phi_train
    lam = damping * jnp.trace(k) / k.shape[0]
    factor = jax.scipy.linalg.cho_factor(k + lam * jnp.eye(k.shape[0], dtype=k.dtype))
    return jax.scipy.linalg.cho_solve(factor, phi_query.T).T @ phi_train.T


def model_terms(task, params, train, query, *, key, d: int = 1024, damping: float = 1e-3, param_filter=None,
                batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """One model's terms: (phi(q)^T K^{-1} phi(z_i) [Q, N], 1 - p_y(z_i) [N]); `scores` averages each over
    the ensemble and multiplies the averages."""
    if not damping >= 0:
        raise InputError(f"damping must be >= 0, got {damping}")
    train, query = host_arrays(train, "training set"), host_arrays(query, "query set")
    phi, one_minus_p = features(task, params, train, key=key, d=d, param_filter=param_filter, batch_size=batch_size)
    phi_q, _ = features(task, params, query, key=key, d=d, param_filter=param_filter, batch_size=batch_size)
    return (np.asarray(_kernel_scores(jnp.asarray(phi), jnp.asarray(phi_q), damping), np.float64),
            np.asarray(one_minus_p, np.float64))


def scores(task, ensemble, train, query, *, key, d: int = 1024, damping: float = 1e-3, param_filter=None,
           batch_size: int = 512) -> np.ndarray:
    """TRAK scores tau [Q, N] of the training examples on the query examples (module docstring) for an
    `ensemble`: a list of parameter pytrees. key: the projections' (model m: fold_in(key, m))."""
    ensemble = list(ensemble) if isinstance(ensemble, (list, tuple)) else [ensemble]
    if not ensemble:
        raise InputError("TRAK needs at least one model in its ensemble")
    key = as_key(key)
    total, q_weight = 0.0, 0.0
    for m, params in enumerate(ensemble):
        s, w = model_terms(task, params, train, query, key=jax.random.fold_in(key, m), d=d, damping=damping,
                           param_filter=param_filter, batch_size=batch_size)
        total, q_weight = total + s, q_weight + w
    return (total / len(ensemble)) * (q_weight / len(ensemble))[None, :]


@lru_cache(maxsize=16)
def sgld_step(loss_fn, n: int, lr: float, temperature: float, prior_std: float):
    """The `jdps.loop` step of SGLD on the training posterior (module docstring); info: the batch's loss."""
    integrator = overdamped_langevin()

    def step(key, params, batch, meta_batch):
        def mean_loss(p):
            losses = jnp.where(batch["mask"], loss_fn(p, batch), 0.0)
            return losses.sum() / jnp.maximum(batch["mask"].sum(), 1)
        loss, g = jax.value_and_grad(mean_loss)(params)
        drift = jax.tree.map(lambda gi, th: -(n * gi + th / prior_std ** 2), g, params)
        return integrator(key, params, drift, lr / n, temperature), loss

    return step


def sgld_samples(task, params, data, *, key, samples: int, burn_in: int = 1, thin: int = 1, lr: float = 0.05,
                 temperature: float = 1.0, prior_std: float = 1.0, batch_size: int = 128) -> list:
    """`samples` theta samples of one SGLD chain started at `params` (a trained model): burn_in epochs, then one
    sample every `thin` epochs (burn_in + samples thin epochs in all, ceil(N / batch_size) steps each)."""
    host = host_arrays(data, "data")
    n = len(host["x"])
    samples, thin = positive_int("samples", samples), positive_int("thin", thin)
    if int(burn_in) != burn_in or burn_in < 0:
        raise InputError(f"burn_in must be an integer >= 0 (epochs), got {burn_in}")
    if not (lr > 0 and temperature >= 0 and prior_std > 0):
        raise InputError(f"SGLD needs lr > 0, temperature >= 0 and prior_std > 0; got {lr}, {temperature}, {prior_std}")
    kept = []

    def keep(epoch, state):
        if epoch > burn_in and (epoch - burn_in) % thin == 0:
            kept.append(state)

    def diverged(epoch, step, global_step):
        return TrainingDivergedError(f"the SGLD chain diverged at epoch {epoch}, step {step}: lower its lr ({lr}) "
                                     "or its temperature")

    loop.run(sgld_step(task.loss_fn, n, float(lr), float(temperature), float(prior_std)), params,
             device_arrays(host), key=key, batch_size=min(int(batch_size), n), epochs=int(burn_in) + samples * thin,
             checkpoint=keep, diverged=diverged)
    return kept
