"""CDS, contrastive data selection (Wang et al. 2018), as a baseline.

1. base model theta_b: the initial parameters trained on Dt for `base_epochs` epochs;
2. meta-tuned model theta_m: theta_b fine-tuned on Dm for `tune_epochs` epochs;
3. score of training example i: the log-likelihood gain of the meta-tuned model over the base model,
       s_i = log p(y_i | x_i; theta_m) - log p(y_i | x_i; theta_b) = l_i(theta_b) - l_i(theta_m);
4. train the initial parameters on Dt and Dm for the budget of steps (`jdps.baselines.common`), P
   passes over the mix; in pass e = 0..P-1 the top ceil(r_e N) examples of Dt by score are kept
   (ties to the lowest index), with the shrinking fraction
       r_e = max(r_floor, 0.5 ** (e / (half_life P))),
   and every meta example; a batch's loss is the mean over its kept rows, so batches shrink with
   r_e, as in Wang et al.'s online selection per mini-batch.

[reconstructed] Wang et al. anneal the kept fraction per step down to a floor; the exponential decay
in passes, its half-life (a share of training) and the defaults r_floor = 0.2, half_life = 0.25 are
this project's. Steps 1 and 2 cost steps beyond the budget (info["scoring_steps"]).
The result's weights [N]: the share of passes each example was kept; info["scores"]: s [N].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdps.baselines.common import BaselineResult, concat, passes, step_budget
from jdps.data.batching import device_arrays
from jdps.data.dataset import host_arrays
from jdps.errors import InputError, TrainingDivergedError
from jdps.selection import ranking
from jdps.task import Task
from jdps.train import DEFAULT_OPTIMIZER, per_example_losses, train_epoch
from jdps.train import train as train_loop
from jdps.validate import as_key, check_fraction


def cds_scores(task: Task, base_params, tuned_params, data) -> np.ndarray:
    """s_i = l_i(base_params) - l_i(tuned_params), the log-likelihood gain of the tuned model -> [N]."""
    return per_example_losses(task, base_params, data) - per_example_losses(task, tuned_params, data)


def keep_fractions(num_passes: int, r_floor: float, half_life: float) -> np.ndarray:
    """r_e = max(r_floor, 0.5 ** (e / (half_life P))) for e = 0..P-1 -> [P]."""
    check_fraction(r_floor, "r_floor")
    if not half_life > 0:
        raise InputError(f"half_life must be > 0 (a share of training, e.g. 0.25), got {half_life}")
    e = np.arange(num_passes)
    return np.maximum(r_floor, 0.5 ** (e / (half_life * num_passes)))


def kept(scores, fractions) -> np.ndarray:
    """Which examples each pass keeps: the top ceil(r N) by score, ties to the lowest index -> bool [P, N]."""
    order = ranking(scores)
    n = len(order)
    masks = np.zeros((len(fractions), n), bool)
    for e, r in enumerate(fractions):
        masks[e, order[: int(np.ceil(r * n))]] = True
    return masks


def run_cds(task: Task, params, train, meta, *, key, epochs: int, batch_size: int,
            optimizer: optax.GradientTransformation | None = None, base_epochs: int | None = None,
            tune_epochs: int = 10, r_floor: float = 0.2, half_life: float = 0.25, on_epoch=None) -> BaselineResult:
    """CDS (module docstring). base_epochs: default max(1, epochs // 4); tune_epochs: passes over Dm to
    fine-tune on (batch size cut to M); `key`: a jax key or an integer seed; optimizer: optax, default
    adam(1e-3), used by all three trainings. info: method, steps, passes, scoring_steps, scores."""
    dt, dm = host_arrays(train, "train"), host_arrays(meta, "meta")
    n, m = len(dt["x"]), len(dm["x"])
    optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    base_epochs = max(1, int(epochs) // 4) if base_epochs is None else base_epochs
    steps = step_budget(n, epochs, batch_size)
    keep_fractions(1, r_floor, half_life)  # checks them before the scoring runs
    k_base, k_tune, k_train = jax.random.split(as_key(key), 3)
    base = train_loop(task, params, dt, key=k_base, epochs=base_epochs, batch_size=batch_size, optimizer=optimizer)
    tuned = train_loop(task, base.params, dm, key=k_tune, epochs=tune_epochs, batch_size=batch_size,
                       optimizer=optimizer)
    scores = cds_scores(task, base.params, tuned.params, dt)
    p = passes(steps, n + m, batch_size)
    masks = kept(scores, keep_fractions(p, r_floor, half_life))

    arrays, b = device_arrays(concat(dt, dm)), min(int(batch_size), n + m)
    rows, opt_state = jnp.arange(n + m, dtype=jnp.int32), optimizer.init(params)
    losses = []
    for e in range(p):
        epoch_key = jax.random.fold_in(k_train, e)  # as jdps.loop derives an epoch's key
        weights = jnp.asarray(np.concatenate([masks[e], np.ones(m, bool)]), jnp.float32)
        params, opt_state, step_losses = train_epoch(params, opt_state, arrays, rows, weights, epoch_key,
                                                loss_fn=task.loss_fn, optimizer=optimizer,
                                                normalize="weights", batch_size=b)
        step_losses = np.asarray(step_losses)
        if not np.isfinite(step_losses).all():
            raise TrainingDivergedError(
                f"CDS training diverged at pass {e + 1}, step {int(np.argmin(np.isfinite(step_losses))) + 1}: "
                "the loss became NaN or Inf; lower the learning rate or clip gradients")
        losses.append(step_losses)
        if on_epoch is not None:
            on_epoch(e + 1, params)
    scoring_steps = len(base.history["step_loss"]) + len(tuned.history["step_loss"])
    history = {"loss": np.array([x.mean() for x in losses]), "step_loss": np.concatenate(losses)}
    info = {"method": "cds", "steps": len(history["step_loss"]), "passes": p, "scoring_steps": scoring_steps,
            "scores": scores}
    return BaselineResult(params, masks.mean(0).astype(np.float32), history, info)
