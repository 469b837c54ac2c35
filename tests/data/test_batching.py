"""Minibatches: epoch coverage, padded scoring, determinism, jit/scan gathering and the grain stream."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jdps.data.batching import device_arrays, epoch_indices, gather, ids_of, scoring_indices, stream
from jdps.data.dataset import Dataset, DatasetInfo
from jdps.errors import InputError

N, B = 23, 4


def toy(n=N):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    info = DatasetInfo(name="toy", provenance="synthetic", licence="none")
    return Dataset(x=x, y=np.arange(n) % 5, info=info, ids=np.array([f"u{i}" for i in range(n)]),
                   columns={"w": np.linspace(0, 1, n)})


class Records:
    """A random-access source of dict records, like a tfds data_source."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return {"x": self.data.x[i], "y": self.data.y[i], "w": self.data.columns["w"][i]}


def test_epoch_covers_each_index_once():
    idx = np.asarray(epoch_indices(jax.random.key(0), 24, 4))
    assert idx.shape == (6, 4) and idx.dtype == np.int32
    np.testing.assert_array_equal(np.sort(idx.ravel()), np.arange(24))
    idx = np.asarray(epoch_indices(jax.random.key(0), N, B))  # 23 = 5 * 4 + 3: the 3 left over are dropped
    assert idx.shape == (5, 4)
    assert len(set(idx.ravel().tolist())) == 20 and idx.min() >= 0 and idx.max() < N


def test_epoch_is_deterministic_by_key():
    a = epoch_indices(jax.random.key(1), 100, 10)
    np.testing.assert_array_equal(a, epoch_indices(jax.random.key(1), 100, 10))
    assert np.any(np.asarray(a) != np.asarray(epoch_indices(jax.random.key(2), 100, 10)))


def test_scoring_indices_pad_the_last_batch():
    np.testing.assert_array_equal(scoring_indices(10, 4), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 10]])
    np.testing.assert_array_equal(scoring_indices(8, 4), [[0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(scoring_indices(3, 5), [[0, 1, 2, 3, 3]])


def test_gather_values_mask_and_safe_scatter():
    data = toy()
    arrays = device_arrays(data)
    idx = scoring_indices(N, B)
    scores = jnp.full(N, -1.0)
    for row in idx:
        batch = jax.jit(gather)(arrays, row)
        valid = row < N
        np.testing.assert_array_equal(batch["mask"], valid)
        np.testing.assert_array_equal(batch["index"], row)
        np.testing.assert_array_equal(np.asarray(batch["x"])[valid], data.x[row[valid]])
        np.testing.assert_array_equal(np.asarray(batch["y"])[valid], data.y[row[valid]])
        assert np.isfinite(np.asarray(batch["x"])).all()  # padding rows read a real example
        scores = scores.at[batch["index"]].set(batch["x"][:, 0])  # padding index N is dropped
    np.testing.assert_array_equal(scores, data.x[:, 0])


def test_a_whole_epoch_scans_inside_jit():
    data = toy()
    arrays = device_arrays(data)
    traces = []

    @jax.jit
    def epoch(total, key):
        traces.append(1)

        def step(total, idx):
            batch = gather(arrays, idx)
            return total + (batch["x"].sum(1) * batch["mask"]).sum(), None
        return jax.lax.scan(step, total, epoch_indices(key, N, B))[0]

    for seed in range(3):
        key = jax.random.key(seed)
        kept = np.asarray(epoch_indices(key, N, B)).ravel()
        np.testing.assert_allclose(epoch(0.0, key), data.x[kept].sum(), rtol=1e-6)
    assert len(traces) == 1  # compiled once for every epoch


@pytest.mark.parametrize("source", ["dataset", "dict", "records"])
def test_stream_equals_in_memory_batches(source):
    data = toy()
    src = {"dataset": data, "dict": data.arrays(), "records": Records(data)}[source]
    arrays = device_arrays(data)
    key = jax.random.key(3)
    for grid, streamed in [(epoch_indices(key, N, B), stream(src, B, key=key, num_threads=2)),
                           (scoring_indices(N, B), stream(src, B, num_threads=2))]:
        streamed = list(streamed)
        assert len(streamed) == len(grid)
        for row, batch in zip(grid, streamed):
            expected = gather(arrays, row)
            assert set(batch) == set(expected) == {"x", "y", "w", "index", "mask"}
            assert batch["index"].dtype == np.int32 and batch["mask"].dtype == bool
            for k in expected:
                np.testing.assert_allclose(batch[k], expected[k], rtol=1e-6)


def test_ids_of_carries_user_ids():
    data = toy()
    batch = next(stream(data, B, key=jax.random.key(0), num_threads=1))
    np.testing.assert_array_equal(ids_of(data, batch["index"]), [f"u{i}" for i in batch["index"]])
    last = list(stream(data, B, num_threads=1))[-1]
    np.testing.assert_array_equal(ids_of(data, last["index"][last["mask"]]), ["u20", "u21", "u22"])
    with pytest.raises(InputError, match="padding"):
        ids_of(data, last["index"])


def test_bad_input():
    data = toy()
    with pytest.raises(InputError, match="batch_size"):
        epoch_indices(jax.random.key(0), N, N + 1)
    with pytest.raises(InputError, match="positive integer"):
        scoring_indices(N, 0)
    with pytest.raises(InputError, match="not numeric"):
        device_arrays({"x": data.x, "name": data.ids})
    with pytest.raises(InputError, match="may not be named"):
        device_arrays({"x": data.x, "index": np.arange(N)})
    with pytest.raises(InputError, match="mismatched"):
        device_arrays({"x": data.x, "y": data.y[:-1]})
    with pytest.raises(InputError, match="cannot stream"):
        stream(42, B)
