"""The one epoch driver (jdps.loop): coverage of padded epochs, run lengths, resuming, hooks and divergence,
checked against hand counts and a numpy re-computation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jdps import loop
from jdps.data.batching import device_arrays, epoch_indices
from jdps.errors import InputError, TrainingDivergedError
from jdps.task import Task
from jdps.train import train

N, B = 23, 4


def counting_step(key, visits, batch, meta_batch):
    """State: visits [N]; each valid row adds one to its example's count; info: the valid count."""
    slot = jnp.where(batch["mask"], batch["index"], visits.shape[0])
    return visits.at[slot].add(1, mode="drop"), batch["mask"].sum()


ARRAYS = device_arrays({"x": np.arange(N, dtype=np.float32)[:, None]})


def test_padded_epochs_visit_every_example_once_and_dropped_ones_skip_the_remainder():
    visits, valid = loop.run(counting_step, jnp.zeros(N, jnp.int32), ARRAYS, key=0, batch_size=B, epochs=3,
                             remainder="pad")
    np.testing.assert_array_equal(np.asarray(visits), np.full(N, 3))              # 23 = 5 * 4 + 3, padded: all
    np.testing.assert_array_equal(valid, [4, 4, 4, 4, 4, 3] * 3)                  # ceil(23 / 4) = 6 steps an epoch
    visits, valid = loop.run(counting_step, jnp.zeros(N, jnp.int32), ARRAYS, key=0, batch_size=B, epochs=3,
                             remainder="drop")
    assert int(np.asarray(visits).sum()) == 3 * 20 and len(valid) == 15           # 3 dropped an epoch


def test_a_subset_is_visited_alone():
    subset = np.array([2, 5, 7, 11, 13, 17, 19])
    visits, _ = loop.run(counting_step, jnp.zeros(N, jnp.int32), ARRAYS, key=1, batch_size=3, epochs=2,
                         subset=subset, remainder="pad")
    expected = np.zeros(N, int)
    expected[subset] = 2
    np.testing.assert_array_equal(np.asarray(visits), expected)


def test_steps_cut_the_last_epoch_and_equal_the_start_of_a_longer_run():
    plan = loop.schedule(N, B, steps=13, remainder="pad")
    assert plan == loop.Schedule(epochs=3, steps_per_epoch=6, last_steps=1) and plan.steps == 13
    short, info = loop.run(counting_step, jnp.zeros(N, jnp.int32), ARRAYS, key=0, batch_size=B, steps=13,
                           remainder="pad")
    assert len(info) == 13 and int(np.asarray(short).sum()) == 2 * N + 4
    with pytest.raises(InputError, match="exactly one of epochs or steps"):
        loop.run(counting_step, jnp.zeros(N, jnp.int32), ARRAYS, key=0, batch_size=B, steps=13, epochs=2)
    with pytest.raises(InputError, match="steps must be a positive integer"):
        loop.schedule(N, B, steps=0)


def test_resuming_at_an_epoch_boundary_gives_the_uninterrupted_run():
    """The checkpoint hook sees each epoch's state; restarting from the one after epoch 2 with
    start_epoch=2 ends where the full run ends (epoch keys come from fold_in(key, e))."""

    def sgd_step(key, p, batch, meta_batch):  # a noisy step, so the keys matter
        g = jnp.mean(jnp.where(batch["mask"], p - batch["x"][:, 0], 0.0)) + 0.1 * jax.random.normal(key)
        return p - 0.1 * g, g

    saved = {}
    full, _ = loop.run(sgd_step, jnp.float32(0.0), ARRAYS, key=7, batch_size=B, epochs=4, remainder="pad",
                       checkpoint=lambda e, s: saved.setdefault(e, s))
    assert sorted(saved) == [1, 2, 3, 4]
    resumed, info = loop.run(sgd_step, saved[2], ARRAYS, key=7, batch_size=B, epochs=4, remainder="pad",
                             start_epoch=2)
    assert len(info) == 2 * 6
    assert float(resumed) == float(full)


def test_progress_runs_between_epochs_with_the_steps_done():
    calls = []
    loop.run(counting_step, jnp.zeros(N, jnp.int32), ARRAYS, key=0, batch_size=B, steps=8, remainder="drop",
             progress=lambda e, total, step, info: calls.append((e, total, step, len(info))))
    assert calls == [(1, 2, 5, 5), (2, 2, 8, 3)]


def test_a_nan_names_its_epoch_and_step():
    def step(key, state, batch, meta_batch):
        t = state + 1
        return t, jnp.where(t == 8, jnp.nan, 1.0)  # the 8th step of the run: epoch 2, step 3 (5 steps an epoch)

    with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 3 \(step 8 of the run\)"):
        loop.run(step, jnp.int32(0), ARRAYS, key=0, batch_size=B, epochs=3, remainder="drop")


def test_meta_batches_hold_distinct_meta_rows():
    meta = device_arrays({"x": np.arange(10, dtype=np.float32)[:, None]})

    def step(key, state, batch, meta_batch):
        return state, meta_batch["index"]

    _, rows = loop.run(step, jnp.int32(0), ARRAYS, key=0, batch_size=B, epochs=2, meta_arrays=meta,
                       meta_batch_size=6, remainder="drop")
    assert rows.shape == (10, 6) and all(len(set(r.tolist())) == 6 for r in rows) and rows.max() < 10
    with pytest.raises(InputError, match="meta_batch_size must be an integer in \\[1, 10\\]"):
        loop.run(step, jnp.int32(0), ARRAYS, key=0, batch_size=B, epochs=1, meta_arrays=meta, meta_batch_size=11)


def test_padded_training_scales_the_last_batch_by_its_valid_count():
    """SGD on l_i(p) = (p - x_i)^2 / 2 with normalize='batch': each step moves p by lr times the mean of
    (p - x_i) over the batch's valid rows; a numpy loop over the same batches gives the same p."""
    x = np.linspace(-1, 2, N).astype(np.float32)
    task = Task(loss_fn=lambda p, b: 0.5 * (p["p"] - b["x"]) ** 2)
    result = train(task, {"p": jnp.float32(0.0)}, {"x": x}, key=3, epochs=2, batch_size=B,
                   optimizer=optax.sgd(0.5), remainder="pad")
    p = 0.0
    for e in range(2):
        k_order, _ = jax.random.split(jax.random.fold_in(jax.random.key(3), e))
        for row in np.asarray(epoch_indices(k_order, N, B, remainder="pad")):
            valid = row[row < N]
            p -= 0.5 * np.mean(p - x[valid])
    assert float(result.params["p"]) == pytest.approx(p, rel=1e-5)
    assert result.history["step_loss"].shape == (12,)


def test_checkpoints_resume_a_killed_run_to_the_uninterrupted_result(tmp_path):
    """A run killed after epoch 2 (its saves are on disk) and started again with the same call ends where
    an uninterrupted run ends; the restarted call runs only the epochs left."""
    from jdps.checkpoint import Checkpoints

    def sgd_step(key, state, batch, meta_batch):
        p, count = state
        g = jnp.mean(jnp.where(batch["mask"], p - batch["x"][:, 0], 0.0)) + 0.1 * jax.random.normal(key)
        return (p - 0.1 * g, count + 1), g

    start = (jnp.float32(0.0), jnp.int32(0))
    full, _ = loop.run(sgd_step, start, ARRAYS, key=5, batch_size=B, epochs=4, remainder="drop")

    class Killed(Exception):
        pass

    def kill_after_two(epoch, state):
        if epoch == 2:
            raise Killed

    ckpt = Checkpoints(tmp_path / "run")
    with pytest.raises(Killed):
        loop.run(sgd_step, start, ARRAYS, key=5, batch_size=B, epochs=4, checkpoints=ckpt, checkpoint=kill_after_two,
                 remainder="drop")
    assert ckpt.steps() == [1, 2]
    resumed, info = loop.run(sgd_step, start, ARRAYS, key=5, batch_size=B, epochs=4,
                             checkpoints=Checkpoints(tmp_path / "run"), remainder="drop")
    assert len(info) == 2 * 5 and int(resumed[1]) == 20
    assert float(resumed[0]) == float(full[0])
