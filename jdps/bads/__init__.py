"""BADS: per-example weights and the network sampled jointly by SGLD on one `{params, weights}` state.

    config      BADSConfig (the options, defaults in one place) and PRESETS (settings experiments chose)
    kernel      init, build_kernel, as_top_level_api (blackjax's SamplingAlgorithm), the state and readouts
    sampler     fit (the kernel over whole epochs, through jdps.loop), run_epochs, predict
    sgmcmc      per-leaf SGLD (the integrator, tested against blackjax.sgld)
    weight_prior  the weight prior R(w) and the chain variable's transforms

The selector contract's `make("bads", ...)` (jdps.selectors) sits on top of `fit`.
"""

from jdps.bads.config import PRESETS, BADSConfig, preset
from jdps.bads.kernel import (BADSInfo, BADSState, as_top_level_api, build_kernel, init, posterior_mean_weights,
                              posterior_predictive, state_shardings, theta_samples)
from jdps.bads.sampler import fit, predict, run_epochs
from jdps.errors import SamplerDivergedError

__all__ = ["BADSConfig", "PRESETS", "preset", "BADSState", "BADSInfo", "SamplerDivergedError", "init",
           "build_kernel", "as_top_level_api", "run_epochs", "fit", "predict", "posterior_mean_weights",
           "theta_samples", "posterior_predictive", "state_shardings"]
