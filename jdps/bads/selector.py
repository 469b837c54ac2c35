"""BADS in the selector contract (`jdps.selectors.make("bads", task, params, ...)`).

fit(pool, reference, key) samples theta and the N pool weights with the meta set `reference` as the
likelihood (`jdps.bads.fit`) and returns the final `BADSState`; select reads the posterior-mean weights
out: every example with its weight (no size), the top k (budget / fraction, weight 1), or those >= a
`threshold`. `params` are the network's initial parameters.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from jdps.bads.config import PRESETS as CONFIG_PRESETS
from jdps.bads.config import BADSConfig
from jdps.bads.kernel import BADSState, posterior_mean_weights
from jdps.bads.sampler import fit as fit_bads
from jdps.bads.sampler import resolve
from jdps.errors import InputError
from jdps.selectors import Selector, weighted


@dataclass(frozen=True)
class BADSOptions:
    """config: the sampler's BADSConfig; the run: `epochs` (default 20) or `steps`, batch sizes."""

    config: BADSConfig = field(default_factory=BADSConfig)
    epochs: int | None = 20
    steps: int | None = None
    batch_size: int = 128
    meta_batch_size: int = 100


PRESETS = {name: BADSOptions(config=config) for name, config in CONFIG_PRESETS.items()}
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(BADSConfig)}


class BADSSelector(Selector):
    Options, PRESETS, state_type = BADSOptions, PRESETS, BADSState

    def __init__(self, name, task, params, **options):
        """BADSConfig fields may be given flat (rho=4.0) and change the preset's (or the default) config."""
        config_changes = {k: options.pop(k) for k in list(options) if k in _CONFIG_FIELDS}
        if "steps" in options and "epochs" not in options:
            options["epochs"] = None  # a run length in steps replaces the default epochs
        super().__init__(name, task, params, **options)
        if config_changes:
            self.options = dataclasses.replace(
                self.options, config=dataclasses.replace(self.options.config, **config_changes))

    def fit(self, pool, reference=None, *, key) -> BADSState:
        if reference is None:
            raise InputError("bads needs a reference: the small curated meta set its likelihood comes from")
        o = self.options
        return fit_bads(self.task, self.params, pool, reference, key=key, epochs=o.epochs, steps=o.steps,
                        batch_size=o.batch_size, meta_batch_size=o.meta_batch_size, config=o.config)

    def select(self, state: BADSState, *, budget=None, fraction=None, key=None, threshold=None, **select_options):
        if select_options:
            raise InputError(f"bads select takes budget, fraction or threshold; not {sorted(select_options)}")
        w = posterior_mean_weights(state)
        o = self.options
        resolved = resolve(o.config, len(w), None, batch_size=o.batch_size, steps=int(state.step),
                           meta_batch_size=o.meta_batch_size)
        info = {"method": "bads", "steps": int(state.step), "mean_weight": float(np.mean(w)),
                "config": dataclasses.asdict(o.config), "resolved": resolved}
        return weighted(w, budget=budget, fraction=fraction, threshold=threshold, info=info)


__all__ = ["BADSOptions", "BADSSelector", "PRESETS"]
