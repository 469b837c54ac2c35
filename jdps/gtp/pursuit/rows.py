"""Row access for the correlation step of a pursuit: A in memory, sharded over a mesh, or streamed from disk.

Every layout computes c_i = a_i . r with one fused row reduction (the same loop for every row), so a row
gives the same bits wherever it sits (identical rows tie exactly), and keeps the top-m scores with the lowest index first
among equals:

    device_rows(a, norms, n, mesh)   inside jit; with a mesh the rows are sharded over its 'data' axis: each
                                     shard takes its local top-m, an all-gather merges them (shard order is
                                     index order), and a chosen row is gathered by a psum of masked reads
    StreamedRows(a, block_rows, dt)  on the host, for A (e.g. an np.memmap) larger than memory: every scan
                                     reads A in blocks of block_rows rows through the same kernel

`scan(r, tau, signed, m, score, exclude)` -> (values [m], rows int32 [m]), values -inf where there is no candidate;
score 'gated' keeps c_i (signed: |c_i|) > tau |a_i|, 'correlation' is c_i, 'cosine' c_i / |a_i|.
`gather(rows)` -> [m, D] (zero rows for index -1).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "data"
BLOCK = 128                # rows per correlation kernel call
STREAM_ROWS = 64 * BLOCK   # default rows per block read from disk


def dots(a, r):
    """a [n, D] . r [D] -> [n]: one fused multiply and row reduction, the same loop for every row (bitwise
    equal for equal rows, on any layout), which XLA splits over the host's threads (a loop over blocks of
    rows runs on one thread; scripts/bench_pursuit.py compares the two)."""
    return (a.astype(r.dtype) * r).sum(1)


def sq_norms(a, dt):
    return jnp.square(a.astype(dt)).sum(1)


def scores(c, norms, score: str, tau, signed):
    if score == "gated":  # c (signed: |c|) where it exceeds tau |a_i|, else -inf
        c = jnp.where(signed, jnp.abs(c), c)
        return jnp.where(c > tau * norms, c, -jnp.inf)
    if score == "correlation":
        return c
    return jnp.where(norms > 0, c / jnp.where(norms > 0, norms, 1.0), 0.0)  # cosine (up to |b|)


def local_top(a, norms, r, offset, tau, signed, exclude, *, m: int, score: str, n: int):
    """Top-m scores of a block of rows (global index offset + position; rows >= n are padding); the rows
    `exclude` int32 [k] (e.g. the support; -1 for none) score -inf."""
    c = dots(a, r)
    size = c.shape[0]
    rows = offset + jnp.arange(size, dtype=jnp.int32)
    v = jnp.where(rows < n, scores(c, norms, score, tau, signed), -jnp.inf)
    here = exclude - offset
    v = v.at[jnp.where((exclude >= 0) & (here >= 0) & (here < size), here, size)].set(-jnp.inf, mode="drop")
    v, pos = lax.top_k(v, min(m, size))
    return v, rows[pos]


def merge(values, rows, m: int):
    """Top-m of candidate lists concatenated in increasing index order (lax.top_k keeps the first of equals)."""
    v, pos = lax.top_k(values, m)
    return v, rows[pos]


class Rows(NamedTuple):
    scan: Callable    # (r [D], tau, signed, m, score, exclude [k]) -> (values [m], rows int32 [m]); -inf where none
    gather: Callable  # rows int [m] -> [m, D] (zero rows for index -1)


def device_rows(a, norms, n: int, mesh) -> Rows:
    """Row access inside jit: a [Np, D] (padded rows zero), norms [Np]; sharded over mesh axis 'data'."""
    dt = norms.dtype
    if mesh is None:
        def scan(r, tau, signed, m, score, exclude):
            return local_top(a, norms, r, 0, tau, signed, exclude, m=m, score=score, n=n)

        def gather(rows):
            return jnp.where((rows >= 0)[:, None], a[jnp.maximum(rows, 0)].astype(dt), 0.0)
        return Rows(scan, gather)

    def scan(r, tau, signed, m, score, exclude):
        def local(a, norms, r, tau, signed, exclude):
            offset = lax.axis_index(AXIS) * a.shape[0]
            v, rows = local_top(a, norms, r, offset, tau, signed, exclude, m=m, score=score, n=n)
            return merge(lax.all_gather(v, AXIS, tiled=True), lax.all_gather(rows, AXIS, tiled=True), m)
        return jax.shard_map(local, mesh=mesh, in_specs=(P(AXIS), P(AXIS), P(), P(), P(), P()),
                             out_specs=(P(), P()), check_vma=False)(a, norms, r, tau, signed, exclude)

    def gather(rows):
        def local(a, rows):
            size = a.shape[0]
            here = rows - lax.axis_index(AXIS) * size
            own = (rows >= 0) & (here >= 0) & (here < size)
            return lax.psum(jnp.where(own[:, None], a[jnp.clip(here, 0, size - 1)].astype(dt), 0.0), AXIS)
        return jax.shard_map(local, mesh=mesh, in_specs=(P(AXIS), P()), out_specs=P(), check_vma=False)(a, rows)
    return Rows(scan, gather)


@partial(jax.jit, static_argnames=("dt", "mesh"))
def device_norms(a, *, dt, mesh):
    if mesh is None:
        return jnp.sqrt(sq_norms(a, dt))
    return jax.shard_map(lambda x: jnp.sqrt(sq_norms(x, dt)), mesh=mesh, in_specs=P(AXIS), out_specs=P(AXIS))(a)


_block_top = jax.jit(local_top, static_argnames=("m", "score", "n"))
_block_norms = jax.jit(lambda a, dt: jnp.sqrt(sq_norms(a, dt)), static_argnames="dt")


def pad_rows(a, multiple: int):
    extra = -len(a) % multiple
    return np.concatenate([a, np.zeros((extra, a.shape[1]), a.dtype)]) if extra else a


def on_device(A, dt, mesh):
    """A (numpy or jax) as dt on the device(s); with a mesh, rows padded with zeros to whole blocks on every
    shard (on one device A is used as it is: one copy at most, none for a jax array of dtype dt)."""
    if mesh is None:
        return jnp.asarray(A, dt)
    xp = jnp if isinstance(A, jax.Array) else np
    a = xp.asarray(A, dt)
    extra = -len(a) % (BLOCK * mesh.shape[AXIS])
    if extra:
        a = xp.pad(a, ((0, extra), (0, 0)))
    return jax.device_put(a, NamedSharding(mesh, P(AXIS)))


class StreamedRows:
    """Row access on the host for A on disk: every scan reads A in blocks of `block_rows` rows."""

    def __init__(self, a, block_rows: int, dt):
        self.a, self.block_rows, self.dt, self.n = a, block_rows, dt, len(a)
        self.norms = np.concatenate([np.asarray(_block_norms(block, dt)) for _, block in self._blocks()])

    def _blocks(self):
        if hasattr(self.a, "blocks"):      # a jdps.store.FeatureStore: reads the next block while this one is scanned
            for start, block in self.a.blocks(self.block_rows):
                yield start, pad_rows(np.asarray(block), BLOCK)
            return
        for start in range(0, self.n, self.block_rows):
            yield start, pad_rows(np.asarray(self.a[start:start + self.block_rows]), BLOCK)

    def scan(self, r, tau, signed, m, score, exclude):
        best = None
        for start, block in self._blocks():
            v, rows = _block_top(block, self.norms[start:start + len(block)], r, np.int32(start), tau, signed,
                                 exclude, m=m, score=score, n=self.n)
            if best is not None:
                v, rows = jnp.concatenate([best[0], v]), jnp.concatenate([best[1], rows])
            best = merge(v, rows, min(m, v.shape[0]))
        return best

    def gather(self, rows):
        rows = np.asarray(rows)
        out = np.zeros((len(rows), self.a.shape[1]), self.dt)
        ok = rows >= 0
        out[ok] = self.a[rows[ok]]
        return jnp.asarray(out)
