"""BADS's options: one frozen `BADSConfig`, and named presets beside it.

`BADSConfig()` holds the library defaults; `PRESETS[name]` are the settings an experiment chose on
purpose, each with its reason (`PRESET_REASONS`) and its cost. `preset(name, **changes)` returns one with
some fields changed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from jdps.errors import InputError

_CHOICES = {
    "weight_prior": ("gaussian", "beta", "mean_penalty"),
    "weight_param": ("reflect", "logit", "network"),
    "offbatch": ("lazy", "exact"),
    "theta_loss": ("weighted", "self_normalised"),
    "log_z": ("dropped", "contrastive"),
    "theta_kernel": ("sgld", "psgld"),
    "noise": ("gaussian", "rademacher"),
}


@dataclass(frozen=True)
class BADSConfig:
    """BADS options. [r] reconstructed (the paper's choice is not known), [o] this project's choice.

    lr               theta's SGD-like step alpha; SGLD step lr / N                            [o] 0.05
    weight_lr        step of one visit to a weight; SGLD step weight_lr b / N                [o] 0.1
    weight_substeps  Euler sub-steps a lazy visit is integrated in                           [o] 20
    temperature      T of exp(-U / T): 1 is the posterior                                        1.0
    rho              impact of the weighted training loss                                    [r] 5.0
    prior_std        sigma_theta of theta's (and phi's) Gaussian prior                       [r] 1.0
    weight_prior     "gaussian" | "beta" | "mean_penalty" (see jdps.bads.weight_prior)            [r] gaussian
    weight_prior_mean, weight_prior_std   beta (the sparsity level) and sigma_w              [r] 0.5, 1.0
    weight_param     "reflect" | "logit" | "network"                                         [r] reflect
    offbatch         "lazy" | "exact"                                                        [o] lazy
    theta_loss       "weighted" (faithful) | "self_normalised" (deviation: theta's
                     effective step does not shrink with mean(w))                            weighted
    log_z            "dropped" | "contrastive" (a second, meta-free chain; twice the cost)  [r] dropped
    burn_in, thin    steps before the running means start; record every thin-th step         0, 1
    avg_window       None: mean of all samples; S: exponential average over ~S samples       None
    num_theta_samples  size of the ring of theta snapshots (0: none)                         4
    theta_thin       steps between snapshots (None: one epoch, ceil(N / b))                     None
    net_width, net_lr   width H and step of the weight network                               100, 0.1

    How the defaults were set: lr, weight_lr, weight_substeps, rho and the broad prior follow from the
    scales below, not from a search; experiments/results/bads_denoise_tuning.md shows them losing to the
    `denoise` preset on experiment 1 (79.5% against 82.3% at 60% symmetric noise), and the presets in
    `PRESETS` are the settings each experiment chose, with their reasons.
    Given theta, a weight's law is exp(-(rho l_i w + R(w)) / T) on [0, 1]; at T = 1 with a broad prior
    (sigma_w = 1) its mean is about 1 / (rho l_i) when rho l_i >> 1 and near 1/2 when rho l_i << 1, so
    rho = 5 puts a flipped label (l ~ 2.3, chance on ten classes) near w = 0.1 and a fitted example
    (l ~ 0.2) near 0.45. One visit moves a weight by weight_lr rho l_i (0.1 * 5 * 2.3 ~ 1) with noise of
    std sqrt(2 weight_lr T) = 0.45; so large a move is integrated in 20 reflected sub-steps, since one big
    reflected step bounces a falling weight back up from 0. The weight network's outputs have no
    per-example noise: they sit near the minimiser of rho l_i w + R(w), w ~ beta - rho sigma_w^2 l_i for
    the Gaussian prior, so with it choose rho sigma_w^2 ~ beta / (a noisy example's loss), e.g. rho = 1,
    weight_prior_std = 0.3.
    """

    lr: float = 0.05
    weight_lr: float = 0.1
    weight_substeps: int = 20
    temperature: float = 1.0
    rho: float = 5.0
    prior_std: float = 1.0
    weight_prior: str = "gaussian"
    weight_prior_mean: float = 0.5
    weight_prior_std: float = 1.0
    weight_param: str = "reflect"
    offbatch: str = "lazy"
    theta_loss: str = "weighted"
    log_z: str = "dropped"
    burn_in: int = 0
    thin: int = 1
    avg_window: int | None = None
    num_theta_samples: int = 4
    theta_thin: int | None = None
    net_width: int = 100
    net_lr: float = 0.1
    meta_strength: float | None = None
    theta_kernel: str = "sgld"
    noise: str = "gaussian"
    precond_decay: float = 0.99
    precond_eps: float = 1e-5

    def __post_init__(self):
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise InputError(f"{name}={getattr(self, name)!r} is not an option; choose one of {choices}")
        positive = {"lr": self.lr, "prior_std": self.prior_std, "weight_prior_std": self.weight_prior_std}
        non_negative = {"weight_lr": self.weight_lr, "temperature": self.temperature, "rho": self.rho,
                        "net_lr": self.net_lr}
        for name, v in positive.items():
            if not v > 0:
                raise InputError(f"{name} must be > 0, got {v}")
        for name, v in non_negative.items():
            if not v >= 0:
                raise InputError(f"{name} must be >= 0, got {v}")
        beta, std = self.weight_prior_mean, self.weight_prior_std
        open_unit = self.weight_param != "reflect" or self.weight_prior == "beta"
        if not (0 < beta < 1 if open_unit else 0 <= beta <= 1):
            raise InputError(f"weight_prior_mean must lie in {'(0, 1)' if open_unit else '[0, 1]'} for "
                             f"weight_param={self.weight_param!r}, weight_prior={self.weight_prior!r}; got {beta}")
        if self.weight_prior == "beta" and not std**2 < beta * (1 - beta):
            raise InputError(f"a Beta prior with mean {beta} needs weight_prior_std < {np.sqrt(beta * (1 - beta)):.4g}"
                             f" (got {std}); lower weight_prior_std")
        if self.weight_param == "network" and self.offbatch != "lazy":
            raise InputError("offbatch applies to per-example weights; leave it 'lazy' with the weight network")
        ints = {"burn_in": (self.burn_in, 0), "thin": (self.thin, 1), "num_theta_samples": (self.num_theta_samples, 0),
                "net_width": (self.net_width, 1), "weight_substeps": (self.weight_substeps, 1),
                "avg_window": (self.avg_window, 1), "theta_thin": (self.theta_thin, 1)}
        for name, (v, low) in ints.items():
            if v is not None and (int(v) != v or v < low):
                raise InputError(f"{name} must be an integer >= {low}, got {v}")


PRESETS: dict[str, BADSConfig] = {
    # Experiment 1 (experiments/results/bads_denoise_tuning.md, 60% symmetric noise, one seed): a broad
    # prior near 1 with rho = 4 gave the best weight AUROC (0.97) at the best accuracy (82-83%); a narrower
    # prior or a lower temperature lets weights collapse before theta learns; self-normalising theta's loss
    # adds 2 points. beta < 1 keeps it valid for every weight_param. Cost: that of the defaults.
    "denoise": BADSConfig(weight_prior_mean=0.9, weight_prior_std=0.5, rho=4.0, theta_loss="self_normalised"),
    # Experiment 2 (class balancing, experiments/results/bads_balance*.md): the contrastive log Z gives the
    # rare classes their weight (dropping it loses 2.4-4.2 points); near-zero temperature and a flat prior.
    # Cost: a second, meta-free chain (about twice a step).
    "balance": BADSConfig(log_z="contrastive", theta_loss="self_normalised", rho=0.05, lr=5.0, temperature=1e-3,
                          weight_prior_std=30.0, weight_lr=100.0),
    # Experiments 3 and 4 (text domains and mixtures, experiments/results/bads_text.md, bads_mixture.md):
    # the balance preset with theta's step lowered for the transformer LM. Cost: as `balance`.
    "text": BADSConfig(log_z="contrastive", theta_loss="self_normalised", rho=0.05, lr=2.0, temperature=1e-3,
                       weight_prior_std=30.0, weight_lr=100.0),
}


def preset(name: str | None = None, **changes) -> BADSConfig:
    """`PRESETS[name]` (None: `BADSConfig()`) with `changes` (BADSConfig fields) applied."""
    if name is not None and name not in PRESETS:
        raise InputError(f"unknown BADS preset {name!r}; choose one of {sorted(PRESETS)} or None (the defaults)")
    base = BADSConfig() if name is None else PRESETS[name]
    unknown = sorted(set(changes) - set(BADSConfig.__dataclass_fields__))
    if unknown:
        raise InputError(f"BADSConfig has no field {unknown}; its fields are {sorted(BADSConfig.__dataclass_fields__)}")
    return replace(base, **changes)
