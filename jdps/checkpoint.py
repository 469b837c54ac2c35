"""Checkpoints of any pytree (params, optimizer or sampler state) through orbax's CheckpointManager.

A run saves its state every so often and, killed, resumes from the latest step to the same result:

    ckpt = Checkpoints(directory, max_to_keep=3)
    ckpt.save(step, state)                          # a pytree of arrays (jax keys included)
    step, state = ckpt.restore_latest(like=state)   # (None, like) when nothing is saved yet

`like` is a pytree of the same structure (arrays or `jax.ShapeDtypeStruct`s, with shardings to restore
onto a mesh). A missing, corrupt or mismatched checkpoint raises `CheckpointError` naming the step and the fix.

    params_list = load_params(["run/ckpt", "epoch3.npz"], params)   # model parameters, as the command lines read them
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jdps.gradients import param_filter as pf
from jdps.errors import CheckpointError, InputError


class Checkpoints:
    """Numbered checkpoints of one run in `directory` (created if missing); keeps the last `max_to_keep`."""

    def __init__(self, directory: str | Path, *, max_to_keep: int | None = 3):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """The saved steps, ascending."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state) -> None:
        """Save the pytree `state` as checkpoint `step` (and wait until it is on disk)."""
        state = jax.tree.map(_storable, state)
        self._manager.save(int(step), args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def restore(self, step: int, like):
        """The pytree saved at `step`, shaped like `like`."""
        if step not in self.steps():
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; saved steps: "
                                  f"{self.steps() or 'none'}")
        template = jax.tree.map(_abstract, like)
        try:
            restored = self._manager.restore(int(step), args=ocp.args.StandardRestore(template))
        except Exception as e:  # orbax raises many types for unreadable or mismatched files
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} cannot be read as the expected state ({type(e).__name__}: "
                f"{str(e)[:300]}); it is corrupt or from another run: delete {self.directory / str(step)} to "
                "fall back to the previous step, or start a new run in an empty directory") from e
        return jax.tree.map(_restored, like, restored)

    def restore_latest(self, like):
        """(step, state) of the latest checkpoint, or (None, like) when there is none."""
        steps = self.steps()
        return (None, like) if not steps else (steps[-1], self.restore(steps[-1], like))

    def close(self) -> None:
        self._manager.close()


def _from_npz(path: Path, template):
    """Params shaped like `template` from an npz keyed by '/'-joined parameter paths."""
    with np.load(path, allow_pickle=False) as f:
        stored = {k: f[k] for k in f.files}
    want = pf.flat(template)
    missing = [p for p in want if p not in stored]
    if missing:
        raise InputError(f"checkpoint {path} lacks parameters {missing[:5]} (it holds {sorted(stored)[:5]}...); "
                         "save it with np.savez(path, **jdps.gradients.param_filter.flat(params)) from the same model "
                         "(--model, --hidden)")
    bad = [(p, stored[p].shape, np.shape(v)) for p, v in want.items() if stored[p].shape != np.shape(v)]
    if bad:
        p, got, need = bad[0]
        raise InputError(f"checkpoint {path}: parameter {p} has shape {got} but the model needs {need}; pass the "
                         "--model and --hidden the checkpoint was trained with")
    return pf.put(template, {p: stored[p].astype(np.asarray(v).dtype) for p, v in want.items()})


def load_params(paths, template, *, latest: bool = False) -> list:
    """Params pytrees shaped like `template` from `.npz` files (keyed by '/'-joined parameter paths, as
    `np.savez(path, **jdps.gradients.param_filter.flat(params))` writes them) and `Checkpoints` directories (every
    saved step in order, or only the latest with latest=True), in the order of `paths`."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            ckpt = Checkpoints(p, max_to_keep=None)
            try:
                steps = ckpt.steps()
                if not steps:
                    raise InputError(f"{p} holds no checkpoint steps; pass a directory written by "
                                     "jdps.checkpoint.Checkpoints(dir).save(step, params), or .npz files")
                out += [ckpt.restore(step, template) for step in (steps[-1:] if latest else steps)]
            finally:
                ckpt.close()
        elif p.is_file():
            out.append(_from_npz(p, template))
        else:
            raise InputError(f"no checkpoint {p}: pass .npz parameter files or Checkpoints directories")
    return out


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _storable(x):
    return jax.random.key_data(x) if _is_key(x) else x


def _abstract(x):
    x = _storable(x) if _is_key(x) else x
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _restored(like, value):
    return jax.random.wrap_key_data(value, impl=jax.random.key_impl(like)) if _is_key(like) else value
