"""A multi-layer perceptron classifier.

    h_0 = flatten(x) [B, d_in],  h_{j+1} = relu(h_j W_j + b_j),  logits = h_J W_head + b_head  [B, C].

Layers are `hidden[j]` (j = 0..J-1) and the output layer `head`, each a jdps `Dense`, so their
parameter paths are `('hidden', j, 'kernel')` and `('head', 'kernel')`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jdps.errors import InputError
from jdps.models.functional import Params, functional
from jdps.models.layers import Dense
from jdps.task import Task, classification_task


class MLP(nnx.Module):
    """x [B, ...] with prod(...) = d_in -> logits [B, num_classes]; ReLU between layers."""

    def __init__(self, d_in: int, hidden: Sequence[int], num_classes: int, *, rngs: nnx.Rngs):
        widths = [d_in, *hidden]
        self.d_in = d_in
        self.hidden = nnx.List([Dense(a, b, rngs=rngs) for a, b in itertools.pairwise(widths)])
        self.head = Dense(widths[-1], num_classes, rngs=rngs)

    def __call__(self, x):
        h = jnp.reshape(x, (x.shape[0], -1))
        if h.shape[1] != self.d_in:
            raise InputError(f"MLP expects {self.d_in} features per example, got input shape {x.shape}; "
                             f"build the MLP with d_in={h.shape[1]} or reshape the inputs")
        for layer in self.hidden:
            h = jax.nn.relu(layer(h))
        return self.head(h)


def mlp_task(key_or_seed, d_in: int, hidden: Sequence[int], num_classes: int) -> tuple[Task, Params]:
    """A cross-entropy classification task on a fresh MLP, and its initial parameters."""
    model, params = functional(MLP(d_in, hidden, num_classes, rngs=nnx.Rngs(key_or_seed)))
    return classification_task(model), params

