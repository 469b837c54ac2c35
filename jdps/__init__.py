"""jdps: data point selection in JAX.

The public API; each name lives in the module named after its concept:

    data          jdps.data: load, load_npz, from_arrays, corrupt_labels, meta_split, ... (see jdps.data)
    models        jdps.models: MLP, CNN, TransformerLM, TransformerClassifier, MiniLM, functional, Dense
    Task          jdps.task: loss_fn(params, batch) -> per-example losses [B]
    train         jdps.train: train, evaluate, per_example_losses
    gradients     jdps.gradients.per_example, jdps.gradients.factored, jdps.gradients.projection, jdps.gradients.features, jdps.gradients.param_filter
    selection     jdps.selection: Selection, select, mean_weight_by_group
    BADS          jdps.bads (sampler), jdps.bads.sgmcmc (per-leaf SGLD), jdps.baselines (uniform ... l2rw, mwn)
    GTP           jdps.gtp.trajectory (features), jdps.gtp.pursuit (solvers), jdps.gtp (fit / select)
    influence     jdps.influence.curvature (K-FAC / EK-FAC), jdps.influence.ihvp, jdps.influence
    checkpoints   jdps.checkpoint.Checkpoints

The method modules are imported on use (`from jdps import bads`), so `import jdps` stays light.
"""

from jdps import data, models
from jdps.errors import (CheckpointError, InputError, JdpsError, MissingDatasetError,
                         SamplerDivergedError, TrainingDivergedError)
from jdps.gradients.features import Features, per_example_features
from jdps.gradients.factored import factored_features, grad_norms, layer_grads
from jdps.gradients.param_filter import last_layers
from jdps.gradients.per_example import per_example_grads
from jdps.gradients.projection import project
from jdps.selection import Selection, mean_weight_by_group, select
from jdps.task import Task, classification_task, lm_task
from jdps.train import TrainResult, evaluate, per_example_losses, train

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "Features", "InputError", "JdpsError", "MissingDatasetError", "SamplerDivergedError",
    "Selection", "Task", "TrainResult", "TrainingDivergedError", "classification_task", "data", "evaluate",
    "factored_features", "grad_norms", "last_layers", "layer_grads", "lm_task", "mean_weight_by_group",
    "models", "per_example_features", "per_example_grads", "per_example_losses", "project", "select",
    "train",
]
