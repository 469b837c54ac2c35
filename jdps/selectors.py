"""One contract for every selection method, in the spirit of optax's GradientTransformation:

    sel = jdps.selectors.make("bads", task, params, epochs=20)    # options: the method's frozen dataclass
    state = sel.fit(pool, reference, key=0)                       # the expensive, cacheable part
    selection = sel.select(state, fraction=0.1)                   # Selection(indices, weights, scores, info)
    S = sel.scores(state, query)                                  # [Q, N], attribution methods only
    sel.save("state_dir", state); state = sel.load("state_dir")   # a long fit done once (orbax)

`pool` is the candidate training set, `reference` the meta / target / query set (a jdps `Dataset` or a
dict of per-example arrays [N, ...]). `params` is one parameter pytree, or, for the methods that need
several (GTP's and TracIn's checkpoints), a sequence of them. Options that shape `fit` live in one frozen
dataclass per method (`options_type(name)`), with its defaults in one place and named presets beside it
(`make(name, ..., preset="...")`); options of one selection are `select` keywords. Keys are an int seed
or a `jax.random.key`; sizes are `budget=` (a count) or `fraction=` (of the pool). Without a size, a
method that weights examples returns every example with its weight; a method that only ranks or picks
(gtp, quad, influence, tracin, trak, random) needs one. Whenever fewer examples come back than asked,
`info["stop_reason"]` says why: a selector never fills a budget silently.

    name        params                what a budget means                       fit options / select options
    bads        one (initial)         top-k by posterior-mean weight            BADSConfig fields, run length / threshold
    gtp         checkpoints [T]       at most k by non-negative pursuit         d, grad_form, ... / solver, tol
    quad        one (trained)         k accepted by the bandit over clusters    ihvp, damping, clusters / alpha, tau, ...
    influence   one (trained)         top-k by influence on the reference       ihvp, damping / -
    tracin      checkpoints [T]       top-k by TracIn on the reference          learning_rates / -
    trak        models [M] (or one)   top-k by TRAK on the reference            d, damping, sgld_samples / -
    random      none (None)           k uniformly at random                     - / -
    uniform, meta_only, dup_meta, cds, l2rw, mwn, oracle
                one (initial)         top-k by the weight training gave         the baseline's options and run length
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from jdps.errors import CheckpointError, InputError
from jdps.selection import Selection, readout
from jdps.validate import budget_from

# name -> (module, class): imported on use, so listing the names imports no method
_REGISTRY = {
    "bads": ("jdps.bads.selector", "BADSSelector"),
    "gtp": ("jdps.gtp.selector", "GTPSelector"),
    "quad": ("jdps.quad.selector", "QuadSelector"),
    "influence": ("jdps.influence.selector", "InfluenceSelector"),
    "tracin": ("jdps.influence.selector", "TracInSelector"),
    "trak": ("jdps.influence.selector", "TRAKSelector"),
    "random": ("jdps.baselines.selector", "RandomSelector"),
    **{name: ("jdps.baselines.selector", "BaselineSelector")
       for name in ("uniform", "meta_only", "dup_meta", "cds", "l2rw", "mwn", "oracle")},
}


def names() -> tuple[str, ...]:
    """Every selection method of the contract."""
    return tuple(_REGISTRY)


def _class(name: str):
    if name not in _REGISTRY:
        raise InputError(f"unknown selector {name!r}; choose one of {names()}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)


def options_type(name: str):
    """The frozen dataclass of `name`'s fit options (its fields and defaults)."""
    return _class(name).options_for(name)


def make(name: str, task=None, params=None, **options) -> "Selector":
    """The selector `name` bound to a task and its parameters; `options` are fields of
    `options_type(name)`, or `preset="..."` (a named preset) with fields that change it, or
    `options=` an instance of the dataclass."""
    return _class(name)(name, task, params, **options)


def resolve_options(cls, presets: dict, name: str, options: dict):
    """An instance of the dataclass `cls` from `options` (fields; `preset` names an entry of `presets`;
    `options` passes an instance)."""
    options = dict(options)
    given = options.pop("options", None)
    preset = options.pop("preset", None)
    if given is not None:
        if options or preset is not None:
            raise InputError(f"{name}: pass either options=... or fields and a preset, not both")
        if not isinstance(given, cls):
            raise InputError(f"{name}: options must be a {cls.__name__}, got {type(given).__name__}")
        return given
    if preset is not None and preset not in presets:
        raise InputError(f"{name} has no preset {preset!r}; its presets are {sorted(presets) or 'none'}")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise InputError(f"{name} takes no option {unknown}; its options are {sorted(fields)}")
    base = presets[preset] if preset is not None else cls()
    return dataclasses.replace(base, **options)


def size(n: int, budget: int | None, fraction: float | None) -> int | None:
    """k for a pool of n from budget or fraction (None when neither is given; both is an error)."""
    if budget is None and fraction is None:
        return None
    return budget_from(n, budget=budget, fraction=fraction)


def weighted(weights, *, budget=None, fraction=None, threshold=None, info=None) -> Selection:
    """The selection of a method that weights every example [N]: without a size, every example with its
    weight (best first); with budget / fraction, the top k (weight 1); with threshold, those >= it."""
    modes = {"budget": budget, "fraction": fraction, "threshold": threshold}
    given = {k: v for k, v in modes.items() if v is not None}
    if len(given) > 1:
        raise InputError(f"give at most one of budget, fraction and threshold, got {sorted(given)}")
    if not given:
        return readout(weights, soft=True, info=info)
    return readout(weights, **given, info=info)


def checkpoint_list(params) -> list:
    """A sequence of parameter pytrees (one pytree alone is one checkpoint)."""
    if isinstance(params, (list, tuple)):
        if not params:
            raise InputError("params holds no checkpoint; pass the model's parameters at one or more checkpoints")
        return list(params)
    return [params]


def _to_tree(x):
    """A NamedTuple state -> nested dicts of arrays, None fields left out (orbax stores dicts)."""
    if isinstance(x, tuple) and hasattr(x, "_asdict"):
        return {k: _to_tree(v) for k, v in x._asdict().items() if v is not None}
    if isinstance(x, dict):
        return {k: _to_tree(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_to_tree(v) for v in x]
    return x


class Selector:
    """The contract: `fit(pool, reference, *, key) -> state`, `select(state, *, budget, fraction, key,
    **select_options) -> Selection`, and for attribution methods `scores(state, query) -> [Q, N]`.
    Subclasses set `Options` (the frozen dataclass), `PRESETS`, and `state_type` (a NamedTuple)."""

    Options: Any = None
    PRESETS: dict = {}
    state_type: Any = None
    needs_params = True

    @classmethod
    def options_for(cls, name: str):
        return cls.Options

    @classmethod
    def presets_for(cls, name: str) -> dict:
        return cls.PRESETS

    def __init__(self, name: str, task, params, **options):
        if self.needs_params and (task is None or params is None):
            raise InputError(f"{name} needs a task and its parameters: make({name!r}, task, params, ...)")
        self.name, self.task, self.params = name, task, params
        self.options = resolve_options(self.options_for(name), self.presets_for(name), name, options)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.options})"

    def fit(self, pool, reference=None, *, key):
        raise NotImplementedError

    def select(self, state, *, budget: int | None = None, fraction: float | None = None, key=None,
               **select_options) -> Selection:
        raise NotImplementedError

    def scores(self, state, query) -> np.ndarray:
        """[Q, N] attribution scores of every pool example on every query example."""
        raise InputError(f"{self.name} gives no per-query attribution (scores): only influence, tracin and trak do; "
                         f"{self.name}'s selection carries its per-example scores [N] instead")

    # saving a fitted state -------------------------------------------------------------------------
    def state_tree(self, state) -> dict:
        """The arrays of `state` that `save` stores (nested dicts)."""
        return _to_tree(state)

    def state_from_tree(self, tree: dict):
        """The state back from `state_tree`'s dicts."""
        fields = self.state_type._fields
        return self.state_type(**{f: tree.get(f) for f in fields})

    def save(self, path, state) -> None:
        """Write the fitted `state` to the directory `path` (orbax; replaced when it exists)."""
        import orbax.checkpoint as ocp

        path = Path(path).absolute()
        if not path.parent.is_dir():
            raise InputError(f"cannot save to {path}: its folder {path.parent} does not exist; create it first")
        name = np.frombuffer(self.name.encode(), np.uint8)  # orbax stores numbers, not strings
        ocp.PyTreeCheckpointer().save(path, {"selector": name, "state": self.state_tree(state)}, force=True)

    def load(self, path):
        """The state `save` wrote to `path`; refuses a state of another method."""
        import orbax.checkpoint as ocp

        path = Path(path).absolute()
        if not path.is_dir():
            raise InputError(f"no saved selector state at {path}; write one with selector.save(path, state)")
        try:
            with warnings.catch_warnings():  # orbax warns that it reads the sharding from the files: expected here
                warnings.simplefilter("ignore", UserWarning)
                tree = ocp.PyTreeCheckpointer().restore(path)
        except Exception as e:  # orbax raises many types for unreadable files
            raise CheckpointError(f"the selector state at {path} cannot be read ({type(e).__name__}: {str(e)[:200]}); "
                                  "it is corrupt: delete it and fit again") from e
        saved = bytes(np.asarray(tree.get("selector", []), np.uint8)).decode(errors="replace")
        if saved != self.name:
            raise InputError(f"{path} holds a {saved!r} state, not {self.name!r}; load it with make({saved!r}, ...)")
        return self.state_from_tree(tree["state"])
