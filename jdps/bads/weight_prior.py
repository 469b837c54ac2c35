"""The prior on BADS example weights and the coordinates their Langevin chain moves in.

Each weight w_i in [0, 1] has the energy R(w_i) = -log p(w_i) (up to a constant):

    "gaussian"      R(w) = (w - beta)^2 / (2 sigma_w^2)                      (default; reconstructed)
    "beta"          R(w) = -(a - 1) log w - (b - 1) log(1 - w),  Beta(a, b) with mean beta and std sigma_w:
                    a = beta k, b = (1 - beta) k, k = beta (1 - beta) / sigma_w^2 - 1
    "mean_penalty"  R(w) = N (mean(w) - beta)^2 / (2 sigma_w^2) on all N weights together, whose
                    gradient for w_i is (mean(w) - beta) / sigma_w^2

The chain variable z of a weight (state `weights` [N]) is, by `weight_param`:

    "reflect"  z = w, kept in [0, 1] by reflection at the bounds (default; clipping would pile
               probability mass onto the bounds and bias the chain)
    "logit"    z = u, w = sigmoid(u), with the log-Jacobian of the change of variables:
               energy in u = R(w) - log(w (1 - w)),  d/du = w (1 - w) R'(w) - (1 - 2 w)

`prior_grad(z)` is the derivative of that energy in z; the data term of the weight's gradient is
`dweight(z) * rho * l_i`. For the weight network the same R is a penalty on the network's outputs
(`batch_prior_energy`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_EDGE = 1e-6  # the Beta prior's gradient is evaluated on [_EDGE, 1 - _EDGE]


def beta_shape(mean: float, std: float) -> tuple[float, float]:
    """Beta(a, b) with the given mean and std; needs std^2 < mean (1 - mean)."""
    k = mean * (1 - mean) / std**2 - 1
    return mean * k, (1 - mean) * k


def weight_of(z, param: str):
    """The weight w in [0, 1] of chain variable z."""
    return jax.nn.sigmoid(z) if param == "logit" else z


def dweight(z, param: str):
    """dw/dz: 1 for reflect, w (1 - w) for logit."""
    if param == "logit":
        w = jax.nn.sigmoid(z)
        return w * (1 - w)
    return jnp.ones_like(z)


def initial_chain(mean: float, param: str) -> float:
    """The chain value whose weight is the prior mean beta."""
    return float(jnp.log(mean) - jnp.log1p(-mean)) if param == "logit" else mean


def prior_slope(w, w_bar, kind: str, mean: float, std: float):
    """R'(w) for each weight [...] (w_bar = mean of all N weights, used by "mean_penalty")."""
    if kind == "gaussian":
        return (w - mean) / std**2
    if kind == "beta":
        a, b = beta_shape(mean, std)
        w = jnp.clip(w, _EDGE, 1 - _EDGE)
        return -(a - 1) / w + (b - 1) / (1 - w)
    return jnp.broadcast_to((w_bar - mean) / std**2, jnp.shape(w))


def prior_grad(z, w_bar, param: str, kind: str, mean: float, std: float):
    """d/dz of the weight's prior energy in chain coordinates, Jacobian included: [...] -> [...]."""
    w = weight_of(z, param)
    g = dweight(z, param) * prior_slope(w, w_bar, kind, mean, std)
    return g - (1 - 2 * w) if param == "logit" else g


def project(z, param: str):
    """Reflect a reflect-chain into [0, 1] (any number of times); logit chains are unbounded."""
    if param != "reflect":
        return z
    r = jnp.mod(z, 2.0)
    return jnp.where(r > 1.0, 2.0 - r, r)


def batch_prior_energy(w, mask, kind: str, mean: float, std: float):
    """Minibatch estimate of R(w) / N for the weight network: w [b], mask [b] -> scalar.

    mean over the batch of R(w_i) ("gaussian", "beta"), or (mean_B(w) - beta)^2 / (2 sigma_w^2).
    """
    m = mask.astype(w.dtype)
    nb = jnp.maximum(m.sum(), 1.0)
    if kind == "mean_penalty":
        return ((m * w).sum() / nb - mean) ** 2 / (2 * std**2)
    if kind == "gaussian":
        r = (w - mean) ** 2 / (2 * std**2)
    else:
        a, b = beta_shape(mean, std)
        wc = jnp.clip(w, _EDGE, 1 - _EDGE)
        r = -(a - 1) * jnp.log(wc) - (b - 1) * jnp.log1p(-wc)
    return (m * r).sum() / nb
