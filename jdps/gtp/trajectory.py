"""Gradient trajectory features: per-example gradients at T checkpoints, projected, weighted and stacked.

For checkpoints theta_1..theta_T (of a warm-up run, or T samples of the BADS chain) every example i gets

    a_i = [c_1 f(P_1^T G_1(g_i(theta_1))); ...; c_T f(P_T^T G_T(g_i(theta_T)))]        [T d]

    g_i(theta_t)  the gradient of example i's loss w.r.t. the leaves `param_filter` selects, [p];
    P_t [p, d]    a random projection (jdps.gradients.projection) drawn from fold_in(key, t), the "evolving subspace";
                  shared_projection=True draws one P from `key` for every t (as LESS);
    G_t           the identity, or LESS's Adam preconditioner given the checkpoint's Adam moments (m_t, v_t):
                      G_t(g) = m' / sqrt(v' + eps),  m' = beta1 m_t + (1 - beta1) g,  v' = beta2 v_t + (1 - beta2) g^2
                  (elementwise, no bias correction; LESS: beta1 = 0.9, beta2 = 0.999, eps = 1e-8), applied to
                  candidates only: LESS's target gradients are plain;
    f             the identity, or x / |x| per checkpoint (normalize=True, as LESS);
    c_t           per-checkpoint weights (LESS: the checkpoint's learning rate; default 1).

so a_i . a_j = sum_t c_t^2 f(.) . f(.). Rows come in ascending global index order (`index`). The matrix is
built one checkpoint block [N, d] at a time (memory O(N d)) and, with `out=path`, written into a `.npy`
file opened as a memmap, ready for `jdps.gtp.pursuit` with A = np.load(path, mmap_mode='r').
The target of in-domain selection is the mean row of A (`mean_row`); of target-domain selection the mean
row of the target examples' trajectory with the same projections (`target_trajectory`).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jdps import distributed as dist
from jdps.gradients import factored as fa
from jdps.gradients import param_filter as pf
from jdps.data.batching import scoring_batches
from jdps.data.dataset import Dataset
from jdps.errors import CheckpointError, InputError
from jdps.gradients.features import per_example_features
from jdps.gradients.per_example import check_finite_rows, flatten, per_example_grads
from jdps.gradients.projection import check_kind, project
from jdps.progress import bar as progress_bar

LESS_ADAM = (0.9, 0.999, 1e-8)  # beta1, beta2, eps of LESS's preconditioner


class Trajectory(NamedTuple):
    """features [N, T d] (an np.memmap when written to a file); index [N], the example of each row."""

    features: np.ndarray
    index: np.ndarray


def unstack(stacked) -> list:
    """A pytree with a leading sample axis [T, ...] (e.g. `jdps.bads.theta_samples(state)`) -> T pytrees."""
    leaves = jax.tree.leaves(stacked)
    if not leaves or any(np.ndim(x) == 0 for x in leaves) or len({np.shape(x)[0] for x in leaves}) != 1:
        raise InputError("unstack needs a pytree whose leaves share a leading sample axis [T, ...]")
    return [jax.tree.map(lambda x, t=t: x[t], stacked) for t in range(np.shape(leaves[0])[0])]


def _key(key):
    return jax.random.key(int(key)) if isinstance(key, (int, np.integer)) else key


def _checkpoint_list(checkpoints) -> list:
    if not isinstance(checkpoints, Sequence) or isinstance(checkpoints, (str, bytes)) or not checkpoints:
        raise InputError("checkpoints must be a non-empty list of params pytrees (one per checkpoint); for samples "
                         "stacked on a leading axis use jdps.gtp.trajectory.unstack(stacked)")
    return list(checkpoints)


def _reusable(data):
    if not isinstance(data, (Dataset, Mapping)) and iter(data) is data:
        raise InputError("data is read once per checkpoint, so it cannot be a one-shot iterator; pass a Dataset, "
                         "a dict of arrays [N, ...], or a list of batches")
    return data


def adam_precondition(grads: dict, mu: dict, nu: dict, betas=LESS_ADAM) -> dict:
    """LESS's Adam direction of per-example gradients {path: [B, ...]} given moments {path: [...]}:
    m' / sqrt(v' + eps), m' = beta1 mu + (1 - beta1) g, v' = beta2 nu + (1 - beta2) g^2."""
    b1, b2, eps = betas
    return {p: (b1 * mu[p] + (1 - b1) * g) / jnp.sqrt(b2 * nu[p] + (1 - b2) * jnp.square(g) + eps)
            for p, g in grads.items()}


@partial(jax.jit, static_argnames=("task", "paths", "chunk_size", "betas", "d", "kind"))
def _adam_step(params, mu, nu, batch, key, *, task, paths, chunk_size, betas, d, kind):
    """[B, d]: the batch's Adam-preconditioned per-example gradients, projected with `key`."""
    return per_example_grads(task.loss_fn, params, batch, param_filter=paths, chunk_size=chunk_size,
                             transform=lambda g: project(flatten(adam_precondition(g, mu, nu, betas)), key, d, kind))


def _adam_features(task, params, data, moments, *, d, key, kind, param_filter, batch_size, chunk_size, betas,
                   mesh=None):
    """Projected Adam-preconditioned per-example gradients [N, d] (rows by ascending index), and the index."""
    batches = iter(scoring_batches(data, dist.round_up(batch_size, mesh)))
    first = next(batches, None)
    if first is None or "index" not in first:
        raise InputError("data holds no batch with batch['index']; pass a Dataset or a dict of arrays")
    paths = pf.select(param_filter, params, loss_fn=task.loss_fn, batch=first)
    mu, nu = (pf.take(m, paths) for m in moments)
    if mesh is not None:
        params, mu, nu = (dist.put_params(t, mesh) for t in (params, mu, nu))

    rows, index = [], []
    for batch in itertools.chain([first], batches):
        phi = dist.to_host(_adam_step(params, mu, nu, dist.on_mesh(batch, mesh), key, task=task, paths=tuple(paths),
                                      chunk_size=chunk_size, betas=tuple(betas), d=d, kind=kind))
        idx = np.asarray(batch["index"])
        mask = np.asarray(batch["mask"], bool) if "mask" in batch else np.ones(len(idx), bool)
        check_finite_rows("Adam-preconditioned per-example gradients (projected)", phi, idx, mask)
        rows.append(phi[mask])
        index.append(idx[mask])
    index = np.concatenate(index)
    order = np.argsort(index, kind="stable")
    return np.concatenate(rows)[order], index[order]


def _rows(data) -> int:
    """N of a Dataset or a dict of arrays (resume needs the rows to be 0..N-1)."""
    if not isinstance(data, (Dataset, Mapping)):
        raise InputError("resume needs the data as a Dataset or a dict of arrays [N, ...] (its rows are the "
                         "examples 0..N-1), not a list of batches")
    return len(data.x) if isinstance(data, Dataset) else len(next(iter(data.values())))


def _restored_block(resume, t: int, rows):
    """Checkpoint t's block [N, w] saved (step t + 1) in `resume`, or None (none saved, or unusable: then
    a one-line warning, and the block is computed again)."""
    if resume is None or t + 1 not in resume.steps():
        return None
    try:
        block = np.asarray(resume.restore(t + 1)["block"])
    except (CheckpointError, KeyError, TypeError) as err:
        print(f"jdps: warning: the saved features of checkpoint {t} in {resume.directory} are unusable "
              f"({str(err)[:160]}); computing them again", file=sys.stderr)
        return None
    if block.ndim != 2 or len(block) != rows or block.dtype != np.float32:
        print(f"jdps: warning: the saved features of checkpoint {t} in {resume.directory} have shape {block.shape}, "
              f"not [{rows}, w]; computing them again", file=sys.stderr)
        return None
    return block


def trajectory_features(task, checkpoints, data, *, d: int, key, checkpoint_weights=None,
                        shared_projection: bool = False, normalize: bool = False, adam=None, adam_betas=LESS_ADAM,
                        method: str = "vmap", param_filter=None, kind: str = "rademacher", batch_size: int = 256,
                        chunk_size: int | None = None, out=None, resume=None, mesh=None,
                        progress=None) -> Trajectory:
    """The N x T d trajectory matrix of `data` over `checkpoints` (see the module docstring).

    task: a `Task` or loss_fn(params, batch) -> [B]; checkpoints: a list of T params pytrees; data: a
    `Dataset`, a dict of arrays [N, ...] or a list of batches carrying `index`; key: a jax key or int seed;
    checkpoint_weights: c_t [T] (default 1); adam: T pairs (mu_t, nu_t) of params-shaped Adam moments
    (e.g. optax's ScaleByAdamState mu, nu), which needs method='vmap'; out: a `.npy` path to write the
    matrix into (returned as a read-only memmap); resume: a `jdps.checkpoint.Checkpoints` (max_to_keep=None)
    that keeps each checkpoint's finished block [N, d] as step t + 1, so the same call after a kill computes
    only the blocks not saved yet and returns the uninterrupted matrix (data: a Dataset or a dict of arrays);
    mesh: split every batch over the mesh's 'data' axis (`jdps.distributed`; in a multi-process run only the
    writing process writes `out` and the resume blocks). The other arguments go to `per_example_features`.
    progress: True (or a label) draws a bar over the checkpoints (jdps.progress).
    """
    checkpoints = _checkpoint_list(checkpoints)
    data = _reusable(data)
    task, key = fa.as_task(task), _key(key)
    check_kind(kind)
    t_count = len(checkpoints)
    c = np.ones(t_count) if checkpoint_weights is None else np.asarray(checkpoint_weights, np.float64)
    if c.shape != (t_count,) or not np.isfinite(c).all():
        raise InputError(f"checkpoint_weights must hold one finite weight per checkpoint ({t_count}), got {c.shape}")
    if adam is not None:
        adam = list(adam)
        if len(adam) != t_count or any(len(pair) != 2 for pair in adam):
            raise InputError(f"adam must give one (mu, nu) pair of Adam moments per checkpoint ({t_count})")
        if method != "vmap":
            raise InputError("Adam preconditioning transforms each full per-example gradient, which only "
                             "method='vmap' forms; pass method='vmap'")

    rows = _rows(data) if resume is not None else None
    out = out if dist.is_writer() else None        # one process writes the file; the others keep A in memory
    matrix, index = None, None
    shown = progress_bar(progress, total=t_count, desc="trajectory features", unit="checkpoint")
    for t, params in enumerate(checkpoints):
        block, idx = _restored_block(resume, t, rows), np.arange(rows) if rows is not None else None
        if block is None:
            key_t = key if shared_projection else jax.random.fold_in(key, t)
            if adam is None:
                f = per_example_features(task, params, data, d=d, key=key_t, method=method,
                                         param_filter=param_filter, kind=kind, batch_size=batch_size,
                                         chunk_size=chunk_size, mesh=mesh)
                phi, idx = f.features, f.index
            else:
                phi, idx = _adam_features(task, params, data, adam[t], d=d, key=key_t, kind=kind,
                                          param_filter=param_filter, batch_size=batch_size, chunk_size=chunk_size,
                                          betas=adam_betas, mesh=mesh)
            if normalize:
                norms = np.linalg.norm(phi, axis=1, keepdims=True)
                phi = phi / np.where(norms > 0, norms, 1.0)
            block = np.asarray(c[t] * phi, np.float32)
            if resume is not None:
                resume.save(t + 1, {"block": block})
        if matrix is None:
            index, width = idx, block.shape[1]
            shape = (len(idx), t_count * width)
            matrix = (np.zeros(shape, np.float32) if out is None else
                      np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape))
        elif not np.array_equal(idx, index) or block.shape[1] != width:
            raise InputError(f"checkpoint {t} scored examples {idx[:5]}... but checkpoint 0 scored {index[:5]}...; "
                             "every checkpoint must see the same examples")
        matrix[:, t * width:(t + 1) * width] = block
        shown.update(1)
    shown.close()
    if out is not None:
        matrix.flush()
        del matrix
        matrix = np.load(out, mmap_mode="r")
    return Trajectory(matrix, index)


def mean_row(features, block_rows: int = 65536) -> np.ndarray:
    """The mean row (1/N) sum_i a_i [Td] of A [N, Td] (in-domain target), read in row blocks (memmaps too)."""
    n = len(features)
    if n == 0:
        raise InputError("the feature matrix has no rows")
    total = np.zeros(features.shape[1], np.float64)
    for start in range(0, n, block_rows):
        total += np.asarray(features[start:start + block_rows], np.float64).sum(0)
    return (total / n).astype(np.float32)


def target_trajectory(task, checkpoints, target_data, *, d: int, key, checkpoint_weights=None,
                      shared_projection: bool = False, normalize: bool = False, method: str = "vmap",
                      param_filter=None, kind: str = "rademacher", batch_size: int = 256,
                      chunk_size: int | None = None, mesh=None) -> np.ndarray:
    """Target-domain target b [Td]: the mean trajectory row of the target examples, with the same options and
    key as the candidates' `trajectory_features` (and no Adam preconditioning, as LESS)."""
    traj = trajectory_features(task, checkpoints, target_data, d=d, key=key, checkpoint_weights=checkpoint_weights,
                               shared_projection=shared_projection, normalize=normalize, method=method,
                               param_filter=param_filter, kind=kind, batch_size=batch_size, chunk_size=chunk_size,
                               mesh=mesh)
    return mean_row(traj.features)
