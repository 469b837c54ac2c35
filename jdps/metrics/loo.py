"""Leave-one-out correlation (Koh & Liang 2017): do the scores predict what removing a point does?

For K removed training examples r_1..r_K (at least 40 for a meaningful correlation) and Q query examples:

    effect[k, q] = f_q(theta*(all)) - f_q(theta*(all but r_k))      what including r_k does to q's output
    LOO_q = Pearson over k of (tau[q, r_k], effect[k, q]);          LOO = mean_q LOO_q,  se = std_q / sqrt(Q)

with f the correct-class margin and theta* the optimum: meaningful on convex models trained to convergence
(L2-regularised softmax regression), where retraining is deterministic and the effect of one point is
not drowned by the noise of training (`retrain.leave_one_out` warm-starts each retraining at theta*(all)).
"""

from __future__ import annotations

import numpy as np

from jdps.errors import InputError
from jdps.metrics.correlation import Score, pearson, summarize

MIN_REMOVED = 40


def loo_correlation(scores, removed, effects) -> Score:
    """Pearson correlation, per query, of scores tau [Q, N] at the removed examples `removed` [K] with
    `effects` [K, Q] (output with all examples minus output without r_k); mean and standard error."""
    tau = np.asarray(scores, np.float64)
    tau = tau[None] if tau.ndim == 1 else tau
    removed = np.asarray(removed)
    effects = np.asarray(effects, np.float64)
    effects = effects[:, None] if effects.ndim == 1 else effects
    if tau.ndim != 2 or removed.ndim != 1 or not np.issubdtype(removed.dtype, np.integer):
        raise InputError(f"scores must be [Q, N] and removed int [K]; got {tau.shape} and {removed.dtype} {removed.shape}")
    if len(removed) < MIN_REMOVED:
        raise InputError(f"leave-one-out correlation needs at least {MIN_REMOVED} removed examples, got "
                         f"{len(removed)}; remove more (the correlation of a few points is noise)")
    if effects.shape != (len(removed), tau.shape[0]):
        raise InputError(f"effects must be [K, Q] = {(len(removed), tau.shape[0])}, got {effects.shape}")
    return summarize(pearson(tau[:, removed].T, effects))
