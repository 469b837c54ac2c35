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
    "theta_loss": ("weighted", "self_normalised", "filled"),
    "log_z": ("dropped", "contrastive"),
    "theta_kernel": ("sgld", "psgld"),
    "noise": ("gaussian", "rademacher"),
    "loss_reference": ("held_out", "none"),
}


@dataclass(frozen=True)
class BADSConfig:
    """BADS options. [r] reconstructed (the paper's choice is not known), [o] this project's choice.

    theta's chain
    theta_kernel     "psgld" (RMSprop-preconditioned SGLD) | "sgld"                      [o] psgld
    lr               psgld: the RMSprop step (per coordinate lr / (eps + sqrt(V))); sgld: the
                     SGD-like step alpha (SGLD step lr / N)                                  [o] 1e-3
    precond_decay, precond_eps   psgld's a and eps                                           0.99, 1e-5
    theta_temperature   theta's T (None: `temperature`)                                      [o] 0.01
    noise            "rademacher" (+-1, the weak Euler scheme) | "gaussian"                  [o] rademacher
    prior_std        sigma_theta of theta's (and phi's) Gaussian prior                       [r] 1.0
    the energy
    rho              impact of the weighted training loss                                    [r] 5.0
    meta_strength    s: the meta set's mean loss enters U / N with weight s rho (None: M / N,
                     the meta set's likelihood as it is)                                     [o] 1.0
    theta_loss       "filled" (the meta set fills the data mass the batch weights remove:
                     U / N = rho [sum_B w l / b + (s + 1 - mean_B w) mean l^m]) | "weighted"
                     (the literal energy) | "self_normalised" (sum_B w l / sum_B w)          [o] filled
    log_z            "dropped" | "contrastive" (a second, meta-free chain; twice the cost)  [r] dropped
    loss_reference   "none": a weight feels rho l_i (the literal energy) | "held_out": rho (l_i - c),
                     c the running mean loss of a held-out part of the meta set that theta does
                     not fit (what a clean unseen example costs: a rule relative to the task's
                     difficulty; measured and not kept as the default, see below)          [o] none
    reference_fraction   the part of each class's meta examples held out for c (classes with
                     fewer than 1 / fraction examples give none; no row at all: c is the
                     mean loss of the whole meta set, which theta fits)                     [o] 0.2
    reference_decay  a in c <- a c + (1 - a) (the held-out batch's mean loss), c from 0      [o] 0.99
    the weights
    temperature      T of the weights' chain (and theta's unless theta_temperature)          [o] 0.1
    weight_lr        step of one visit to a weight; SGLD step weight_lr b / N                [o] 0.1
    weight_substeps  Euler sub-steps a lazy visit is integrated in                           [o] 20
    weight_prior     "gaussian" | "beta" | "mean_penalty" (see jdps.bads.weight_prior)       [r] gaussian
    weight_prior_mean, weight_prior_std   beta (the sparsity level) and sigma_w              [o] 0.9, 0.3
    weight_param     "reflect" | "logit" | "network"                                         [r] reflect
    offbatch         "lazy" | "exact"                                                        [o] lazy
    readout
    burn_in, thin    steps before the running means start; record every thin-th step         0, 1
    avg_window       None: mean of all samples; S: exponential average over ~S samples       None
    num_theta_samples  size of the ring of theta snapshots (0: none)                         4
    theta_thin       steps between snapshots (None: one epoch, ceil(N / b))                  None
    net_width, net_lr   width H and step of the weight network                               100, 0.1

    How the defaults were chosen: on a validation split of the robustness study's screening grid
    (Fashion-MNIST 2k and MNIST 5k; symmetric 40 / 80 %, pair 40 / 45 % and no noise; 5 and 15 meta examples
    per class; seed 10), never on a test split and never on MNIST-1D (experiments/bads_robustness.py; its
    results list what was tried). Why these: pSGLD makes theta's step independent of rho and of the meta
    weight (with plain SGLD the effective step lr rho (1 + s) diverged for s >= 2); weighting the meta set
    like the training set (s = 1) keeps theta from fitting the noise the weights have not yet removed (with
    M << N the likelihood's M / N is swamped); "filled" lets the meta set take over as the weights fall (80%
    noise). Given theta, a weight's law is exp(-(rho l w + R(w)) / T) on [0, 1], whose mode under the prior
    N(0.9, 0.3^2) is w = 0.9 - 0.45 l: an example whose label costs more than 2 nats is dropped; T = 0.1
    keeps that rule soft enough to rank (AUROC), and theta's own T = 0.01 keeps its samples near the mode.
    One visit moves a weight by about weight_lr rho l (20 reflected sub-steps integrate so large a move: one
    big reflected step bounces a falling weight back up from 0). The weight network's outputs have no
    per-example noise: they sit near the minimiser of rho l w + R(w), w ~ beta - rho sigma_w^2 l, so with it
    choose rho sigma_w^2 ~ beta / (a noisy example's loss). The rule is absolute (in nats), so on a hard
    task it drops clean examples too; loss_reference="held_out" makes it relative to a held-out clean loss,
    which on the validation grid gained 0.5 points on clean data but lost 3 under pair and 80% noise (a
    model fitted to noise raises c, which then keeps the noise: experiments/results/bads_reference_ablation.md).
    The settings the experiments chose before are presets; `faithful` is the literal reconstructed energy with the old defaults (M / N, SGLD, Gaussian
    noise, T = 1).
    """

    lr: float = 1e-3
    weight_lr: float = 0.1
    weight_substeps: int = 20
    temperature: float = 0.1
    rho: float = 5.0
    prior_std: float = 1.0
    weight_prior: str = "gaussian"
    weight_prior_mean: float = 0.9
    weight_prior_std: float = 0.3
    weight_param: str = "reflect"
    offbatch: str = "lazy"
    theta_loss: str = "filled"
    log_z: str = "dropped"
    burn_in: int = 0
    thin: int = 1
    avg_window: int | None = None
    num_theta_samples: int = 4
    theta_thin: int | None = None
    net_width: int = 100
    net_lr: float = 0.1
    meta_strength: float | None = 1.0
    theta_kernel: str = "psgld"
    noise: str = "rademacher"
    theta_temperature: float | None = 0.01
    precond_decay: float = 0.99
    precond_eps: float = 1e-5
    loss_reference: str = "none"
    reference_fraction: float = 0.2
    reference_decay: float = 0.99

    def __post_init__(self):
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise InputError(f"{name}={getattr(self, name)!r} is not an option; choose one of {choices}")
        positive = {"lr": self.lr, "prior_std": self.prior_std, "weight_prior_std": self.weight_prior_std}
        non_negative = {"weight_lr": self.weight_lr, "temperature": self.temperature, "rho": self.rho,
                        "net_lr": self.net_lr}
        if not 0 <= self.reference_fraction < 1 or not 0 <= self.reference_decay < 1:
            raise InputError(f"reference_fraction and reference_decay must lie in [0, 1), got "
                             f"{self.reference_fraction} and {self.reference_decay}")
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


# The literal reconstructed energy with the settings that were the defaults before the robustness study:
# the meta set's likelihood at M / N, plain SGLD with Gaussian noise, T = 1, a broad prior around 1/2.
FAITHFUL = BADSConfig(lr=0.05, temperature=1.0, weight_prior_mean=0.5, weight_prior_std=1.0, theta_loss="weighted",
                      meta_strength=None, theta_kernel="sgld", noise="gaussian", theta_temperature=None)

PRESETS: dict[str, BADSConfig] = {
    "faithful": FAITHFUL,
    # Experiment 1 (experiments/results/bads_denoise_tuning.md, 60% symmetric noise, one seed): a broad
    # prior near 1 with rho = 4 gave the best weight AUROC (0.97) at the best accuracy (82-83%); a narrower
    # prior or a lower temperature lets weights collapse before theta learns; self-normalising theta's loss
    # adds 2 points. beta < 1 keeps it valid for every weight_param. Cost: that of the defaults.
    "denoise": replace(FAITHFUL, weight_prior_mean=0.9, weight_prior_std=0.5, rho=4.0, theta_loss="self_normalised"),
    # Experiment 2 (class balancing, experiments/results/bads_balance*.md): the contrastive log Z gives the
    # rare classes their weight (dropping it loses 2.4-4.2 points); near-zero temperature and a flat prior.
    # Cost: a second, meta-free chain (about twice a step).
    "balance": replace(FAITHFUL, log_z="contrastive", theta_loss="self_normalised", rho=0.05, lr=5.0,
                       temperature=1e-3, weight_prior_std=30.0, weight_lr=100.0),
    # Experiments 3 and 4 (text domains and mixtures, experiments/results/bads_text.md, bads_mixture.md):
    # the balance preset with theta's step lowered for the transformer LM. Cost: as `balance`.
    "text": replace(FAITHFUL, log_z="contrastive", theta_loss="self_normalised", rho=0.05, lr=2.0,
                    temperature=1e-3, weight_prior_std=30.0, weight_lr=100.0),
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
