"""UCB over K arms (Quad's clusters) with rewards shared among neighbouring arms: pure functions.

State: per arm c the reward sum R_c and the pull count n_c; n = sum_c n_c. Quad's cluster score is

    mean_c = R_c / n_c  (0 before any pull),     UCB_c = mean_c + alpha sqrt(2 ln max(n, 1) / (n_c + 1))

with no initial pull of every arm: before the first pull every UCB is 0 and ties are broken at random.
A pull of arm c with reward r is shared with every arm j whose centroid lies within `radius` of c's,
weighted by closeness w_cj = 1 - d(c, j) / radius (w_cc = 1), and each share counts as a pull:

    R_j <- R_j + w_cj r,   n_j <- n_j + 1      for every j with d(c, j) < radius

d is the cosine distance 1 - cos(mu_c, mu_j) (metric='cosine') or the Euclidean distance (metric='l2')
between centroids. Arms pulled in one round update the state one after another; the sum is the same.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jdps.errors import InputError

METRICS = ("cosine", "l2")


class BanditState(NamedTuple):
    """reward_sum R [K] and count n [K] (pulls, shared ones included)."""

    reward_sum: jax.Array
    count: jax.Array


def init(num_arms: int, dtype=jnp.float32) -> BanditState:
    """No arm pulled yet."""
    if int(num_arms) != num_arms or num_arms < 1:
        raise InputError(f"a bandit needs at least one arm, got num_arms={num_arms}")
    return BanditState(jnp.zeros(num_arms, dtype), jnp.zeros(num_arms, dtype))


@jax.jit
def mean_reward(state: BanditState) -> jax.Array:
    """R_c / n_c, 0 for an arm never pulled: [K]."""
    return jnp.where(state.count > 0, state.reward_sum / jnp.maximum(state.count, 1), 0.0)


@jax.jit
def ucb(state: BanditState, alpha) -> jax.Array:
    """mean_c + alpha sqrt(2 ln max(n, 1) / (n_c + 1)): [K]."""
    n = jnp.maximum(state.count.sum(), 1.0)
    return mean_reward(state) + alpha * jnp.sqrt(2.0 * jnp.log(n) / (state.count + 1.0))


def distances(centroids, metric: str = "cosine") -> jax.Array:
    """d(mu_c, mu_j) [K, K]: 1 - cosine similarity, or the Euclidean distance."""
    c = jnp.asarray(centroids)
    if metric == "cosine":
        unit = c / jnp.maximum(jnp.linalg.norm(c, axis=1, keepdims=True), jnp.finfo(c.dtype).tiny)
        return jnp.clip(1.0 - unit @ unit.T, 0.0, 2.0)
    if metric == "l2":
        return jnp.sqrt(jnp.maximum(((c[:, None] - c[None]) ** 2).sum(-1), 0.0))
    raise InputError(f"unknown metric {metric!r}; pass one of {METRICS}")


def closeness(centroids, radius: float, metric: str = "cosine") -> jax.Array:
    """w [K, K]: w_cj = 1 - d(c, j) / radius where d(c, j) < radius, else 0; w_cc = 1 (radius 0: no sharing)."""
    if not radius >= 0:
        raise InputError(f"the neighbour radius must be >= 0 (0: share with no neighbour), got {radius}")
    if radius == 0:
        return jnp.eye(len(centroids), dtype=jnp.result_type(jnp.asarray(centroids).dtype, jnp.float32))
    d = distances(centroids, metric)
    d = d * (1.0 - jnp.eye(len(d), dtype=d.dtype))                                 # d(c, c) = 0 exactly
    return jnp.where(d < radius, 1.0 - d / radius, 0.0)


@partial(jax.jit, static_argnums=3)
def choose(key, scores, available, m: int) -> tuple[jax.Array, jax.Array]:
    """The m available arms of highest score, best first, ties in random order from `key`.

    scores [K], available bool [K] -> (arms int32 [m], valid bool [m]); valid is False on the slots
    left over when fewer than m arms are available.
    """
    priority = jax.random.permutation(key, scores.shape[0])
    masked = jnp.where(available, scores, -jnp.inf)
    order = jnp.lexsort((priority, -masked))[:m]
    return order.astype(jnp.int32), available[order]


@jax.jit
def update(state: BanditState, arms, rewards, valid, weights) -> BanditState:
    """Share each valid pull (arm arms[i], reward rewards[i]) with its neighbours by `weights` [K, K]."""
    w = jnp.where(valid[:, None], weights[arms], 0.0)                              # [m, K]
    r = jnp.where(valid, rewards, 0.0)[:, None]
    return BanditState(state.reward_sum + (w * r).sum(0), state.count + (w > 0).sum(0))


def check_alpha(alpha) -> float:
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise InputError(f"the exploration constant alpha must be finite and >= 0, got {alpha}")
    return alpha
