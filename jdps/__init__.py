"""jdps: data point selection in JAX.

The public API; each name lives in the module named after its concept:

    data          jdps.data: load, load_npz, from_arrays, corrupt_labels, meta_split, ... (see jdps.data)
    models        jdps.models: MLP, CNN, TransformerLM, TransformerClassifier, MiniLM, functional, Dense
    Task          jdps.task: loss_fn(params, batch) -> per-example losses [B]
    train         jdps.train: train, evaluate, per_example_losses
    gradients     jdps.per_example, jdps.factored, jdps.projection, jdps.features, jdps.param_filter
    selection     jdps.selection: Selection, select, mean_weight_by_group
    BADS          jdps.bads (sampler), jdps.sgmcmc (per-leaf SGLD), jdps.baselines (uniform ... l2rw, mwn)
    GTP           jdps.trajectory (features), jdps.pursuit (solvers), jdps.gtp (fit / select)
    influence     jdps.curvature (K-FAC / EK-FAC), jdps.ihvp, jdps.influence
    checkpoints   jdps.checkpoint.Checkpoints

The method modules are imported on use (`from jdps import bads`), so `import jdps` stays light.
"""

from jdps import data, models
from jdps.errors import (CheckpointError, InputError, JdpsError, MissingDatasetError,
                         SamplerDivergedError, TrainingDivergedError)
from jdps.features import Features, per_example_features
from jdps.factored import factored_features, grad_norms, layer_grads
from jdps.param_filter import last_layers
from jdps.per_example import per_example_grads
from jdps.projection import project
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
