"""A task: what a user supplies to every selector.

The one required piece is `loss_fn(params, batch) -> per-example losses [B]`. Models built with
jdps `Dense` layers also give `model` (their `Functional` view) and `output_loss(outputs, batch) -> [B]`,
so that `loss_fn(params, batch) == output_loss(model.apply(params, batch['x']), batch)`; that lets the
per-example gradient engine use exact factored forms (ghost norms, LoGra projections, K-FAC factors).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from jdps import losses
from jdps.errors import InputError

if TYPE_CHECKING:  # annotations only: importing jdps.models here would be circular
    from jdps.models.functional import Functional

Batch = dict[str, Any]


@dataclass(frozen=True, eq=False)
class Task:
    loss_fn: Callable[[Any, Batch], Any]
    model: Functional | None = None
    output_loss: Callable[[Any, Batch], Any] | None = None

    def apply(self, params, x):
        if self.model is None:
            raise InputError("this task has only a loss_fn, no model view; build it with "
                             "Task.from_model(functional_model, output_loss)")
        return self.model.apply(params, x)

    @classmethod
    def from_model(cls, model: Functional, output_loss: Callable[[Any, Batch], Any]) -> "Task":
        def loss_fn(params, batch):
            return output_loss(model.apply(params, batch["x"]), batch)
        return cls(loss_fn=loss_fn, model=model, output_loss=output_loss)


def classification_task(model: Functional) -> Task:
    """Cross-entropy on `batch['x']` -> logits [B, C] against `batch['y']` [B]."""
    return Task.from_model(model, lambda logits, batch: losses.cross_entropy(logits, batch["y"]))


def lm_task(model: Functional) -> Task:
    """Next-token loss on token windows `batch['x']` [B, L] (mean over non-pad targets)."""
    return Task.from_model(model, lambda logits, batch: losses.next_token_loss(logits, batch["x"]))
