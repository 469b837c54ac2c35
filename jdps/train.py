"""The training loop every experiment uses: optax on a (weighted) subset, and masked evaluation.

Each epoch is one jit-compiled `lax.scan` of the one epoch driver (`jdps.loop`) over fixed-shape
minibatches: a fresh permutation of the subset from the epoch's key, cut into n // batch_size batches
(the last partial batch dropped, or padded and masked with remainder="pad"). With per-example weights w (1 by default)
the loss of a minibatch B is

    normalize="batch":    L_B = sum_{i in B} w_i l_i(params) / |B|
    normalize="weights":  L_B = sum_{i in B} w_i l_i(params) / sum_{i in B} w_i  (self-normalised)

"batch" is an unbiased estimate of (1/n) sum_i w_i l_i over the subset; "weights" keeps the step size
independent of the scale of w. A batch is `batching.gather`'s dict: the data's numeric per-example
arrays plus `index` [B] (global indices, rows of the full data) and `mask` [B]. Evaluation scores every
example once, in padded batches whose padding is masked.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any, Literal, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdps import loop
from jdps.data.batching import device_arrays, gather, scoring_indices
from jdps.data.dataset import Dataset, host_arrays
from jdps.errors import InputError, TrainingDivergedError
from jdps.task import Task
from jdps.validate import check_finite

Data = Dataset | Mapping[str, Any]
DEFAULT_OPTIMIZER = optax.adam(1e-3)


class TrainResult(NamedTuple):
    """Trained `params`, the final optimizer state and the per-epoch `history`.

    history: `loss` [epochs] (mean minibatch loss L_B of each epoch), `step_loss` [epochs * steps] and,
    (a resumed run: of the epochs run after the resume only)
    with eval data, `eval_loss`, `eval_accuracy`, `eval_balanced_accuracy` [epochs] (as `evaluate` gives).
    """

    params: Any
    opt_state: Any
    history: dict[str, np.ndarray]


def _check_indices(indices, n: int) -> np.ndarray:
    if indices is None:
        return np.arange(n)
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise InputError(f"indices must be a 1-d array of integer example indices, got {idx.dtype} {idx.shape}")
    if idx.size == 0:
        raise InputError("indices is empty: the subset to train on has no examples; select at least one")
    if idx.min() < 0 or idx.max() >= n:
        raise InputError(f"indices must lie in [0, {n}) (rows of the data), got min {idx.min()}, max {idx.max()}")
    return idx


def _check_weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n, np.float32)
    w = np.asarray(weights)
    if w.ndim != 1 or len(w) != n:
        raise InputError(f"weights has shape {w.shape} but the data has {n} examples; pass one weight per "
                         "example of the full data (indexed by global index), not per example of the subset")
    if not np.issubdtype(w.dtype, np.number) or not np.isfinite(w).all():
        raise InputError("weights must be finite numbers; replace NaN/Inf weights (e.g. np.nan_to_num)")
    if (w < 0).any():
        raise InputError(f"weights must be >= 0, got {int((w < 0).sum())} negative value(s), first at index "
                         f"{int(np.flatnonzero(w < 0)[0])}; clip them with np.maximum(w, 0)")
    return w.astype(np.float32)


@lru_cache(maxsize=64)
def train_step(loss_fn: Callable, optimizer: optax.GradientTransformation, normalize: str) -> Callable:
    """The `jdps.loop` step of plain (weighted) training: state (params, opt_state, weights [N] by global
    index), one optax update on the weighted loss of the module docstring; info: the batch's loss. One
    function object per (loss_fn, optimizer, normalize), so its compiled epoch is reused."""

    def objective(p, weights, batch):
        mask = batch["mask"]
        w = jnp.where(mask, weights[batch["index"]], 0.0)
        losses = jnp.where(mask, loss_fn(p, batch), 0.0)
        denom = mask.sum() if normalize == "batch" else w.sum()
        return jnp.sum(w * losses) / jnp.where(denom > 0, denom, 1.0)

    def step(key, state, batch, meta_batch):
        params, opt_state, weights = state
        loss, grads = jax.value_and_grad(objective)(params, weights, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, weights), loss

    return step


def train_epoch(params, opt_state, arrays, subset, weights, key, *, loss_fn, optimizer, normalize, batch_size,
                remainder: str = "pad"):
    """One compiled pass (`jdps.loop.epoch`) over the rows `subset` [n] of `arrays`, in minibatches drawn
    from `key`, each step an optax update on the weighted loss of the module docstring (`weights` [N] by
    global index); returns (params, opt_state, minibatch losses [steps]). `train` runs the same step; a
    caller that changes the weights or the subset between passes, keeping the optimizer state, calls this."""
    step = train_step(loss_fn, optimizer, normalize)
    (params, opt_state, _), losses = loop.epoch(step, key, (params, opt_state, weights), arrays, subset,
                                                batch_size=batch_size, remainder=remainder)
    return params, opt_state, losses


def _diverged(epoch: int, step: int, global_step: int) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"the training loss became NaN or Inf at epoch {epoch}, step {step} (step {global_step} of the run); "
        "lower the learning rate, or clip gradients with optax.chain(optax.clip_by_global_norm(1.0), ...), "
        "and check the inputs are scaled")


def train(task: Task, params, data: Data, *, key, epochs: int | None = None, steps: int | None = None,
          batch_size: int, optimizer: optax.GradientTransformation | None = None, indices=None, weights=None,
          normalize: Literal["batch", "weights"] = "batch", eval_data: Data | None = None,
          eval_batch_size: int = 1024, remainder: str = "pad", progress=None, checkpoints=None,
          on_epoch=None, mesh=None) -> TrainResult:
    """Train `params` on the rows `indices` of `data` (all by default) for `epochs` epochs or `steps` steps.

    key: a jax key or an integer seed (the minibatch order; epoch e from fold_in(key, e), `jdps.loop`);
    optimizer: optax, default adam(1e-3); weights: one weight >= 0 per example of the full data [N] (by
    global index); normalize: see the module docstring; remainder: "drop" or "pad" the last partial
    batch (`jdps.loop`). A batch_size above the subset size is cut to it. With `eval_data`, `evaluate`
    runs after every epoch; `progress(epoch, epochs, step, info)` is called between epochs (True: an
    epoch bar with the loss, rate and ETA, jdps.progress); with
    `checkpoints` (a `jdps.checkpoint.Checkpoints`) the run resumes from its latest saved epoch;
    `on_epoch(epoch, params)` sees the parameters after every epoch (e.g. to keep snapshots). Raises
    TrainingDivergedError, naming the epoch and step, when the loss becomes NaN or Inf. The compiled
    epoch is cached on (task.loss_fn, optimizer, normalize, batch size): pass the same objects to reuse it.
    mesh: data-parallel on a `jax.sharding.Mesh` (`jdps.distributed.make_mesh`): the rows and weights split
    over 'data' when its size divides N (else replicated), every batch split over it when it divides the
    batch size, the parameters and optimizer state replicated (matrices split over a 'model' axis).
    """
    host = host_arrays(data, "data")
    n = len(host["x"])
    idx = _check_indices(indices, n)
    w = _check_weights(weights, n)
    if normalize not in ("batch", "weights"):
        raise InputError(f"normalize must be 'batch' (sum w l / |B|) or 'weights' (sum w l / sum w), got {normalize!r}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")
    if not w[idx].any():
        raise InputError("every weight on the training subset is zero, so there is nothing to train on; "
                         "give some examples a positive weight or leave them out of indices")
    check_finite("data 'x'", host["x"][idx])
    arrays, subset, w = device_arrays(host), jnp.asarray(idx, jnp.int32), jnp.asarray(w)
    optimizer = DEFAULT_OPTIMIZER if optimizer is None else optimizer
    b = min(int(batch_size), len(idx))
    history: dict[str, Any] = {}

    def after_epoch(epoch, state):  # the epoch-boundary hook
        if eval_data is not None:
            for name, value in evaluate(task, state[0], eval_data, eval_batch_size).items():
                history.setdefault(f"eval_{name}", []).append(value)
        if on_epoch is not None:
            on_epoch(epoch, state[0])

    batch_sharding = None
    if mesh is not None:
        params, arrays, w, batch_sharding = _on_mesh(mesh, params, arrays, w, b)
    state = (params, optimizer.init(params), w)
    (params, opt_state, _), losses = loop.run(
        train_step(task.loss_fn, optimizer, normalize), state, arrays, key=key, epochs=epochs, steps=steps,
        batch_size=b, subset=subset, remainder=remainder, diverged=_diverged,
        checkpoint=after_epoch, progress="train" if progress is True else progress, checkpoints=checkpoints,
        batch_sharding=batch_sharding)
    per_epoch = loop.schedule(len(idx), b, epochs=epochs, steps=steps, remainder=remainder).steps_per_epoch
    losses = np.zeros(0, np.float32) if losses is None else losses    # None: every epoch restored
    history["loss"] = [chunk.mean() for chunk in np.split(losses, range(per_epoch, len(losses), per_epoch))
                       if len(chunk)]
    history["step_loss"] = losses
    return TrainResult(params, opt_state, {k: np.asarray(v) for k, v in history.items()})


def _on_mesh(mesh, params, arrays: dict, w, batch_size: int):
    """(params, arrays, weights, batch sharding) of a data-parallel run on `mesh` (see `train`)."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jdps import distributed as dist

    shards, n = dist.data_size(mesh), len(w)
    rows = NamedSharding(mesh, P(dist.DATA) if n % shards == 0 else P())
    arrays = {k: jax.device_put(np.asarray(v), rows) for k, v in arrays.items()}
    w = jax.device_put(np.asarray(w), rows)
    batch = NamedSharding(mesh, P(dist.DATA)) if batch_size % shards == 0 else None
    return dist.put_params(jax.tree.map(np.asarray, params), mesh), arrays, w, batch


@partial(jax.jit, static_argnames=("task",))
def _outputs(task: Task, params, arrays, grid):
    """Per-example losses and, for classifiers (logits [B, C]), predicted classes, over the rows of grid."""

    def one(_, index):
        batch = gather(arrays, index)
        if task.model is None or task.output_loss is None:
            return None, (task.loss_fn(params, batch), None)
        out = task.model.apply(params, batch["x"])
        return None, (task.output_loss(out, batch), jnp.argmax(out, -1) if out.ndim == 2 else None)

    return jax.lax.scan(one, None, grid)[1]


def _scored(task: Task, params, host: dict, batch_size: int):
    """(losses [N], predictions [N] or None) in padded batches: every example once, none dropped."""
    n = len(host["x"])
    losses, preds = _outputs(task, params, device_arrays(host), scoring_indices(n, min(int(batch_size), n)))
    return np.asarray(losses).reshape(-1)[:n], None if preds is None else np.asarray(preds).reshape(-1)[:n]


def per_example_losses(task: Task, params, data: Data, batch_size: int = 1024) -> np.ndarray:
    """l_i(params) for every example of `data` -> [N]."""
    return _scored(task, params, host_arrays(data, "data"), batch_size)[0]


def evaluate(task: Task, params, data: Data, batch_size: int = 1024) -> dict[str, float]:
    """Mean loss over every example of `data`; for classifiers with integer labels `y` also

    accuracy = mean_i [argmax logits_i = y_i] and balanced_accuracy = mean over the classes present
    in y of their recall (as sklearn's balanced_accuracy_score).
    """
    host = host_arrays(data, "data")
    losses, preds = _scored(task, params, host, batch_size)
    metrics = {"loss": float(losses.mean())}
    y = host.get("y")
    if preds is not None and y is not None and y.ndim == 1 and y.dtype.kind in "iu":
        correct = preds == y
        metrics["accuracy"] = float(correct.mean())
        metrics["balanced_accuracy"] = float(np.mean([correct[y == c].mean() for c in np.unique(y)]))
    return metrics
