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


def _flip_a_byte(folder):
    """Flip one byte of the largest data file of a checkpoint folder (what bit rot or a bad copy does)."""
    f = max((p for p in folder.rglob("*") if p.is_file() and "metadata" not in p.name.lower()),
            key=lambda p: p.stat().st_size)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))


def test_a_flipped_bit_is_found_and_the_run_falls_back_to_the_previous_step(tmp_path):
    ckpt = Checkpoints(tmp_path / "run", max_to_keep=3)
    for step in (1, 2):
        ckpt.save(step, _run(_state(0), step))
    _flip_a_byte(tmp_path / "run" / "2")
    assert "altered" in ckpt.verify(2) and ckpt.verify(1) is None
    with pytest.raises(CheckpointError, match="corrupt"):
        ckpt.restore(2, _state(0))
    warnings = []
    step, state = ckpt.restore_latest(_state(0), warn=warnings.append)
    assert step == 1 and int(state["step"]) == 1 and len(warnings) == 1 and "falling back" in warnings[0]


def test_a_missing_file_and_a_killed_save_fall_back_and_stale_temporaries_go(tmp_path):
    ckpt = Checkpoints(tmp_path / "run", max_to_keep=3)
    for step in (1, 2, 3):
        ckpt.save(step, _run(_state(0), step))
    victim = next(p for p in (tmp_path / "run" / "3").rglob("*") if p.is_file() and "metadata" not in p.name.lower())
    victim.unlink()
    (tmp_path / "run" / "2.sha256.json").unlink()          # a save killed before its checksums: still tried
    stale = tmp_path / "run" / "4.orbax-checkpoint-tmp-123"
    stale.mkdir()
    ckpt.close()
    again = Checkpoints(tmp_path / "run", max_to_keep=3)
    assert not stale.exists()
    step, state = again.restore_latest(_state(0), warn=lambda m: None)
    assert step == 2 and int(state["step"]) == 2


def test_a_directory_of_another_run_is_refused(tmp_path):
    from jdps.errors import InputError

    Checkpoints(tmp_path / "run", fingerprint={"options": {"seed": 0}}).save(1, _state(0))
    Checkpoints(tmp_path / "run", fingerprint={"options": {"seed": 0}})      # the same run: accepted
    with pytest.raises(InputError, match=r"other inputs or options \(they differ in options.seed\)"):
        Checkpoints(tmp_path / "run", fingerprint={"options": {"seed": 1}})
    (tmp_path / "run" / "fingerprint.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable fingerprint.json"):
        Checkpoints(tmp_path / "run", fingerprint={"options": {"seed": 0}})


def test_a_resumed_run_saves_over_the_corrupt_step_it_skipped(tmp_path):
    ckpt = Checkpoints(tmp_path / "run", max_to_keep=3)
    for step in (1, 2):
        ckpt.save(step, _run(_state(0), step))
    _flip_a_byte(tmp_path / "run" / "2")
    step, state = ckpt.restore_latest(_state(0), warn=lambda m: None)
    assert step == 1
    ckpt.save(2, _run(state, 2))                        # the epoch again: replaces the corrupt step 2
    assert ckpt.verify(2) is None
    np.testing.assert_array_equal(ckpt.restore(2, _state(0))["params"]["w"], _run(_state(0), 2)["params"]["w"])


def test_read_only_checkpoints_touch_nothing(tmp_path):
    ckpt = Checkpoints(tmp_path / "run")
    ckpt.save(1, _state(0))
    ckpt.close()
    stale = tmp_path / "run" / "2.orbax-checkpoint-tmp-9"    # a save in progress by the run that writes it
    stale.mkdir()
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    reader = Checkpoints(tmp_path / "run", read_only=True)
    assert reader.steps() == [1] and int(reader.restore(1, _state(0))["step"]) == 0
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
