"""jdps: data point selection in JAX.

The public API; each name lives in the module named after its concept:

    data          jdps.data: load, load_npz, from_arrays, corrupt_labels, meta_split, ... (see jdps.data)
    models        jdps.models: MLP, CNN, TransformerLM, TransformerClassifier, MiniLM, functional, Dense, build_task
    Task          jdps.task: loss_fn(params, batch) -> per-example losses [B]
    train         jdps.train: train, evaluate, per_example_losses
    gradients     jdps.gradients.per_example, jdps.gradients.factored, jdps.gradients.projection, jdps.gradients.features, jdps.gradients.param_filter
    selection     jdps.selection: Selection, select, mean_weight_by_group
    BADS          jdps.bads (sampler), jdps.bads.sgmcmc (per-leaf SGLD), jdps.baselines (uniform ... l2rw, mwn)
    GTP           jdps.gtp.trajectory (features), jdps.gtp.pursuit (solvers), jdps.gtp (fit / select)
    influence     jdps.influence.curvature (K-FAC / EK-FAC), jdps.influence.ihvp, jdps.influence
    checkpoints   jdps.checkpoint.Checkpoints

Every name is imported on first use (PEP 562), so `import jdps` (and `jdps --help`) loads no jax; the
method modules are imported on use too (`from jdps import bads`).
"""

import importlib
import sys
import types

from jdps.errors import (
    CheckpointError,
    InputError,
    JdpsError,
    MissingDatasetError,
    SamplerDivergedError,
    TrainingDivergedError,
)

__version__ = "0.1.0"

# public name -> the module that defines it (a module itself when the name is that module's)
_LAZY = {
    "data": "jdps.data", "models": "jdps.models",
    "Features": "jdps.gradients.features", "per_example_features": "jdps.gradients.features",
    "factored_features": "jdps.gradients.factored", "grad_norms": "jdps.gradients.factored",
    "layer_grads": "jdps.gradients.factored", "last_layers": "jdps.gradients.param_filter",
    "per_example_grads": "jdps.gradients.per_example", "project": "jdps.gradients.projection",
    "Selection": "jdps.selection", "mean_weight_by_group": "jdps.selection", "select": "jdps.selection",
    "Task": "jdps.task", "classification_task": "jdps.task", "lm_task": "jdps.task",
    "TrainResult": "jdps.train", "evaluate": "jdps.train", "per_example_losses": "jdps.train",
    "train": "jdps.train",
}

__all__ = [
    "CheckpointError", "Features", "InputError", "JdpsError", "MissingDatasetError", "SamplerDivergedError",
    "Selection", "Task", "TrainResult", "TrainingDivergedError", "classification_task", "data", "evaluate",
    "factored_features", "grad_norms", "last_layers", "layer_grads", "lm_task", "mean_weight_by_group",
    "models", "per_example_features", "per_example_grads", "per_example_losses", "project", "select",
    "train",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'jdps' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if name in ("data", "models") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`jdps.train` stays the function `train`: importing the submodule jdps.train does not rebind it."""

    def __setattr__(self, name: str, value) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
