"""The baselines in the selector contract: `random`, and the training baselines that produce weights.

random     select draws k pool examples uniformly from `key` (fit does nothing; no params needed)
uniform, meta_only, dup_meta, oracle, cds, l2rw, mwn
           fit trains `params` on the pool and the reference (meta) set for the run length, as
           `jdps.baselines.run_baseline`, and returns its `BaselineResult`; select reads out the weight
           each example was trained with (every example, or the top k of them)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import optax

from jdps.baselines import run_baseline
from jdps.baselines.common import BaselineResult
from jdps.data.dataset import host_arrays
from jdps.errors import InputError
from jdps.selection import Selection, random_subset
from jdps.selectors import Selector, size, weighted


@dataclass(frozen=True)
class TrainingOptions:
    """The run every training baseline shares: `epochs` epochs of ceil(N / batch_size) Adam(learning_rate) steps."""

    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3


@dataclass(frozen=True)
class MixingOptions(TrainingOptions):
    """dup_meta: copies of the meta set (default about N / M); oracle: `clean` bool [N]."""

    dup_factor: int | None = None
    clean: np.ndarray | None = None


@dataclass(frozen=True)
class CDSOptions(TrainingOptions):
    base_epochs: int | None = None
    tune_epochs: int = 10
    r_floor: float = 0.2
    half_life: float = 0.25


@dataclass(frozen=True)
class ReweightOptions(TrainingOptions):
    meta_batch_size: int = 100
    lookahead_lr: float = 0.1


@dataclass(frozen=True)
class MWNOptions(ReweightOptions):
    net_width: int = 100


@dataclass(frozen=True)
class RandomOptions:
    """random has no fit options."""


_OPTIONS = {"uniform": TrainingOptions, "meta_only": TrainingOptions, "dup_meta": MixingOptions,
            "oracle": MixingOptions, "cds": CDSOptions, "l2rw": ReweightOptions, "mwn": MWNOptions}
_SPECIFIC = {"dup_meta": ("dup_factor",), "oracle": ("clean",)}


class BaselineSelector(Selector):
    state_type = BaselineResult

    @classmethod
    def options_for(cls, name: str):
        return _OPTIONS[name]

    def fit(self, pool, reference=None, *, key) -> BaselineResult:
        if reference is None:
            raise InputError(f"{self.name} trains on the pool and the reference (meta) set: pass reference=")
        o = self.options
        shared = {f.name for f in fields(TrainingOptions)}
        extra = {f.name: getattr(o, f.name) for f in fields(o) if f.name not in shared}
        extra = {k: v for k, v in extra.items() if k in _SPECIFIC.get(self.name, extra)}
        if self.name in ("l2rw", "mwn"):
            extra["meta_batch_size"] = min(o.meta_batch_size, len(host_arrays(reference, "reference")["x"]))
        n = len(host_arrays(pool, "pool")["x"])
        return run_baseline(self.name, self.task, self.params, pool, reference, key=key, epochs=o.epochs,
                            batch_size=min(o.batch_size, n), optimizer=optax.adam(o.learning_rate),
                            **{k: v for k, v in extra.items() if v is not None})

    def select(self, state: BaselineResult, *, budget=None, fraction=None, key=None, threshold=None,
               **select_options) -> Selection:
        if select_options:
            raise InputError(f"{self.name} select takes budget, fraction or threshold; not {sorted(select_options)}")
        info = {"method": self.name, "steps": state.info.get("steps")}
        return weighted(state.weights, budget=budget, fraction=fraction, threshold=threshold, info=info)

    def state_tree(self, state: BaselineResult) -> dict:
        return {"params": state.params, "weights": state.weights, "history": dict(state.history)}

    def state_from_tree(self, tree: dict) -> BaselineResult:
        return BaselineResult(tree["params"], np.asarray(tree["weights"]), tree.get("history", {}), {})


class RandomSelector(Selector):
    Options, needs_params, state_type = RandomOptions, False, None

    def fit(self, pool, reference=None, *, key=None) -> dict:
        """{'n': the pool size}: random needs nothing else."""
        return {"n": np.asarray(len(host_arrays(pool, "pool")["x"]))}

    def select(self, state, *, budget=None, fraction=None, key=None, **select_options) -> Selection:
        if select_options:
            raise InputError(f"random select takes budget or fraction and key; not {sorted(select_options)}")
        n = int(state["n"])
        k = size(n, budget, fraction)
        if k is None:
            raise InputError("random needs the size of its subset: pass budget=k or fraction=f")
        if key is None:
            raise InputError("random draws its subset from a key: pass key=0 (an int seed) or a jax.random.key")
        indices = random_subset(key, n, budget=k)
        return Selection(indices, np.ones(k), None, {"method": "random", "budget": k})

    def state_tree(self, state) -> dict:
        return dict(state)

    def state_from_tree(self, tree: dict) -> dict:
        return {"n": np.asarray(tree["n"])}
