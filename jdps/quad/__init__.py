"""Quad: influence for quality, clusters chosen by a multi-armed bandit for diversity.

    kmeans      k-means++ and Lloyd's iterations (restarts vmapped)
    bandit      the UCB bandit over clusters, rewards shared with neighbouring clusters
    selector    fit (curvature, reference vector, clusters) and select (the bandit's rounds)
"""

from jdps.quad.selector import (ACCEPTANCE, PAPER, SCORES, QuadOptions, QuadSelector, QuadState, default_clusters,
                                fit, scaled_defaults, select)

__all__ = ["ACCEPTANCE", "PAPER", "SCORES", "QuadOptions", "QuadSelector", "QuadState", "default_clusters", "fit",
           "scaled_defaults", "select"]
