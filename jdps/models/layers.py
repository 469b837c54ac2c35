"""Dense layer whose inputs and output-gradients can be tapped.

Every dense projection of the jdps models is a `Dense`, so the per-example gradient engine can find
them by path and compute exact factored forms (ghost norms, LoGra projections, K-FAC factors) without
materialising per-example gradients:

    y = x W + b,   x [..., d_in],  W [d_in, d_out],  b [d_out]
    dl/dW = sum_t x_t^T delta_t,   delta = dl/dy.

Outside `nnx.capture` the layer is a plain affine map. Inside `nnx.capture(..., nnx.Intermediate,
init=perturbations)` it records its input under `inputs` and adds the zero perturbation `outputs`
to its output, so the gradient of the loss with respect to that perturbation is delta.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

LECUN_NORMAL = nnx.initializers.lecun_normal()  # the kernel's default initialiser


def _keep_last(previous, current):
    return current


class Dense(nnx.Module):
    """Affine map `y = x @ kernel + bias` with taps; kernel [d_in, d_out], bias [d_out]."""

    def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs, use_bias: bool = True,
                 kernel_init=LECUN_NORMAL, dtype=jnp.float32):
        self.d_in, self.d_out = d_in, d_out
        self.kernel = nnx.Param(kernel_init(rngs.params(), (d_in, d_out), dtype))
        self.bias = nnx.Param(jnp.zeros((d_out,), dtype)) if use_bias else None

    def __call__(self, x):
        self.sow(nnx.Intermediate, "inputs", x, reduce_fn=_keep_last, init_fn=lambda: None,
                 capture_noop=True)
        y = x @ self.kernel[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return self.perturb("outputs", y, capture_noop=True)
