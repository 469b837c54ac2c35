"""Checkpoints: a killed run resumes to the same result; bad checkpoints are clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdps.checkpoint import Checkpoints
from jdps.errors import CheckpointError


def _state(seed):
    k = jax.random.key(seed)
    return {"params": {"w": jax.random.normal(k, (3, 4)), "b": jnp.zeros(4)}, "step": jnp.int32(seed),
            "key": jax.random.key(seed + 1)}


def _run(state, steps, ckpt=None, every=2):
    """A toy chain: each step draws noise from the carried key; saves every `every` steps."""
    start = int(state["step"])
    for t in range(start, steps):
        key, sub = jax.random.split(state["key"])
        w = state["params"]["w"] * 0.9 + jax.random.normal(sub, (3, 4))
        state = {"params": {"w": w, "b": state["params"]["b"] + 1}, "step": jnp.int32(t + 1), "key": key}
        if ckpt is not None and (t + 1) % every == 0:
            ckpt.save(t + 1, state)
    return state


def test_round_trip_and_resume(tmp_path):
    ckpt = Checkpoints(tmp_path / "run", max_to_keep=2)
    fresh = _state(0)
    assert ckpt.restore_latest(fresh) == (None, fresh)
    full = _run(_state(0), 7)
    _run(_state(0), 5, ckpt)                     # "killed" after step 5; saved at 2 and 4
    assert ckpt.steps() == [2, 4]                # max_to_keep=2
    step, state = Checkpoints(tmp_path / "run").restore_latest(_state(0))
    assert step == 4 and int(state["step"]) == 4
    resumed = _run(state, 7)
    np.testing.assert_array_equal(resumed["params"]["w"], full["params"]["w"])
    np.testing.assert_array_equal(jax.random.key_data(resumed["key"]), jax.random.key_data(full["key"]))


def test_missing_step_is_a_clear_error(tmp_path):
    ckpt = Checkpoints(tmp_path / "run")
    ckpt.save(1, _state(0))
    with pytest.raises(CheckpointError, match=r"no checkpoint for step 3 .*saved steps: \[1\]"):
        ckpt.restore(3, _state(0))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    ckpt = Checkpoints(tmp_path / "run")
    ckpt.save(1, _state(0))
    for f in (tmp_path / "run" / "1").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name:
            f.write_bytes(b"\x00garbage" * 3)
    with pytest.raises(CheckpointError, match=r"corrupt or from another run"):
        ckpt.restore(1, _state(0))


def test_mismatched_structure_is_a_clear_error(tmp_path):
    ckpt = Checkpoints(tmp_path / "run")
    ckpt.save(1, _state(0))
    other = {"params": {"w": jnp.zeros((5, 5))}, "step": jnp.int32(0), "key": jax.random.key(0)}
    with pytest.raises(CheckpointError):
        ckpt.restore(1, other)
