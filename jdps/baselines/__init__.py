"""The baselines BADS is judged against, each callable by its command-line name through one function.

    run_baseline(name, task, params, train, meta, *, key, epochs, batch_size, optimizer=None, **options)
        -> BaselineResult(params, weights [N], history, info)

train (Dt, N examples) and meta (Dm, M examples) are jdps Datasets or dicts of per-example arrays;
every baseline starts from `params` and takes epochs * ceil(N / batch_size) optimizer steps (the budget
BADS gets; `info["steps"]` says how many it took). The names and their options:

    uniform, meta_only, dup_meta (dup_factor), random (budget | fraction), oracle (clean)
                                 jdps.baselines.mixing: a subset of Dt with copies of Dm
    cds (base_epochs, tune_epochs, r_floor, half_life)
                                 jdps.baselines.cds: contrastive data selection
    l2rw (meta_batch_size, lookahead_lr), mwn (... , net_optimizer, net_width)
                                 jdps.baselines.reweighting: one-step look-ahead reweighting
"""

from __future__ import annotations

import inspect
from functools import partial

from jdps.baselines.cds import cds_scores, keep_fractions, kept, run_cds
from jdps.baselines.common import BaselineResult
from jdps.baselines.mixing import run_mixing, training_set
from jdps.baselines.reweighting import (ReweightState, StepInfo, build_l2rw_step, build_mwn_step,
                                        lookahead_meta_grad, l2rw_weights, mwn_init, mwn_meta_grad, mwn_weight,
                                        run_l2rw, run_mwn)
from jdps.errors import InputError

_RUNNERS = {
    **{name: partial(run_mixing, name) for name in ("uniform", "meta_only", "dup_meta", "random", "oracle")},
    "cds": run_cds, "l2rw": run_l2rw, "mwn": run_mwn,
}
NAMES = tuple(_RUNNERS)
_SHARED = {"task", "params", "train", "meta", "key", "epochs", "batch_size", "optimizer", "checkpoints", "on_epoch"}
_OPTIONS = {"uniform": (), "meta_only": (), "dup_meta": ("dup_factor",), "random": ("budget", "fraction"),
            "oracle": ("clean",)}


def options(name: str) -> tuple[str, ...]:
    """The keyword options baseline `name` takes beyond the shared ones."""
    if name not in _RUNNERS:
        raise InputError(f"unknown baseline {name!r}; choose one of {NAMES}")
    if name in _OPTIONS:
        return _OPTIONS[name]
    return tuple(p for p in inspect.signature(_RUNNERS[name]).parameters if p not in _SHARED)


def run_baseline(name: str, task, params, train, meta, *, key, epochs: int, batch_size: int,
                 optimizer=None, checkpoints=None, on_epoch=None, **kwargs) -> BaselineResult:
    """Run baseline `name` (one of NAMES) with its `options(name)`; see the module docstring. With
    `checkpoints` (a `jdps.checkpoint.Checkpoints`) a killed run resumes from its latest saved epoch (every
    baseline but cds, whose three trainings run from scratch); `on_epoch(epoch, params)` sees the parameters
    after every pass of the final training (e.g. to keep snapshots)."""
    unknown = sorted(set(kwargs) - set(options(name)))
    if unknown:
        raise InputError(f"baseline {name!r} takes no option {unknown}; its options are {list(options(name))}")
    if checkpoints is not None:
        if name == "cds":
            raise InputError("cds does not resume (its base, tuned and final trainings run from scratch); "
                             "run it without a checkpoint directory")
        kwargs["checkpoints"] = checkpoints
    return _RUNNERS[name](task, params, train, meta, key=key, epochs=epochs, batch_size=batch_size,
                          optimizer=optimizer, on_epoch=on_epoch, **kwargs)


__all__ = ["NAMES", "BaselineResult", "ReweightState", "StepInfo", "build_l2rw_step", "build_mwn_step",
           "cds_scores", "keep_fractions", "kept", "l2rw_weights", "lookahead_meta_grad", "mwn_init",
           "mwn_meta_grad", "mwn_weight", "options", "run_baseline", "run_cds", "run_l2rw", "run_mixing",
           "run_mwn", "training_set"]
