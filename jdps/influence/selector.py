"""Influence and TracIn in the selector contract; both attribute query examples to pool examples.

influence   fit(pool, reference, key): the curvature (of the pool, or of the reference set) by the iHVP
            method `ihvp`, and every pool example's influence on the reference set,
            I(z, Q) = grad l(z) . (C + lambda I)^{-1} grad L(Q) (`jdps.influence.query_scores`);
            select: the top k by I; scores(state, query) -> [Q, N] (`jdps.influence.scores`).
tracin      params: checkpoints theta_1..theta_T; fit: TracIn(z, Q) = sum_t eta_t grad l(z; theta_t) .
            grad L(Q; theta_t); select: the top k; scores(state, query) -> [Q, N], one row per query example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

from jdps.data.batching import scoring_batches
from jdps.data.dataset import host_arrays
from jdps.errors import InputError
from jdps.influence import ihvp as ih
from jdps.influence import trak
from jdps.influence.scores import Fitted, fit, query_scores, scores, tracin
from jdps.metrics.retrain import stack, unstack
from jdps.selection import Selection, readout
from jdps.selectors import Selector, checkpoint_list, size
from jdps.validate import as_key


@dataclass(frozen=True)
class InfluenceOptions:
    """The iHVP method by name (`jdps.influence.ihvp.NAMES`) and its damping, the set the curvature is
    fitted on ('pool' or 'reference'), the parameters that count, the batch size, and cosine scores
    (normalize=True) instead of the influence itself."""

    ihvp: str = "ekfac"
    damping: float = 1e-3
    curvature_on: str = "pool"
    param_filter: Any = None
    batch_size: int = 256
    normalize: bool = False

    def __post_init__(self):
        if self.curvature_on not in ("pool", "reference"):
            raise InputError(f"curvature_on must be 'pool' or 'reference', got {self.curvature_on!r}")
        if self.ihvp not in ih.NAMES:
            raise InputError(f"unknown iHVP method {self.ihvp!r}; choose one of {ih.NAMES}")


class InfluenceState(NamedTuple):
    """The fitted iHVP, the pool's arrays [N, ...] and every pool example's influence on the reference [N]."""

    fitted: Fitted
    pool: dict
    scores: np.ndarray


def _top(scores_n, name: str, budget, fraction, info) -> Selection:
    k = size(len(scores_n), budget, fraction)
    if k is None:
        raise InputError(f"{name} ranks the pool by its scores, which can be negative: pass budget=k or fraction=f")
    return readout(scores_n, budget=k, info=info)


class InfluenceSelector(Selector):
    Options, state_type = InfluenceOptions, InfluenceState

    def fit(self, pool, reference=None, *, key) -> InfluenceState:
        if reference is None:
            raise InputError("influence scores the pool against a reference (query) set: pass reference=")
        o = self.options
        arrays = host_arrays(pool, "pool")
        method = ih.by_name(o.ihvp, o.damping, key=key)
        fitted = fit(self.task, self.params, arrays if o.curvature_on == "pool" else reference, ihvp=method,
                     param_filter=o.param_filter, batch_size=o.batch_size)
        s = query_scores(fitted, reference, arrays, normalize=o.normalize, batch_size=o.batch_size)
        return InfluenceState(fitted, arrays, np.asarray(s))

    def select(self, state: InfluenceState, *, budget=None, fraction=None, key=None, **select_options):
        if select_options:
            raise InputError(f"influence select takes budget or fraction; not {sorted(select_options)}")
        info = {"method": "influence", "ihvp": self.options.ihvp, "damping": self.options.damping}
        return _top(state.scores, "influence", budget, fraction, info)

    def scores(self, state: InfluenceState, query) -> np.ndarray:
        o = self.options
        return np.asarray(scores(state.fitted, query, state.pool, normalize=o.normalize, batch_size=o.batch_size))

    def state_tree(self, state: InfluenceState) -> dict:
        if self.options.ihvp in ("cg", "lissa"):
            raise InputError(f"a {self.options.ihvp} state is an operator over the curvature data, not arrays; "
                             "refit it, or use ihvp='ekfac', 'kfac' or 'exact' to save the fitted state")
        return {"curvature": state.fitted.state, "pool": state.pool, "scores": state.scores}

    def state_from_tree(self, tree: dict) -> InfluenceState:
        o = self.options
        pool = {k: np.asarray(v) for k, v in tree["pool"].items()}
        method = ih.by_name(o.ihvp, o.damping)
        first = next(iter(scoring_batches(pool, min(o.batch_size, len(pool["x"])))))
        paths = tuple(ih.selected_paths(method, self.task, self.params, first, o.param_filter))
        fitted = Fitted(self.task, self.params, paths, method, tree.get("curvature", {}))
        return InfluenceState(fitted, pool, np.asarray(tree["scores"]))


@dataclass(frozen=True)
class TracInOptions:
    """eta_t, one learning rate per checkpoint (None: 1 each), the parameters that count, the batch
    size, and cosines (normalize=True) instead of dot products."""

    learning_rates: tuple[float, ...] | None = None
    param_filter: Any = None
    batch_size: int = 256
    normalize: bool = False


class TracInState(NamedTuple):
    """The pool's arrays [N, ...] and every pool example's TracIn score on the reference set [N]."""

    pool: dict
    scores: np.ndarray


class TracInSelector(Selector):
    Options, state_type = TracInOptions, TracInState

    def _rates(self, t: int) -> list[float]:
        rates = self.options.learning_rates
        rates = [1.0] * t if rates is None else list(rates)
        if len(rates) != t:
            raise InputError(f"tracin needs one learning rate per checkpoint: {t} checkpoints, {len(rates)} rates")
        return rates

    def fit(self, pool, reference=None, *, key=None) -> TracInState:
        if reference is None:
            raise InputError("tracin scores the pool against a reference (query) set: pass reference=")
        o, checkpoints = self.options, checkpoint_list(self.params)
        arrays = host_arrays(pool, "pool")
        s = tracin(self.task, checkpoints, self._rates(len(checkpoints)), reference, arrays,
                   param_filter=o.param_filter, normalize=o.normalize, batch_size=o.batch_size)
        return TracInState(arrays, np.asarray(s))

    def select(self, state: TracInState, *, budget=None, fraction=None, key=None, **select_options):
        if select_options:
            raise InputError(f"tracin select takes budget or fraction; not {sorted(select_options)}")
        return _top(state.scores, "tracin", budget, fraction, {"method": "tracin"})

    def scores(self, state: TracInState, query) -> np.ndarray:
        o, checkpoints = self.options, checkpoint_list(self.params)
        total = 0.0
        for params, rate in zip(checkpoints, self._rates(len(checkpoints))):
            fitted = fit(self.task, params, state.pool, ihvp=ih.identity(), param_filter=o.param_filter,
                         batch_size=o.batch_size)
            total = total + rate * np.asarray(scores(fitted, query, state.pool, normalize=o.normalize,
                                                     batch_size=o.batch_size))
        return total


@dataclass(frozen=True)
class TRAKOptions:
    """d: projected features per Dense layer; damping: lambda relative to the mean eigenvalue of Phi^T Phi;
    sgld_samples: 0 uses `params` (one model or a list) as the ensemble, S > 0 draws S theta samples of one
    SGLD chain on the pool started at `params` (one trained model), with burn-in, thinning (epochs), step,
    temperature, prior scale and batch size (`jdps.influence.trak.sgld_samples`); the parameters that count;
    the scoring batch size."""

    d: int = 1024
    damping: float = 1e-3
    sgld_samples: int = 0
    sgld_burn_in: int = 1
    sgld_thin: int = 1
    sgld_lr: float = 0.05
    sgld_temperature: float = 1.0
    sgld_prior_std: float = 1.0
    sgld_batch_size: int = 128
    param_filter: Any = None
    batch_size: int = 512

    def __post_init__(self):
        if isinstance(self.d, bool) or int(self.d) != self.d or self.d < 1:
            raise InputError(f"d must be a positive integer (features per layer), got {self.d!r}")
        if not self.damping >= 0:
            raise InputError(f"damping must be >= 0, got {self.damping}")
        if int(self.sgld_samples) != self.sgld_samples or self.sgld_samples < 0:
            raise InputError(f"sgld_samples must be an integer >= 0, got {self.sgld_samples!r}")


class TRAKState(NamedTuple):
    """The ensemble (parameters stacked [M, ...]), the projections' key data, the pool's arrays [N, ...] and
    every pool example's mean TRAK score over the reference set [N]."""

    ensemble: Any
    key: np.ndarray
    pool: dict
    scores: np.ndarray


class TRAKSelector(Selector):
    Options, state_type = TRAKOptions, TRAKState

    def ensemble(self, pool, key) -> list:
        """The models TRAK averages over: `params` itself, or the samples of one SGLD chain from it."""
        o = self.options
        if o.sgld_samples == 0:
            return checkpoint_list(self.params)
        if isinstance(self.params, (list, tuple)):
            raise InputError("trak with sgld_samples > 0 starts one chain: pass one trained model as params")
        return trak.sgld_samples(self.task, self.params, pool, key=jax.random.fold_in(as_key(key), 1),
                                 samples=o.sgld_samples, burn_in=o.sgld_burn_in, thin=o.sgld_thin, lr=o.sgld_lr,
                                 temperature=o.sgld_temperature, prior_std=o.sgld_prior_std,
                                 batch_size=o.sgld_batch_size)

    def fit(self, pool, reference=None, *, key) -> TRAKState:
        if reference is None:
            raise InputError("trak scores the pool against a reference (query) set: pass reference=")
        arrays = host_arrays(pool, "pool")
        key = as_key(key)
        models = self.ensemble(arrays, key)
        state = TRAKState(stack(models), np.asarray(jax.random.key_data(key)), arrays, np.zeros(len(arrays["x"])))
        return state._replace(scores=self.scores(state, reference).mean(0))

    def select(self, state: TRAKState, *, budget=None, fraction=None, key=None, **select_options):
        if select_options:
            raise InputError(f"trak select takes budget or fraction; not {sorted(select_options)}")
        info = {"method": "trak", "models": jax.tree.leaves(state.ensemble)[0].shape[0], "d": self.options.d}
        return _top(state.scores, "trak", budget, fraction, info)

    def scores(self, state: TRAKState, query) -> np.ndarray:
        o = self.options
        key = jax.random.wrap_key_data(np.asarray(state.key, np.uint32))
        return trak.scores(self.task, unstack(state.ensemble), state.pool, query, key=key, d=o.d,
                           damping=o.damping, param_filter=o.param_filter, batch_size=o.batch_size)

