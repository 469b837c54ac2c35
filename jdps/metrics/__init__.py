"""Attribution measured as the field measures it (docs/attribution.md).

    lds(scores, subsets, outputs)             linear datamodeling score: mean Spearman over queries, with its se
    loo_correlation(scores, removed, effects) leave-one-out Pearson (convex models)
    noisy_label_auroc(self_influence, noisy)  AUROC of self-influence for finding mislabelled examples
    self_scores(selector, state, pool)        the diagonal of a selector's scores of the pool on itself
    random_subsets(n, m, fraction, seed=)     the M random subsets of the LDS
    train_many(task, params, data, subsets, key=, ...)   M models on M subsets, vmapped, resumable
    margins(task, stacked, data)              [M, Q] correct-class margins of those models
    leave_one_out(task, theta, data, removed, ...)       the K leave-one-out retrainings from the optimum theta
"""

from jdps.metrics.correlation import Score, pearson, ranks, spearman, summarize
from jdps.metrics.lds import lds, masks, predicted_outputs, random_subsets
from jdps.metrics.loo import loo_correlation
from jdps.metrics.noisy import auroc, noisy_label_auroc, self_scores
from jdps.metrics.retrain import (
           leave_one_out,
           loo_subsets,
           margins,
           stack,
           train_many,
           unstack,
)

__all__ = ["Score", "auroc", "lds", "leave_one_out", "loo_correlation", "loo_subsets", "margins", "masks",
           "noisy_label_auroc", "pearson", "predicted_outputs", "random_subsets", "ranks", "self_scores", "spearman",
           "stack", "summarize", "train_many", "unstack"]
