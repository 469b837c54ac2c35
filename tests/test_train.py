"""The training loop and evaluation against closed forms, sklearn and hand counts."""

import numpy as np
import jax
import jax.numpy as jnp
import optax
import pytest
from scipy.special import log_softmax
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from jdps.data.dataset import Dataset, DatasetInfo
from jdps.errors import InputError
from jdps.models.mlp import mlp_task
from jdps.task import Task
from jdps.train import TrainingDivergedError, evaluate, per_example_losses, train


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x, y = (d.data / 16).astype(np.float32), d.target
    order = np.random.default_rng(0).permutation(len(x))
    info = DatasetInfo("digits", "sklearn load_digits", "BSD-3-Clause", tuple(map(str, range(10))))
    return Dataset(x, y, info), order[:1300], order[1300:]


def linear_task():
    """Squared error l_i = (x_i . a + c - y_i)^2 / 2 of a linear model, as a plain Task."""
    return Task(loss_fn=lambda p, b: 0.5 * (b["x"] @ p["a"] + p["c"] - b["y"]) ** 2)


def test_mlp_learns_digits(digits):
    data, train_idx, test_idx = digits
    task, params = mlp_task(0, 64, [64], 10)
    test = data.take(test_idx)
    result = train(task, params, data, key=0, epochs=10, batch_size=64, optimizer=optax.adam(1e-2),
                   indices=train_idx, eval_data=test)
    logits = np.asarray(jax.jit(task.apply)(result.params, test.x))
    assert accuracy_score(test.y, logits.argmax(1)) > 0.9
    assert result.history["loss"].shape == (10,)
    assert result.history["step_loss"].shape == (10 * 21,)  # ceil(1300 / 64) steps an epoch (last one padded)
    assert result.history["eval_accuracy"].shape == (10,)
    assert result.history["loss"][-1] < result.history["loss"][0] / 3


def test_evaluate_matches_sklearn_on_every_example(digits):
    data, _, test_idx = digits
    task, params = mlp_task(1, 64, [16], 10)
    test = data.take(test_idx[:103])  # 103 = 6 * 16 + 7: the last batch is padded
    logits = np.asarray(jax.jit(task.apply)(params, test.x), np.float64)
    ce = -log_softmax(logits, axis=1)[np.arange(103), test.y]
    metrics = evaluate(task, params, test, batch_size=16)
    np.testing.assert_allclose(metrics["loss"], ce.mean(), rtol=1e-5)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(test.y, logits.argmax(1)))
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(test.y, logits.argmax(1)))
    np.testing.assert_allclose(per_example_losses(task, params, test, batch_size=16), ce, rtol=1e-5, atol=1e-6)
    # A plain task without a model view reports the loss only.
    assert set(evaluate(Task(loss_fn=task.loss_fn), params, test, batch_size=16)) == {"loss"}


@pytest.mark.parametrize("normalize", ["batch", "weights"])
def test_one_weighted_sgd_step_is_the_numpy_update(normalize):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 3)).astype(np.float32), rng.normal(size=9).astype(np.float32)
    w = rng.uniform(0, 2, size=9).astype(np.float32)
    idx = np.array([0, 2, 3, 5, 8])
    p0 = {"a": rng.normal(size=3).astype(np.float32), "c": np.float32(0.3)}
    result = train(linear_task(), p0, {"x": x, "y": y}, key=1, epochs=1, batch_size=5,
                   optimizer=optax.sgd(0.1), indices=idx, weights=w, normalize=normalize)
    r = x[idx] @ p0["a"] + p0["c"] - y[idx]
    denom = 5 if normalize == "batch" else w[idx].sum()
    np.testing.assert_allclose(result.params["a"], p0["a"] - 0.1 * (w[idx] * r) @ x[idx] / denom, rtol=1e-5)
    np.testing.assert_allclose(result.params["c"], p0["c"] - 0.1 * (w[idx] * r).sum() / denom, rtol=1e-5)
    np.testing.assert_allclose(result.history["loss"], [(w[idx] * 0.5 * r ** 2).sum() / denom], rtol=1e-5)


def test_an_epoch_visits_subset_examples_at_most_once_by_global_index():
    # l_i = p[index_i], so one SGD step with rate 1 moves p[i] by -w_i/4 for each i in a minibatch of 4.
    counter = Task(loss_fn=lambda p, b: p[b["index"]])
    idx = np.array([1, 2, 3, 5, 6, 7, 9, 10, 11, 13])
    w = np.arange(14, dtype=np.float32)
    result = train(counter, jnp.zeros(14), {"x": np.zeros((14, 1))}, key=3, epochs=1, batch_size=4,
                   optimizer=optax.sgd(1.0), indices=idx, weights=w, remainder="drop")
    moved = -np.asarray(result.params)
    assert np.all(moved[np.setdiff1d(np.arange(14), idx)] == 0)
    seen = moved[idx] != 0
    assert seen.sum() == 8  # two batches of 4; the last 2 examples of the permutation are dropped
    np.testing.assert_allclose(moved[idx][seen], w[idx][seen] / 4)
    padded = train(counter, jnp.zeros(14), {"x": np.zeros((14, 1))}, key=3, epochs=1, batch_size=4,
                   optimizer=optax.sgd(1.0), indices=idx, weights=w)       # the default pads the last batch
    moved = -np.asarray(padded.params)
    assert np.all(moved[idx] != 0) and np.all(moved[np.setdiff1d(np.arange(14), idx)] == 0)
    per_batch = np.isclose(moved[idx], w[idx] / 4) | np.isclose(moved[idx], w[idx] / 2)  # 2 valid rows: / 2
    assert per_batch.all() and np.isclose(moved[idx], w[idx] / 2).sum() == 2


def test_zero_weights_equal_leaving_the_examples_out():
    # Full batches, self-normalised: the same gradient, so Adam takes the same steps.
    rng = np.random.default_rng(2)
    data = {"x": rng.normal(size=(12, 3)).astype(np.float32), "y": rng.normal(size=12).astype(np.float32)}
    kept, dropped = np.array([0, 3, 4, 7, 9, 10]), np.array([1, 5, 11])
    weights = np.zeros(12, np.float32)
    weights[kept] = rng.uniform(0.5, 2, size=6)
    p0 = {"a": np.zeros(3, np.float32), "c": np.float32(0.0)}
    common = dict(key=5, epochs=5, optimizer=optax.adam(0.1), weights=weights, normalize="weights")
    with_zeros = train(linear_task(), p0, data, indices=np.concatenate([kept, dropped]), batch_size=9, **common)
    without = train(linear_task(), p0, data, indices=kept, batch_size=6, **common)
    for a, b in zip(jax.tree.leaves(with_zeros.params), jax.tree.leaves(without.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(with_zeros.params["a"], p0["a"])


def test_same_key_same_result_and_another_key_another_order():
    rng = np.random.default_rng(1)
    data = {"x": rng.normal(size=(20, 3)).astype(np.float32), "y": rng.normal(size=20).astype(np.float32)}
    p0 = {"a": np.zeros(3, np.float32), "c": np.float32(0.0)}
    task, sgd = linear_task(), optax.sgd(0.1)  # the same objects reuse one compiled epoch
    run = lambda key: train(task, p0, data, key=key, epochs=2, batch_size=6, optimizer=sgd).params["a"]
    np.testing.assert_array_equal(run(7), run(jax.random.key(7)))
    assert not np.allclose(run(7), run(8))


def test_diverging_loss_names_the_step_and_the_fix():
    # l = log(a): one SGD step of rate 10 from a = 1 gives a = -9, so the next loss is NaN.
    task = Task(loss_fn=lambda p, b: jnp.log(p["a"]) * jnp.ones(b["x"].shape[0]))
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, step 1 .*learning rate"):
        train(task, {"a": jnp.float32(1.0)}, {"x": np.zeros((4, 1))}, key=0, epochs=3, batch_size=4,
              optimizer=optax.sgd(10.0))


@pytest.mark.parametrize("kwargs, message", [
    (dict(indices=np.array([], int)), "indices is empty"),
    (dict(indices=np.array([0, 6])), r"\[0, 6\)"),
    (dict(weights=np.ones(5)), "one weight per example"),
    (dict(weights=np.array([1, 1, -1, 1, 1, 1.0])), ">= 0"),
    (dict(weights=np.array([1, 1, np.nan, 1, 1, 1.0])), "finite"),
    (dict(weights=np.array([0, 0, 0, 1, 1, 1.0]), indices=np.array([0, 1])), "zero"),
    (dict(normalize="mean"), "normalize"),
    (dict(batch_size=0), "batch_size"),
])
def test_bad_training_inputs_raise_input_errors(kwargs, message):
    data = {"x": np.zeros((6, 3), np.float32), "y": np.zeros(6, np.float32)}
    args = dict(key=0, epochs=1, batch_size=2) | kwargs
    with pytest.raises(InputError, match=message):
        train(linear_task(), {"a": np.zeros(3, np.float32), "c": np.float32(0)}, data, **args)


def test_bad_data_raises_input_errors():
    p0 = {"a": np.zeros(3, np.float32), "c": np.float32(0)}
    with pytest.raises(InputError, match="no 'x'"):
        train(linear_task(), p0, {"y": np.zeros(3)}, key=0, epochs=1, batch_size=2)
    with pytest.raises(InputError, match="empty"):
        train(linear_task(), p0, {"x": np.zeros((0, 3)), "y": np.zeros(0)}, key=0, epochs=1, batch_size=2)
    with pytest.raises(InputError, match="NaN"):
        train(linear_task(), p0, {"x": np.full((2, 3), np.nan), "y": np.zeros(2)}, key=0, epochs=1, batch_size=2)
    with pytest.raises(InputError, match="mismatched"):
        train(linear_task(), p0, {"x": np.zeros((3, 3)), "y": np.zeros(2)}, key=0, epochs=1, batch_size=2)


def test_a_run_whose_every_epoch_is_saved_returns_the_saved_parameters(tmp_path):
    from jdps.checkpoint import Checkpoints

    task, params = mlp_task(0, 4, (), 2)
    data = {"x": np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32), "y": np.arange(20) % 2}
    first = train(task, params, data, key=0, epochs=2, batch_size=5, checkpoints=Checkpoints(tmp_path / "c"))
    again = train(task, params, data, key=0, epochs=2, batch_size=5, checkpoints=Checkpoints(tmp_path / "c"))
    assert len(first.history["loss"]) == 2 and len(again.history["loss"]) == 0        # nothing left to run
    jax.tree.map(np.testing.assert_array_equal, again.params, first.params)
