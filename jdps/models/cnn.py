"""A small convolutional classifier for 28x28x1 images (Fashion-MNIST, MNIST).

    h_1 = maxpool_2(relu(conv1_3x3(x))),  h_2 = maxpool_2(relu(conv2_3x3(h_1))),
    logits = flatten(h_2) W_head + b_head   [B, C].

x may be [B, H, W, C_in], [B, H, W] or flat [B, H*W*C_in]; it is reshaped to `in_shape`. The
convolutions are `nnx.Conv` (SAME padding); the classifier `head` is a jdps `Dense`, so the gradient
engine can tap it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jdps.errors import InputError
from jdps.models.functional import Params, functional
from jdps.models.layers import Dense
from jdps.task import Task, classification_task


class CNN(nnx.Module):
    """x [B, *in_shape] (or any shape with the same size per example) -> logits [B, num_classes]."""

    def __init__(self, in_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs,
                 channels: Sequence[int] = (16, 32)):
        if len(in_shape) != 3:
            raise InputError(f"in_shape must be (height, width, channels), got {tuple(in_shape)}")
        height, width, c_in = in_shape
        c1, c2 = channels
        self.in_shape = tuple(in_shape)
        self.conv1 = nnx.Conv(c_in, c1, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(c1, c2, (3, 3), rngs=rngs)
        self.head = Dense((height // 4) * (width // 4) * c2, num_classes, rngs=rngs)

    def __call__(self, x):
        if math.prod(x.shape[1:]) != math.prod(self.in_shape):
            raise InputError(f"CNN expects images of shape {self.in_shape}, got input shape {x.shape}; "
                             "build the CNN with the right in_shape")
        h = jnp.reshape(x, (x.shape[0], *self.in_shape)).astype(jnp.float32)
        h = nnx.max_pool(jax.nn.relu(self.conv1(h)), (2, 2), strides=(2, 2))
        h = nnx.max_pool(jax.nn.relu(self.conv2(h)), (2, 2), strides=(2, 2))
        return self.head(jnp.reshape(h, (h.shape[0], -1)))


def cnn_task(key_or_seed, in_shape: Sequence[int] = (28, 28, 1), num_classes: int = 10,
             channels: Sequence[int] = (16, 32)) -> tuple[Task, Params]:
    """A cross-entropy classification task on a fresh CNN, and its initial parameters."""
    module = CNN(in_shape, num_classes, rngs=nnx.Rngs(key_or_seed), channels=channels)
    model, params = functional(module)
    return classification_task(model), params
