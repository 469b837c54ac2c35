"""The pure functional view of a flax NNX model: `(graphdef, params)` -> `apply(params, x)`.

`params` is a plain nested dict of arrays (`nnx.State.to_pure_dict()`), so it composes with optax,
blackjax, `jax.vmap`/`jax.grad` and `NamedSharding` like any other pytree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
from flax import nnx

Params = dict[str, Any]


@dataclass(frozen=True, eq=False)
class Functional:
    """A model as a pure function of its parameters.

    `apply(params, x)` runs the model; `apply_tapped(params, perturbations, x)` also returns the
    inputs of every tapped `Dense` layer, with `perturbations` (zeros shaped like each layer's
    output, from `zero_perturbations`) added to the outputs so that their gradient is dl/dy.
    """

    graphdef: Any
    abstract_state: Any  # nnx.State of ShapeDtypeStructs: the tree `params` is poured into

    def module(self, params: Params) -> nnx.Module:
        state = jax.tree.map(lambda a: a, self.abstract_state)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state)

    def apply(self, params: Params, x, **kwargs):
        return self.module(params)(x, **kwargs)

    def zero_perturbations(self, params: Params, x, **kwargs) -> Params:
        """Zeros shaped like every tapped layer's output for input `x`: {path: {'outputs': [...]}}."""
        model = self.module(params)
        _, perturbations = nnx.capture(model, nnx.Perturbation)(x, **kwargs)
        return perturbations.to_pure_dict()

    def apply_tapped(self, params: Params, perturbations: Params, x, **kwargs):
        """Returns (outputs, inputs) with inputs = {layer path: {'inputs': x_layer}}."""
        model = self.module(params)
        init = jax.tree.map(nnx.Perturbation, perturbations)
        out, inputs = nnx.capture(model, nnx.Intermediate, init=nnx.State(init))(x, **kwargs)
        return out, inputs.to_pure_dict()


def functional(module: nnx.Module) -> tuple[Functional, Params]:
    """Split an NNX module into its pure view and its parameters (a plain dict)."""
    graphdef, state = nnx.split(module, nnx.Param)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    return Functional(graphdef, abstract), state.to_pure_dict()
