"""Small flax NNX models with a pure functional view, and the MiniLM sentence encoder in pure JAX."""

from jdps.models.cnn import CNN, cnn_task
from jdps.models.functional import Functional, functional
from jdps.models.layers import Dense
from jdps.models.minilm import MiniLM
from jdps.models.mlp import MLP, mlp_task
from jdps.models.transformer import (TransformerClassifier, TransformerLM, transformer_classifier_task,
                                     transformer_lm_task)

__all__ = [
    "CNN", "Dense", "Functional", "MLP", "MiniLM", "TransformerClassifier", "TransformerLM",
    "cnn_task", "functional", "mlp_task", "transformer_classifier_task", "transformer_lm_task",
]
