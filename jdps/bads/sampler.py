"""Running BADS: the kernel over whole epochs with the one epoch driver, and prediction from its samples.

    state = fit(task, params, train, meta, key=0, epochs=20)        # theta and the N weights, sampled
    weights = posterior_mean_weights(state)                          # [N]
    probs = predict(task, state, x)                                  # [B, C], averaged over theta samples

`run_epochs` is the lower-level loop over a `SamplingAlgorithm` from `as_top_level_api`, for people
composing the kernel with their own data pipeline; `fit` builds the sampler and calls the driver.
Epoch e draws its batch order and meta batches from fold_in(key, e) (`jdps.loop`), so one seed gives one
chain whichever entry point runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jdps import distributed as dist
from jdps import loop
from jdps.bads.config import BADSConfig
from jdps.bads.kernel import BADSInfo, BADSState, as_top_level_api, posterior_predictive
from jdps.data import batching
from jdps.data.dataset import Dataset, host_arrays
from jdps.errors import InputError, SamplerDivergedError
from jdps.validate import as_key


def _device_data(data, name: str) -> dict:
    if isinstance(data, Mapping) and data and all(isinstance(v, jax.Array) for v in data.values()):
        arrays = {k: v for k, v in data.items() if k not in batching.RESERVED}
        if len({len(v) for v in arrays.values()}) > 1:
            raise InputError(f"{name}: mismatched lengths {({k: len(v) for k, v in arrays.items()})}; "
                             "every per-example array needs one row per example")
        return arrays
    if not isinstance(data, (Dataset, Mapping)) or not len(data):
        raise InputError(f"{name} must be a jdps Dataset or a non-empty dict of per-example arrays")
    return batching.device_arrays(data)


def _diverged(config: BADSConfig, first_epoch: int = 0):
    def error(epoch: int, step: int, global_step: int) -> SamplerDivergedError:
        return SamplerDivergedError(
            f"BADS diverged at step {global_step} (epoch {first_epoch + epoch}): the parameters or weights became "
            f"NaN or Inf. Lower the step sizes (lr={config.lr}, weight_lr={config.weight_lr}"
            f"{f', net_lr={config.net_lr}' if config.weight_param == 'network' else ''}), e.g. tenfold, "
            "and check that every example's loss is finite")
    return error


def _finite(info: BADSInfo) -> np.ndarray:
    return np.asarray(info.finite)


def run_epochs(step: Callable, key, state: BADSState, arrays, meta_arrays, epochs: int | None, batch_size: int,
               meta_batch_size: int, *, steps: int | None = None, batch_sharding=None, remainder: str = "pad",
               start_epoch: int = 0, checkpoint=None, progress=None, checkpoints=None) -> tuple[BADSState, BADSInfo]:
    """Run `epochs` epochs (or `steps` steps) of `step` (from `as_top_level_api`) with `jdps.loop.run`.

    key: a jax key or an integer seed. Each step draws a meta batch of `meta_batch_size` distinct meta
    examples. `arrays`/`meta_arrays`: a `Dataset` or a dict of per-example arrays (device arrays,
    possibly sharded, are used as they are); `batch_sharding` (e.g. NamedSharding(mesh, P('data')))
    constrains each batch. Returns the state and the per-step `BADSInfo` [steps]; raises
    `SamplerDivergedError` at the first NaN. `checkpoint`, `progress`, `start_epoch`, `checkpoints` (resume
    from a `jdps.checkpoint.Checkpoints`): see `jdps.loop`.
    """
    arrays, meta_arrays = _device_data(arrays, "arrays"), _device_data(meta_arrays, "meta_arrays")
    n, m = len(next(iter(arrays.values()))), len(next(iter(meta_arrays.values())))
    if n != state.weight_mean.shape[0]:
        raise InputError(f"arrays have {n} examples but the state holds {state.weight_mean.shape[0]} weights; "
                         "pass the training set the sampler was built for")
    n_meta = getattr(step, "n_meta", m)
    if m != n_meta:
        raise InputError(f"meta_arrays have {m} examples but the sampler was built with n_meta={n_meta}; "
                         "pass the meta set's size to as_top_level_api")
    batching.check_batch_size(n, batch_size, training=True)
    config = getattr(step, "config", BADSConfig())
    state, info = loop.run(step, state, arrays, key=key, batch_size=int(batch_size), epochs=epochs, steps=steps,
                           meta_arrays=meta_arrays, meta_batch_size=meta_batch_size, remainder=remainder,
                           batch_sharding=batch_sharding, start_epoch=start_epoch, check=_finite,
                           diverged=_diverged(config), checkpoint=checkpoint, progress=progress,
                           checkpoints=checkpoints)
    return state, BADSInfo(*info) if info is not None else None


def fit(task, params, train, meta, *, key, epochs: int | None = None, steps: int | None = None,
        batch_size: int = 128, meta_batch_size: int = 100, config: BADSConfig | None = None,
        progress: Callable | None = None, checkpoint: Callable | None = None, checkpoints=None,
        mesh=None) -> BADSState:
    """Sample theta and the N training weights for `epochs` epochs or `steps` steps -> the final `BADSState`.

    task: a jdps `Task` (its loss_fn serves the training and the meta likelihood); train / meta: Datasets
    or dicts of per-example arrays with `x` and `y` (other columns are left out of the batches); key: a
    jax key or an integer seed (split into the init key and the run key); config: default `BADSConfig()`.
    batch_size and meta_batch_size are cut to N and M. `progress(epoch, epochs, step, info)` runs after
    every epoch with that epoch's per-step `BADSInfo`; `checkpoint(epoch, state)` after every epoch; with
    `checkpoints` (a `jdps.checkpoint.Checkpoints`) a killed run resumes from its latest saved epoch.
    Raises `SamplerDivergedError` (naming the step and the step sizes) when theta or a weight becomes NaN.
    mesh: run on a `jax.sharding.Mesh` (`jdps.distributed.make_mesh`), batches split over 'data' and the
    per-example state too (`on_mesh`); the chain is the one-device chain up to float rounding.
    """
    config = BADSConfig() if config is None else config
    dt, dm = host_arrays(train, "train"), host_arrays(meta, "meta")
    keys = [k for k in ("x", "y") if k in dt]
    missing = [k for k in keys if k not in dm]
    if missing:
        raise InputError(f"the meta set has no {missing}; it must hold the same arrays as the training set")
    n, m = len(dt["x"]), len(dm["x"])
    if m < 1:
        raise InputError("the meta set is empty; BADS needs a non-empty curated meta set as its likelihood")
    _check_labels(task, params, dt, dm)
    resolved = resolve(config, n, m, batch_size=batch_size, epochs=epochs, steps=steps, meta_batch_size=meta_batch_size)
    key = as_key(key)
    arrays = batching.device_arrays({k: dt[k] for k in keys})
    meta_arrays = {k: dm[k] for k in keys}
    if config.loss_reference == "held_out" and config.log_z == "dropped":
        held_out = reference_rows(dm.get("y"), m, config.reference_fraction, jax.random.fold_in(key, 1))
        if held_out.any():
            meta_arrays["reference"] = held_out
    meta_arrays = batching.device_arrays(meta_arrays)
    sampler = as_top_level_api(task, None, n, m, config)
    k_init, k_run = jax.random.split(key)
    state = sampler.init(k_init, params)
    batch_sharding = None
    if mesh is not None:
        state, arrays, meta_arrays, batch_sharding = on_mesh(mesh, state, arrays, meta_arrays,
                                                             resolved["batch_size"])
    state, _ = run_epochs(sampler.step, k_run, state, arrays, meta_arrays, epochs, resolved["batch_size"],
                          resolved["meta_batch_size"], steps=steps, checkpoint=checkpoint, progress=progress,
                          checkpoints=checkpoints, batch_sharding=batch_sharding)
    return state


def on_mesh(mesh, state: BADSState, arrays: dict, meta_arrays: dict, batch_size: int):
    """(state, arrays, meta_arrays, batch_sharding) placed on `mesh`: the weights, their running means and
    the training rows sharded over 'data' when its size divides N (else replicated: every device then holds
    all N, only the batches are split), the meta set and theta replicated (theta's matrices split over a
    'model' axis), each batch split over 'data' when its size divides the batch size."""
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jdps.bads.kernel import state_shardings

    shards = dist.data_size(mesh)
    n = state.weight_mean.shape[0]
    host = lambda tree: jax.tree.map(np.asarray, tree)  # noqa: E731  (each process holds the same values)
    shardings = state_shardings(state, mesh)
    if n % shards:
        shardings = jax.tree.map(lambda _: NamedSharding(mesh, P()), shardings)
    params = dist.put_params(host(state.params), mesh)
    state = jax.device_put(host(state._replace(params=None)), shardings._replace(params=None))._replace(params=params)
    rows = NamedSharding(mesh, P(dist.DATA)) if n % shards == 0 else NamedSharding(mesh, P())
    arrays = {k: jax.device_put(np.asarray(v), rows if np.ndim(v) else NamedSharding(mesh, P()))
              for k, v in arrays.items()}
    meta_arrays = dist.replicate(host(meta_arrays), mesh)
    batch = NamedSharding(mesh, P(dist.DATA)) if batch_size % shards == 0 else None
    return state, arrays, meta_arrays, batch


def reference_rows(y_meta, m: int, fraction: float, key) -> np.ndarray:
    """bool [M]: the meta rows held out as the loss reference c, floor(fraction m_c) of each class's m_c
    rows (integer labels; else floor(fraction M) of all), drawn from `key`. None may be held out."""
    u = np.asarray(jax.random.uniform(key, (m,)))
    y = np.zeros(m, int) if y_meta is None or np.asarray(y_meta).dtype.kind not in "iu" else np.asarray(y_meta)
    held = np.zeros(m, bool)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        held[rows[np.argsort(u[rows])[:int(fraction * len(rows))]]] = True
    return held


def _check_labels(task, params, dt: dict, dm: dict) -> None:
    """Integer labels: every meta class must occur in the pool (else no training weight can serve it), and with
    a classifier model every label must lie in [0, C), C its number of outputs (else the loss is NaN)."""
    y, ym = dt.get("y"), dm.get("y")
    if y is None or ym is None or np.asarray(y).dtype.kind not in "iu" or np.asarray(ym).dtype.kind not in "iu":
        return
    missing = sorted(set(np.unique(ym).tolist()) - set(np.unique(y).tolist()))
    if missing:
        raise InputError(f"the meta set has classes {missing} that no training example has, so no training weight "
                         "can serve them; drop those meta examples or add training examples of them")
    if getattr(task, "model", None) is not None:
        out = jax.eval_shape(lambda p, x: task.apply(p, x), params, jax.ShapeDtypeStruct((1, *dt["x"].shape[1:]),
                                                                                          dt["x"].dtype))
        if len(out.shape) == 2:
            c = out.shape[-1]
            for name, labels in (("training", y), ("meta", ym)):
                labels = np.asarray(labels)
                if labels.size and (labels.min() < 0 or labels.max() >= c):
                    raise InputError(f"the {name} labels lie in [{labels.min()}, {labels.max()}] but the model has {c} "
                                     f"outputs; relabel to 0..{c - 1} or build the model with more classes")


def resolve(config: BADSConfig, n: int, m: int | None, *, batch_size: int, epochs: int | None = None,
            steps: int | None = None, meta_batch_size: int = 100) -> dict:
    """The settings a run over N training and M meta examples derives, checked before any work (M None:
    unknown, the entries that need it say so):

    batch_size       min(batch_size, N)
    meta_batch_size  min(meta_batch_size, M)
    steps_per_epoch  ceil(N / b) (the last batch padded, so every example is visited every epoch)
    steps            epochs * steps_per_epoch, or the steps given
    theta_thin       the config's, or one epoch (steps_per_epoch)
    meta_weight      the weight of the meta set's mean loss in U / N: M / N (meta_strength None), else
                     meta_strength * rho
    loss_reference   what c the weights' force rho (l_i - c) is measured against (`reference_rows`)
    A run shorter than one epoch would leave examples without a weight sample, and a burn-in as long as the
    run would leave every weight without one: both are refused here, naming the fix."""
    b = min(int(batch_size), n)
    per_epoch = loop.steps_per_epoch(n, b, "pad")
    plan = loop.schedule(n, b, epochs=epochs, steps=steps, remainder="pad")
    if plan.steps < per_epoch:
        raise InputError(f"a BADS run of {plan.steps} steps visits only some of the {n} examples (one epoch is "
                         f"{per_epoch} steps of {b}), so some weights would have no sample; pass steps >= {per_epoch} "
                         "or epochs >= 1")
    if config.burn_in + per_epoch > plan.steps:
        raise InputError(f"burn_in={config.burn_in} leaves less than one epoch ({per_epoch} steps) of the "
                         f"{plan.steps}-step run to sample the weights; lower burn_in to at most "
                         f"{plan.steps - per_epoch}")
    if config.meta_strength is not None:
        meta_weight = config.meta_strength * config.rho
    else:
        meta_weight = "M / N" if m is None else m / n
    return {"batch_size": b, "meta_batch_size": int(meta_batch_size) if m is None else min(int(meta_batch_size), m),
            "steps_per_epoch": per_epoch, "steps": plan.steps, "theta_thin": config.theta_thin or per_epoch,
            "meta_weight": meta_weight, "loss_reference": _reference_rule(config, m)}


def _reference_rule(config: BADSConfig, m: int | None) -> str:
    if config.loss_reference == "none" or config.log_z == "contrastive":
        return "none (the weights feel rho l_i)"
    f = config.reference_fraction
    return (f"the mean loss of {f:g} of each class's meta examples (classes with at least {int(np.ceil(1 / f))} "
            "of them; if none has, the whole meta set), held out from theta" if f > 0 else
            "the mean loss of the whole meta set (which theta fits)")


def predict(task, state: BADSState, x, batch_size: int = 1000) -> np.ndarray:
    """Class probabilities [B, C], averaged over the state's theta samples (the final theta if it has none)."""
    has_samples = state.theta_ring is not None and int(state.num_theta) > 0
    out = []
    for start in range(0, len(x), batch_size):
        xb = jnp.asarray(x[start:start + batch_size])
        if has_samples:
            out.append(posterior_predictive(task.apply, state, xb))
        else:
            out.append(jax.nn.softmax(task.apply(state.params, xb)))
    return np.concatenate([np.asarray(p) for p in out])
