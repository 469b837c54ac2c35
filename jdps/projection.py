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
    """R [m, d] with i.i.d. entries s / sqrt(d): s = +-1 (rademacher) or N(0, 1) (gaussian)."""
    check_kind(kind)
    if kind == "rademacher":
        s = jax.random.rademacher(key, shape, jnp.float32)
    else:
        s = jax.random.normal(key, shape, jnp.float32)
    return s / math.sqrt(shape[-1])


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
    n_blocks = -(-p // BLOCK_ROWS)
    g = jnp.pad(g.astype(jnp.float32), ((0, 0), (0, n_blocks * BLOCK_ROWS - p)))
    g = g.reshape(b, n_blocks, BLOCK_ROWS).transpose(1, 0, 2)

    def step(acc, jg):
        j, gj = jg
        return acc + gj @ block(key, j, d, kind), None

    out, _ = jax.lax.scan(step, jnp.zeros((b, d), jnp.float32), (jnp.arange(n_blocks), g))
    return out
