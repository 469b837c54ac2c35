"""GTP, gradient trajectory pursuit: projected per-example gradients stacked over checkpoints, and a
sparse non-negative pursuit that selects a subset whose weighted trajectory matches a target.

    trajectory  the features A [N, T d] and the target b [T d]
    pursuit     NN-OMP, CoSaMP, GradMatch, top-k (in memory, sharded or streamed)
    selector    fit (features) and select (pursuit) -> a Selection
"""

from jdps.gtp.selector import GTPOptions, GTPSelector, GTPState, fit, select

__all__ = ["GTPOptions", "GTPSelector", "GTPState", "fit", "select"]
