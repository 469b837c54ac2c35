"""Small flax NNX models with a pure functional view, and the MiniLM sentence encoder in pure JAX.

`build_task(kind, x_shape, num_classes, seed=...)` (jdps.models.build) picks the model from the data's shape.
"""

from jdps.models.build import build_task
from jdps.models.cnn import CNN, cnn_task
from jdps.models.functional import Functional, functional
from jdps.models.layers import Dense
from jdps.models.minilm import MiniLM
from jdps.models.mlp import MLP, mlp_task
from jdps.models.transformer import (
    TransformerClassifier,
    TransformerLM,
    transformer_classifier_task,
    transformer_lm_task,
)

__all__ = [
    "CNN", "MLP", "Dense", "Functional", "MiniLM", "TransformerClassifier", "TransformerLM",
    "build_task", "cnn_task", "functional", "mlp_task", "transformer_classifier_task", "transformer_lm_task",
]
