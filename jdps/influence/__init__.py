"""Influence: inverse-Hessian-vector products and the scores built on them.

    curvature   K-FAC / EK-FAC factors of dense and attention (q/k/v/o) layers
    ihvp        IHVP(fit, solve): exact, cg, lissa, kfac, ekfac, identity
    scores      fit, query vectors, JVP scoring, per-example scores, TracIn
"""

from jdps.influence.scores import (Fitted, fit, jvp_scores, query_gradient, query_scores, query_vector,
                                   query_vectors, scores, tracin, train_scores)

__all__ = ["Fitted", "fit", "jvp_scores", "query_gradient", "query_scores", "query_vector", "query_vectors", "scores",
           "tracin", "train_scores"]
