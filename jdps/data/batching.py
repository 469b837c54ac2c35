"""Fixed-shape minibatches by global index: on the device inside jit, or streamed through grain.

A batch is a dict of per-example arrays [B, ...] plus `index` (int32 [B], global example ids) and
`mask` (bool [B], False on padding). Both paths cut the same batches from the same index grid:

- `epoch_indices(key, n, B)`: training, a permutation of 0..n-1 drawn from the `jax.random` key,
  cut into n // B rows of B (the last partial batch is dropped) -> int32 [n // B, B]; every mask True.
  With remainder="pad": ceil(n / B) rows, the last padded with n, so every example comes once.
- `scoring_indices(n, B)`: every example once, in order, the last row padded with the index n
  -> int32 [ceil(n / B), B]; mask = index < n.

Padding rows carry index n (one past the end): jnp gathers clamp it (the row repeats example n - 1,
so it stays finite) and jnp scatters (`.at[index].set/add`) drop it, so per-example state is never
overwritten by padding; reduce over batch rows with `mask`. On the device:

    data = device_arrays(dataset)
    def epoch(state, key):
        return jax.lax.scan(lambda s, idx: step(s, gather(data, idx)), state, epoch_indices(key, n, B))

For pools too large for the device, `stream` reads the same batches through grain from numpy arrays or
any random-access source (`__len__`, `__getitem__` -> dict, e.g. a tfds `data_source`); its training
order comes from the same `epoch_indices(key, ...)`, so for one key both paths give identical batches.
The permutation itself lives on the host (4 bytes per example).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jdps.data.dataset import Dataset, host_arrays
from jdps.errors import InputError

RESERVED = ("index", "mask")


def check_batch_size(n: int, batch_size: int, *, training: bool) -> None:
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")
    if n < 1:
        raise InputError("the dataset is empty; batches need at least one example")
    if training and batch_size > n:
        raise InputError(
            f"batch_size {batch_size} is larger than the {n} examples, so a training epoch (which drops the "
            f"last partial batch) would be empty; pass batch_size <= {n}")


@partial(jax.jit, static_argnums=(1, 2, 3))
def _permuted(key, n: int, batch_size: int, pad: bool):
    order = jax.random.permutation(key, n).astype(jnp.int32)
    if pad:
        steps = -(-n // batch_size)
        return jnp.concatenate([order, jnp.full((steps * batch_size - n,), n, jnp.int32)]).reshape(steps, batch_size)
    steps = n // batch_size
    return order[: steps * batch_size].reshape(steps, batch_size)


def epoch_indices(key, n: int, batch_size: int, *, remainder: str = "drop") -> jax.Array:
    """One training epoch: a permutation of 0..n-1 from `key`, as int32 [n // B, B] (remainder="drop")
    or [ceil(n / B), B] with the last row padded with n (remainder="pad"; mask = index < n)."""
    if remainder not in ("drop", "pad"):
        raise InputError(f"remainder must be 'drop' or 'pad', got {remainder!r}")
    check_batch_size(n, batch_size, training=True)
    return _permuted(key, int(n), int(batch_size), remainder == "pad")


def scoring_indices(n: int, batch_size: int) -> np.ndarray:
    """Every example once, in order: int32 [ceil(n / B), B], the last row padded with n (mask = index < n)."""
    check_batch_size(n, batch_size, training=False)
    steps = -(-n // batch_size)
    return np.minimum(np.arange(steps * batch_size), n).astype(np.int32).reshape(steps, batch_size)


def _arrays(data) -> dict:
    arrays = data.arrays() if isinstance(data, Dataset) else dict(data)
    clash = [k for k in RESERVED if k in arrays]
    if clash:
        raise InputError(f"per-example arrays may not be named {clash}: batches add those keys; rename them")
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InputError(f"mismatched lengths {lengths}: every per-example array needs one row per example")
    return arrays


def device_arrays(data: Dataset | Mapping, sharding=None) -> dict[str, jax.Array]:
    """Put a dataset's per-example arrays (x, y, numeric columns) on the device once.

    `data` is a `Dataset` (its `arrays()`) or a dict of arrays [N, ...]; `sharding` goes to
    `jax.device_put`. Non-numeric columns (strings, objects) stay behind: leave them out or encode them.
    """
    arrays = _arrays(data)
    bad = [k for k, v in arrays.items() if np.asarray(v).dtype.kind not in "biuf"]
    if bad:
        raise InputError(f"arrays {bad} are not numeric and cannot go on the device; "
                         "drop them from the dict or encode them as integers")
    return jax.device_put({k: np.asarray(v) for k, v in arrays.items()}, sharding)


def gather(arrays: Mapping, index) -> dict:
    """Batch rows `index` int [B] of arrays [N, ...]: {name: [B, ...], 'index': [B], 'mask': index < N}.

    Works under jit on device arrays (padding index N is clamped to N - 1 for the read).
    """
    n = len(next(iter(arrays.values())))
    index = jnp.asarray(index, jnp.int32)
    batch = {k: jnp.take(v, index, axis=0, mode="clip") for k, v in arrays.items()}
    return {**batch, "index": index, "mask": index < n}


def ids_of(dataset: Dataset, index) -> np.ndarray:
    """The user ids of the examples `index` int [...] -> ids [...]; padding (index >= N) is an error."""
    index = np.asarray(index)
    if index.size and (index.min() < 0 or index.max() >= len(dataset)):
        raise InputError(
            f"index holds values outside [0, {len(dataset)}) (padding rows carry index {len(dataset)}); "
            "drop padding first, e.g. ids_of(dataset, batch['index'][batch['mask']])")
    return dataset.ids[index]


class _Rows:
    """Reads batches of rows from numpy arrays or from a random-access source of dict records."""

    def __init__(self, source):
        if isinstance(source, (Dataset, Mapping)):
            arrays = {k: np.asarray(v) for k, v in _arrays(source).items()}
            self.n = len(next(iter(arrays.values())))
            self.read = lambda idx: {k: v[idx] for k, v in arrays.items()}
        elif hasattr(source, "__len__") and hasattr(source, "__getitem__"):
            self.n = len(source)
            many = getattr(source, "__getitems__", None)

            def read(idx):
                records = many(idx.tolist()) if many else [source[int(i)] for i in idx]
                if RESERVED[0] in records[0] or RESERVED[1] in records[0]:
                    raise InputError(f"source records may not hold keys {RESERVED}: batches add them")
                return {k: np.stack([r[k] for r in records]) for k in records[0]}

            self.read = read
        else:
            raise InputError(f"cannot stream from {type(source).__name__}: pass a Dataset, a dict of arrays, "
                             "or a random-access source with __len__ and __getitem__ returning dicts")

    def __call__(self, index: np.ndarray) -> dict:
        index = np.asarray(index, np.int32)
        return {**self.read(np.minimum(index, self.n - 1)), "index": index, "mask": index < self.n}


class ScoringBatches:
    """Every example of a Dataset or dict of arrays once, in order, as host-side numpy batches
    {name: [B, ...], 'index': [B], 'mask': [B]} (the last padded, as `gather` pads); numeric arrays only.
    Re-iterable: each pass reads the rows again, so only one batch is held at a time."""

    def __init__(self, data, batch_size: int, name: str = "data"):
        self._rows = _Rows(host_arrays(data, name))
        self.grid = scoring_indices(self._rows.n, batch_size)

    def __len__(self) -> int:
        return len(self.grid)

    def __iter__(self) -> Iterator[dict]:
        return (self._rows(row) for row in self.grid)


def scoring_batches(data, batch_size: int, name: str = "data") -> Iterable[dict]:
    """`ScoringBatches` of a Dataset or dict of arrays [N, ...]; `data` itself when it already yields
    batches that carry 'index' (and 'mask', False on padding)."""
    if isinstance(data, (Dataset, Mapping)):
        return ScoringBatches(data, batch_size, name)
    return data


def stream(source, batch_size: int, *, key=None, num_threads: int = 4, prefetch: int = 8) -> Iterator[dict]:
    """One epoch of numpy batches through a grain pipeline, in the same format as `gather`.

    With `key`: the training epoch `epoch_indices(key, n, B)`; without: the scoring pass
    `scoring_indices(n, B)`. `source` is a `Dataset`, a dict of arrays [N, ...], or a random-access
    source of dict records. Batches are read by `num_threads` threads, `prefetch` batches ahead.
    """
    rows = _Rows(source)
    grid = (np.asarray(epoch_indices(key, rows.n, batch_size)) if key is not None
            else scoring_indices(rows.n, batch_size))
    import grain  # imported here: only streaming needs it

    pipeline = grain.MapDataset.source(grid).map(rows)
    options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)
    return iter(pipeline.to_iter_dataset(options))
