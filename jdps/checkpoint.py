"""Checkpoints of any pytree (params, optimizer or sampler state) through orbax's CheckpointManager.

A run saves its state every so often and, killed, resumes from the latest step to the same result:

    ckpt = Checkpoints(directory, max_to_keep=3)
    ckpt.save(step, state)                          # a pytree of arrays (jax keys included)
    step, state = ckpt.restore_latest(like=state)   # (None, like) when nothing is saved yet

`like` is a pytree of the same structure (arrays or `jax.ShapeDtypeStruct`s, with shardings to restore
onto a mesh). A missing, corrupt or mismatched checkpoint raises `CheckpointError` naming the step and the fix.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp

from jdps.errors import CheckpointError


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
