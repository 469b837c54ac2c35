"""A sharded feature store: a matrix [N, C] in a zarr v3 folder, written row chunk by row chunk by every process.

GTP's trajectory matrix A [N, T d] and influence score matrices [n_train, n_query] can outgrow one host's
memory and one process's time. A store holds such a matrix on disk through tensorstore's `zarr3` driver
(zarr-python, or any zarr v3 reader, opens it too):

    DIR/array/            the matrix, float32, chunks of `chunk_rows` whole rows, uncompressed (the bytes codec)
    DIR/ids/              int64 [N]: the example id of each row (DIR/column_ids/ [C] for a score matrix's queries)
    DIR/store.json        kind, shape, dtype, chunk_rows and `attributes` (the projection's provenance: key, d,
                          checkpoints), with the provenance of the run that wrote it
    DIR/fingerprint.json  what made it (options, input digests): a rerun with other inputs is refused
    DIR/chunks/<i>.json   chunk i's marker (its rows and the sha256 of its bytes), written after the chunk
    DIR/COMPLETE.json     written last, by process 0, once every chunk's marker is there

Chunk size: `chunk_rows` = the largest multiple of 128 rows (the pursuit's kernel block,
jdps.gtp.pursuit.rows.BLOCK) whose chunk holds at most CHUNK_BYTES = 16 MiB (at least 128 rows), e.g.
512 rows of A [N, 8192], 4,096 rows of [N, 1024]. A chunk is the unit of writing (one process writes it
whole: no two processes touch one file), of resuming (a killed writer loses at most the chunk it was
writing) and of reading (the streamed pursuit reads one chunk a block): 16 MiB is large enough that the
per-file cost is small next to the bytes (object stores advise objects of 8 MB and more) and small
enough that a process holds a few at once and that N / P rows still split into many chunks.

Writing (every process calls the same code; `jdps.distributed`):

    w = StoreWriter(DIR, (N, C), ids=ids, fingerprint=fp, attributes={...})
    for start, stop in w.pending:          this process's chunks not yet written (chunk i: rows
        w.write(start, rows(start, stop))  [i chunk_rows, (i + 1) chunk_rows)), shared out round-robin
    store = w.finish()                     waits for every process; process 0 writes COMPLETE.json

A rerun of the same writer after a kill (with any number of processes) writes only the chunks without a
marker. Durability: a chunk is not fsynced when written (that made writes 8x slower here); instead a
resumed writer first checks every marked chunk against its marker's sha256 (a chunk a machine crash lost
is written again), and every process fsyncs the chunks it wrote before COMPLETE.json is written. Reading: `FeatureStore(DIR)` refuses a store without COMPLETE.json (a writer was killed or is still
running), then reads rows as numpy (`store[a:b]`, `store[[i, j]]`, `store.blocks()`), which
`jdps.gtp.pursuit.solve` streams block by block; `store.to_npy(path)` exports it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from jdps import distributed as dist
from jdps.errors import InputError
from jdps.outputs import OutputLock, atomic, write_json

CHUNK_BYTES = 16 * 2**20
ROW_ALIGN = 128                 # jdps.gtp.pursuit.rows.BLOCK: a chunk is whole kernel blocks
FORMAT = "jdps-store/1"
SPEC, COMPLETE, FINGERPRINT, CHUNKS = "store.json", "COMPLETE.json", "fingerprint.json", "chunks"
KINDS = ("features", "scores")
CHUNK_ROWS_ENV = "JDPS_STORE_CHUNK_ROWS"    # overrides the default chunk_rows (the command lines' stores)


class IncompleteStoreError(InputError):
    """The store has no completeness marker: its writer was killed or is still running."""


def chunk_rows_for(columns: int, rows: int | None = None, itemsize: int = 4) -> int:
    """Rows of a chunk: the largest multiple of ROW_ALIGN with at most CHUNK_BYTES (at least ROW_ALIGN),
    no more than `rows` rounded up to ROW_ALIGN."""
    fit = max(ROW_ALIGN, CHUNK_BYTES // (int(columns) * itemsize) // ROW_ALIGN * ROW_ALIGN)
    return fit if rows is None else min(fit, -(-int(rows) // ROW_ALIGN) * ROW_ALIGN)


def _spec(path: Path, *, shape=None, chunk=None, dtype=None, create: bool = False) -> dict:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path.absolute())},
            "context": {"file_io_sync": False}}   # no fsync a chunk (8x slower): see StoreWriter on durability
    if create:
        spec["metadata"] = {"shape": list(shape), "data_type": dtype,
                            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunk)}},
                            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}]}
        spec.update(create=True, open=True)
    return spec


def _open(path: Path, **kwargs):
    import tensorstore as ts

    return ts.open(_spec(path, **kwargs)).result()


def _digest(block: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(block).data).hexdigest()


def _fsync(path: Path) -> None:
    """Flush a written file to disk (a chunk: tensorstore's zarr3 keys c/<row chunk>/0)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _markers(path: Path) -> set[int]:
    folder = path / CHUNKS
    return {int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()} if folder.is_dir() else set()


def _write_vector(path: Path, values: np.ndarray) -> None:
    arr = _open(path, shape=values.shape, chunk=(max(1, min(len(values), 1 << 20)),), dtype="int64", create=True)
    arr.write(values.astype(np.int64)).result()


class StoreWriter:
    """Writes the matrix [N, C] of a store at `path`, each process its own chunks (see the module docstring).

    ids int [N]: the example id of each row; column_ids int [C] (score matrices: the queries' ids);
    fingerprint: what makes the matrix (options, input digests; a store made by another is refused);
    attributes: stored in store.json (features: the projection's key, d and checkpoints); provenance: the
    record of the run (jdps.outputs.provenance); chunk_rows: default the variable JDPS_STORE_CHUNK_ROWS, else
    `chunk_rows_for(C, N)`.
    """

    def __init__(self, path, shape, *, ids, fingerprint: dict, kind: str = "features", attributes=None,
                 provenance=None, column_ids=None, chunk_rows: int | None = None):
        self.path = Path(path)
        if kind not in KINDS:
            raise InputError(f"unknown store kind {kind!r}; pass one of {KINDS}")
        if len(shape) != 2 or min(shape) < 1 or any(int(s) != s for s in shape):
            raise InputError(f"a store holds a non-empty matrix [N, C]; got shape {tuple(shape)}")
        self.shape = n, c = tuple(int(s) for s in shape)
        ids = np.asarray(ids)
        if ids.shape != (n,) or ids.dtype.kind not in "iu":
            raise InputError(f"ids must be integers [N] = [{n}], one per row; got {ids.dtype} {ids.shape}")
        if column_ids is not None:
            column_ids = np.asarray(column_ids)
            if column_ids.shape != (c,) or column_ids.dtype.kind not in "iu":
                raise InputError(f"column_ids must be integers [C] = [{c}]; got {column_ids.dtype} {column_ids.shape}")
        self.chunk_rows = int(chunk_rows or os.environ.get(CHUNK_ROWS_ENV) or chunk_rows_for(c, n))
        if self.chunk_rows < 1:
            raise InputError(f"chunk_rows must be a positive integer, got {chunk_rows}")
        self.chunks = -(-n // self.chunk_rows)
        layout = {"format": FORMAT, "kind": kind, "shape": list(self.shape), "dtype": "float32",
                  "chunk_rows": self.chunk_rows}
        self._lock, self._written = None, []
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"the store {self.path} is a file; pass a directory path (it is created if missing)")
        if dist.is_writer():
            if not self.path.absolute().parent.is_dir():
                raise InputError(f"the store {self.path}: the folder {self.path.absolute().parent} does not exist; "
                                 "create it or write elsewhere")
            self._lock = OutputLock([self.path], "feature store").acquire()
            try:
                self._claim(layout, fingerprint)
            except BaseException:
                self.close()
                raise
            self.array = _open(self.path / "array", shape=self.shape, chunk=(self.chunk_rows, c), dtype="float32",
                               create=True)
            _write_vector(self.path / "ids", ids)
            if column_ids is not None:
                _write_vector(self.path / "column_ids", column_ids)
            (self.path / CHUNKS).mkdir(exist_ok=True)
            write_json(self.path / SPEC, {**layout, "chunks": self.chunks, "attributes": dict(attributes or {}),
                                          "columns_have_ids": column_ids is not None}, provenance)
        dist.barrier(f"jdps-store-open:{self.path.absolute()}")
        if not dist.is_writer():
            self.array = _open(self.path / "array")
        import jax

        done = _markers(self.path)
        if done and not (self.path / COMPLETE).is_file():   # resuming: check the chunks a crash may have lost
            for i in sorted(done)[jax.process_index()::jax.process_count()]:
                if not self._intact(i):
                    (self.path / CHUNKS / f"{i}.json").unlink(missing_ok=True)
            dist.barrier(f"jdps-store-checked:{self.path.absolute()}")
            done = _markers(self.path)
        dist.barrier(f"jdps-store-listed:{self.path.absolute()}")   # every process listed before any writes

        pending = [i for i in range(self.chunks) if i not in done]
        mine = pending[jax.process_index()::jax.process_count()]
        self.resumed = len(done)
        self.pending = [(i * self.chunk_rows, min(n, (i + 1) * self.chunk_rows)) for i in mine]

    def _claim(self, layout: dict, fingerprint: dict) -> None:
        """Create the folder, or check that it holds a store of this layout and run (else refuse it)."""
        from jdps.checkpoint import check_fingerprint

        self.path.mkdir(exist_ok=True)
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise InputError(f"the store {self.path} is not writable; pass another directory")
        if any(self.path.iterdir()) and not (self.path / FINGERPRINT).is_file():
            raise InputError(f"{self.path} is a folder that holds no jdps store; pass a new or empty directory")
        try:
            check_fingerprint(self.path, {"layout": layout, "run": fingerprint})
        except InputError as err:
            detail = str(err).partition("(")[2].partition(")")[0] or "another run"
            raise InputError(f"the store {self.path} was written by a run with other inputs, options or layout "
                             f"({detail}); pass another --store directory, or delete this one to start over") from None

    def _intact(self, i: int) -> bool:
        """Whether chunk i's bytes match its marker's sha256."""
        try:
            marker = json.loads((self.path / CHUNKS / f"{i}.json").read_text())
            start, stop = marker["rows"]
            return marker["sha256"] == _digest(self.array[start:stop].read().result())
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def write(self, start: int, block) -> None:
        """Rows [start, start + len(block)) = block, one whole chunk; then its marker."""
        block = np.asarray(block, np.float32)
        i, stop = start // self.chunk_rows, min(self.shape[0], start + self.chunk_rows)
        if start % self.chunk_rows or block.shape != (stop - start, self.shape[1]):
            raise InputError(f"a store write is one whole chunk: rows [{start}, {stop}) need a block "
                             f"[{stop - start}, {self.shape[1]}] at a multiple of {self.chunk_rows}; got "
                             f"{block.shape} at row {start}")
        if not np.isfinite(block).all():
            bad = np.flatnonzero(~np.isfinite(block).all(1))[:10] + start
            raise InputError(f"rows {bad.tolist()} of the store {self.path} hold NaN or Inf; fix their inputs")
        self.array[start:stop].write(block).result()
        self._written.append(i)
        write_json(self.path / CHUNKS / f"{i}.json", {"rows": [start, stop], "sha256": _digest(block)})

    def fill(self, rows, progress=None) -> None:
        """write(start, rows(start, stop)) for every pending chunk of this process; progress: a bar's label."""
        from jdps.progress import bar

        shown = bar(progress, total=len(self.pending), desc="store chunks", unit="chunk")
        for start, stop in self.pending:
            self.write(start, rows(start, stop))
            shown.update(1)
        shown.close()

    def finish(self) -> FeatureStore:
        """Wait for every process; process 0 checks every chunk's marker and writes COMPLETE.json."""
        for i in self._written:              # this process's chunks on disk before the store is declared complete
            _fsync(self.path / "array" / "c" / str(i) / "0")
        dist.barrier(f"jdps-store-written:{self.path.absolute()}")
        try:
            if dist.is_writer():
                missing = sorted(set(range(self.chunks)) - _markers(self.path))
                if missing:
                    raise InputError(f"the store {self.path} lacks chunks {missing[:10]} after every process "
                                     "finished; run the same command again to write them")
                write_json(self.path / COMPLETE, {"format": FORMAT, "shape": list(self.shape),
                                                   "chunks": self.chunks})
        finally:
            self.close()
        dist.barrier(f"jdps-store-complete:{self.path.absolute()}")
        return FeatureStore(self.path)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class FeatureStore:
    """A complete store, read as a read-only matrix [N, C]: `store[a:b]`, `store[rows]`, `store.blocks()`;
    `ids` [N], `column_ids` [C] or None, `attributes`, `provenance`, `chunk_rows` (one read block)."""

    on_disk = True          # jdps.gtp.pursuit.solve streams it (as an np.memmap) instead of loading it

    def __init__(self, path):
        self.path = Path(path)
        spec_path = self.path / SPEC
        if not spec_path.is_file():
            raise InputError(f"{self.path} is not a jdps feature store (no {SPEC}); write one with "
                             f"`jdps features --store {self.path}` or jdps.store.StoreWriter")
        spec = json.loads(spec_path.read_text())
        if not (self.path / COMPLETE).is_file():
            raise IncompleteStoreError(
                f"the store {self.path} is incomplete: {len(_markers(self.path))} of {spec['chunks']} chunks are "
                f"written and it has no {COMPLETE} (its writer was killed or is still running); run the same "
                "command again to resume it, then read it")
        self.spec = spec
        self.shape = tuple(spec["shape"])
        self.dtype = np.dtype(spec["dtype"])
        self.chunk_rows = int(spec["chunk_rows"])
        self.kind = spec["kind"]
        self.attributes = spec.get("attributes", {})
        self.provenance = spec.get("provenance")
        self._array = _open(self.path / "array")
        if tuple(self._array.shape) != self.shape:
            raise InputError(f"the store {self.path} holds an array of shape {tuple(self._array.shape)} but its "
                             f"{SPEC} says {self.shape}; it was altered: write it again")
        self.ids = _open(self.path / "ids").read().result()
        self.column_ids = _open(self.path / "column_ids").read().result() if spec.get("columns_have_ids") else None

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        """Rows as numpy: a slice, an int, or int indices (any order, repeats allowed)."""
        if isinstance(key, tuple):                      # (rows, columns)
            out = self[key[0]]
            return out[key[1]] if out.ndim == 1 else out[:, key[1]]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"row {int(key)} is out of range for a store of {len(self)} rows")
            return self._array[i].read().result()
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            out = self._array[start:max(start, stop)].read().result()
            return out[::step] if step != 1 else out
        rows = np.asarray(key)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64).ravel()
        if rows.size == 0:
            return np.zeros((0, self.shape[1]), self.dtype)
        if rows.min() < -len(self) or rows.max() >= len(self):
            raise IndexError(f"row index out of range for a store of {len(self)} rows")
        rows = rows % len(self)
        unique, inverse = np.unique(rows, return_inverse=True)
        return self._array[unique].read().result()[inverse]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def blocks(self, rows: int | None = None):
        """(start, block [<= rows, C]) over the matrix, `rows` a block (default: one chunk); the next block is
        read while the caller works on this one."""
        rows = int(rows or self.chunk_rows)
        n = len(self)
        pending = self._array[0:min(rows, n)].read()
        for start in range(0, n, rows):
            block = pending.result()
            if start + rows < n:
                pending = self._array[start + rows:min(n, start + 2 * rows)].read()
            yield start, block

    def to_npy(self, path) -> Path:
        """Export the matrix to a .npy file (atomically, block by block; memory: one chunk)."""
        from jdps.outputs import suffixed

        path = suffixed(path, ".npy")
        with atomic(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.dtype, shape=self.shape)
            for start, block in self.blocks():
                out[start:start + len(block)] = block
            out.flush()
            del out
        return path

    def verify(self) -> list[int]:
        """The chunks whose bytes no longer match their marker's sha256 (reads the whole store)."""
        bad = []
        for start, block in self.blocks():
            marker = json.loads((self.path / CHUNKS / f"{start // self.chunk_rows}.json").read_text())
            if marker["sha256"] != _digest(block):
                bad.append(start // self.chunk_rows)
        return bad

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, kind={self.kind!r}, shape={self.shape}, chunk_rows={self.chunk_rows})"


def is_store(path) -> bool:
    """Whether `path` is a store directory (complete or not)."""
    return (Path(path) / SPEC).is_file()


def _tree_digest(*trees) -> str:
    """sha256 over the leaves (shapes, dtypes, bytes) of pytrees of arrays."""
    import jax

    h = hashlib.sha256()
    for leaf in jax.tree.leaves(trees):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.data)
    return h.hexdigest()


def local_mesh():
    """A mesh over this process's own devices (None with one): each process computes its chunks alone."""
    import jax

    devices = jax.local_devices()
    return None if len(devices) == 1 else dist.make_mesh(devices=devices)


def write_trajectory(path, task, checkpoints, data, *, d: int, key: int, ids=None, fingerprint=None,
                     provenance=None, chunk_rows: int | None = None, progress=None, **options) -> FeatureStore:
    """GTP's trajectory matrix A [N, T d] of `data` (a dict of arrays [N, ...]) written into the store at `path`.

    Every process calls it alike: each computes the rows of its own chunks over all T checkpoints
    (`jdps.gtp.trajectory.trajectory_features` on the chunk's examples, on its local devices) and writes
    them; a rerun after a kill computes only the chunks not written yet. key: the projections' integer seed;
    ids [N] (default 0..N-1); fingerprint: what else identifies the run (default: digests of the data and of
    the checkpoints); options: checkpoint_weights, shared_projection, normalize, method, param_filter, kind,
    batch_size (as trajectory_features). store.json's attributes record the projection: key, d, T, options.
    """
    from jdps.gtp.trajectory import trajectory_features

    if not isinstance(data, dict) or not data:
        raise InputError("write_trajectory reads the rows of each chunk: pass the data as a dict of arrays [N, ...]")
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
        raise InputError(f"key must be an integer seed (it is recorded in the store), got {key!r}")
    n = len(next(iter(data.values())))
    mesh = local_mesh()

    def rows(start, stop):
        part = {k: np.asarray(v[start:stop]) for k, v in data.items()}
        return trajectory_features(task, checkpoints, part, d=d, key=int(key), mesh=mesh, **options).features

    width = rows(0, 1).shape[1]            # T d, or T L k^2 for factored features
    plain = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in options.items()
             if v is None or isinstance(v, (bool, int, float, str, list, tuple, np.ndarray))}
    attributes = {"key": int(key), "d": int(d), "checkpoints": len(checkpoints), **plain}
    if fingerprint is None:
        fingerprint = {"data": _tree_digest(data), "checkpoints": _tree_digest(list(checkpoints))}
    writer = StoreWriter(path, (n, width), ids=np.arange(n) if ids is None else ids, kind="features",
                         fingerprint={"attributes": attributes, **fingerprint}, attributes=attributes,
                         provenance=provenance, chunk_rows=chunk_rows)
    try:
        writer.fill(rows, progress)
    except BaseException:
        writer.close()
        raise
    return writer.finish()
