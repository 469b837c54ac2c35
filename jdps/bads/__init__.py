"""BADS: per-example weights and the network sampled jointly by SGLD on one `{params, weights}` state.

    kernel      init, build_kernel, as_top_level_api (blackjax's SamplingAlgorithm), BADSConfig
    sgmcmc      per-leaf SGLD (the integrator, tested against blackjax.sgld)
    weight_prior  the weight prior R(w) and the chain variable's transforms
"""

from jdps.bads.kernel import (BADSConfig, BADSInfo, BADSState, SamplerDivergedError, as_top_level_api,
                              build_kernel, init, mean_weight_by_group, posterior_mean_weights,
                              posterior_predictive, run_epochs, select, state_shardings, theta_samples)

__all__ = ["BADSConfig", "BADSState", "BADSInfo", "SamplerDivergedError", "init", "build_kernel",
           "as_top_level_api", "run_epochs", "posterior_mean_weights", "theta_samples",
           "posterior_predictive", "state_shardings", "select", "mean_weight_by_group"]
