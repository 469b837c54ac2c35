"""Random projections of per-example gradients, generated from a key block by block.

A projection P [p, d] has i.i.d. entries s / sqrt(d), s Rademacher (+-1) or standard normal, so
E[P P^T] = I and E[(P^T g) . (P^T h)] = g . h. P is never held whole: its row block j,

    P[j*BLOCK_ROWS : (j+1)*BLOCK_ROWS] = R(fold_in(key, j), [BLOCK_ROWS, d]) / sqrt(d)

(the last block cut to p rows), is drawn when needed and `project` accumulates g @ P_j over the blocks.
P depends only on (key, p, d, kind): never on how many examples are projected at once.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

from jdps.errors import InputError

BLOCK_ROWS = 2048
KINDS = ("rademacher", "gaussian")


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InputError(f"unknown projection kind {kind!r}; pass one of {KINDS}")
    return kind


def random_matrix(key, shape: tuple[int, int], kind: str = "rademacher") -> jax.Array:
    """R [m, d] with i.i.d. entries s / sqrt(d): s = +-1 (rademacher) or N(0, 1) (gaussian).

    Rademacher signs are read 32 to a random word (32x fewer draws than one draw per sign):
    s[r, c] = 1 - 2 * (bit c mod 32 of w[r, c div 32]),  w = jax.random.bits(key, [m, ceil(d / 32)], uint32).
    """
    check_kind(kind)
    m, d = shape
    if kind == "rademacher":
        words = jax.random.bits(key, (m, -(-d // 32)), jnp.uint32)
        bits = (words[:, :, None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
        s = 1.0 - 2.0 * bits.reshape(m, -1)[:, :d].astype(jnp.float32)
    else:
        s = jax.random.normal(key, shape, jnp.float32)
    return s / math.sqrt(d)


def block(key, j, d: int, kind: str = "rademacher") -> jax.Array:
    """Row block j of the projection: [BLOCK_ROWS, d]."""
    return random_matrix(jax.random.fold_in(key, j), (BLOCK_ROWS, d), kind)


@partial(jax.jit, static_argnames=("d", "kind"))
def project(g, key, d: int, kind: str = "rademacher") -> jax.Array:
    """g [B, p] -> g @ P [B, d], drawing P one row block at a time (memory O(BLOCK_ROWS * d))."""
    if int(d) != d or d < 1:
        raise InputError(f"projection dimension d must be a positive integer, got {d!r}")
    check_kind(kind)
    b, p = g.shape
    g = g.astype(jnp.float32)
    n_full, rest = divmod(p, BLOCK_ROWS)

    def step(j, acc):
        return acc + jax.lax.dynamic_slice_in_dim(g, j * BLOCK_ROWS, BLOCK_ROWS, axis=1) @ block(key, j, d, kind)

    out = jnp.zeros((b, d), jnp.float32)
    if n_full:
        out = jax.lax.fori_loop(0, n_full, step, out)
    if rest:
        out = out + g[:, n_full * BLOCK_ROWS:] @ block(key, n_full, d, kind)[:rest]
    return out
