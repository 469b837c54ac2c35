"""`jdps bads` and `jdps baseline`: BADS and its baselines on a user's own npz arrays.

    jdps bads --train TRAIN.npz --meta META.npz [--test TEST.npz] [--model mlp|cnn] [--epochs E]
              [--seed S] --out OUT.npz
    jdps baseline --method uniform|meta_only|dup_meta|random|cds|l2rw|mwn  (the same flags)

Each npz holds `x` float [N, ...], `y` int [N] and optionally `id` [N] (`jdps.data.user_arrays.load_npz`).
OUT.npz holds `weights` float32 [N], one per example of TRAIN.npz in its order (BADS: the posterior-mean
weight; a baseline: the weight it trained each example with, 1 / 0 for a subset), `id` [N] (TRAIN.npz's
ids, else 0..N-1) and, given --test, `test_accuracy` [] (BADS: the prediction averaged over its theta
samples). Progress (step, loss, mean weight) goes to stdout once per epoch unless --quiet; a one-line
JSON summary is printed at the end.

`fit_bads` is the loop both the command and the experiments run: whole epochs of `bads.run_epochs`,
one compiled call each, with a progress callback between them. Its default settings, `CONFIG`, are
those experiment 1 chose (experiments/results/bads_denoise.md): a weight prior N(0.9, 0.5^2) on
[0, 1], rho = 4 and theta's loss self-normalised by the batch weights; the rest are `BADSConfig`'s.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np

from jdps import bads
from jdps.data.dataset import Dataset
from jdps.errors import InputError

BASELINES = ("uniform", "meta_only", "dup_meta", "random", "cds", "l2rw", "mwn")
MLP_HIDDEN = (256, 128)
CONFIG = bads.PRESETS["denoise"]


def _load(args) -> tuple[Dataset, Dataset, Dataset | None, int]:
    """TRAIN, META (and TEST) checked against each other, and the number of classes C."""
    from jdps.data.user_arrays import load_npz

    sets = {"--train": load_npz(args.train), "--meta": load_npz(args.meta)}
    if args.test:
        sets["--test"] = load_npz(args.test)
    shape = sets["--train"].x.shape[1:]
    for flag, d in sets.items():
        if d.y is None:
            raise InputError(f"{flag} {getattr(args, flag[2:])} has no labels; save them as y: "
                             "np.savez(path, x=..., y=...)")
        if d.x.shape[1:] != shape:
            raise InputError(f"{flag} examples have shape {d.x.shape[1:]} but --train examples have {shape}; "
                             "every npz must hold inputs of one shape")
    seen = set(np.unique(sets["--train"].y).tolist())
    unseen = sorted(set(np.unique(sets["--meta"].y).tolist()) - seen)
    if unseen:
        raise InputError(f"the meta set has classes {unseen} that no training example has, so no training "
                         "weight can serve them; drop those meta examples or add training examples of them")
    num_classes = 1 + max(int(d.y.max()) for d in sets.values())
    return sets["--train"], sets["--meta"], sets.get("--test"), num_classes


def _task(model: str, shape: tuple[int, ...], num_classes: int, seed: int):
    from jdps.models.cnn import cnn_task
    from jdps.models.mlp import mlp_task

    if model == "mlp":
        return mlp_task(seed, int(np.prod(shape)), MLP_HIDDEN, num_classes)
    in_shape = (*shape, 1) if len(shape) == 2 else tuple(shape)
    if len(in_shape) != 3:
        raise InputError(f"--model cnn needs images shaped [N, H, W] or [N, H, W, C]; got examples of shape "
                         f"{shape}: use --model mlp")
    return cnn_task(seed, in_shape, num_classes)


def _check_epochs(epochs: int) -> None:
    if epochs < 1:
        raise InputError(f"--epochs must be at least 1, got {epochs}")


def _printer(quiet: bool):
    start = time.perf_counter()

    def show(epoch: int, epochs: int, step: int, info: bads.BADSInfo):
        if not quiet:
            print(f"epoch {epoch}/{epochs}  step {step}  loss {float(np.mean(info.loss)):.4f}  "
                  f"meta loss {float(np.mean(info.meta_loss)):.4f}  mean weight "
                  f"{float(np.mean(info.batch_weight)):.4f}  ({time.perf_counter() - start:.1f} s)", flush=True)
    return show


def _write(args, train: Dataset, weights, report: dict) -> int:
    out = {"weights": np.asarray(weights, np.float32), "id": train.ids}
    if "test_accuracy" in report:
        out["test_accuracy"] = np.float32(report["test_accuracy"])
    np.savez(args.out, **out)
    print(json.dumps({**report, "out": args.out}))
    return 0


def _cmd_bads(args) -> int:
    train, meta, test, num_classes = _load(args)
    _check_epochs(args.epochs)
    task, params = _task(args.model, train.x.shape[1:], num_classes, args.seed)
    steps_per_epoch = max(len(train) // min(args.batch_size, len(train)), 1)
    config = replace(CONFIG, lr=args.lr, weight_lr=args.weight_lr,
                     burn_in=min(args.burn_in, args.epochs - 1) * steps_per_epoch)
    state = bads.fit(task, params, train, meta, key=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                     meta_batch_size=args.meta_batch_size, config=config, progress=_printer(args.quiet))
    weights = bads.posterior_mean_weights(state)
    report = {"method": "bads", "examples": len(train), "meta_examples": len(meta), "epochs": args.epochs,
              "mean_weight": round(float(weights.mean()), 4)}
    if test is not None:
        report["test_accuracy"] = float((bads.predict(task, state, test.x).argmax(1) == test.y).mean())
    return _write(args, train, weights, report)


def _cmd_baseline(args) -> int:
    import optax

    from jdps.baselines import run_baseline
    from jdps.train import evaluate

    options = {}
    if args.method == "random":
        if (args.budget is None) == (args.fraction is None):
            raise InputError("--method random trains on a random subset of the training set: give its size "
                             "with --budget K or --fraction F (e.g. the number of examples BADS keeps)")
        options = {"budget": args.budget, "fraction": args.fraction}
    elif args.method in ("l2rw", "mwn"):
        options = {"meta_batch_size": args.meta_batch_size}
    train, meta, test, num_classes = _load(args)
    _check_epochs(args.epochs)
    task, params = _task(args.model, train.x.shape[1:], num_classes, args.seed)
    result = run_baseline(args.method, task, params, train, meta, key=args.seed, epochs=args.epochs,
                          batch_size=args.batch_size, optimizer=optax.adam(args.lr), **options)
    weights = result.weights
    report = {"method": args.method, "examples": len(train), "meta_examples": len(meta), "epochs": args.epochs}
    if test is not None:
        report["test_accuracy"] = evaluate(task, result.params, test)["accuracy"]
    return _write(args, train, weights, report)


def _common(p, lr: float, lr_help: str) -> None:
    p.add_argument("--train", required=True, help="training npz: x float [N, ...], y int [N], optional id [N]")
    p.add_argument("--meta", required=True, help="curated meta npz (the same classes): x, y")
    p.add_argument("--test", help="test npz: x, y; adds test_accuracy to the output")
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr, help=lr_help)
    p.add_argument("--meta-batch-size", type=int, default=100, help="meta examples a step (bads, l2rw, mwn)")
    p.add_argument("--quiet", action="store_true", help="print only the final summary")
    p.add_argument("--out", required=True, help="write weights [N], id [N] (and test_accuracy) to this npz")


def add_bads_parsers(subparsers) -> None:
    """Add the `bads` and `baseline` subcommands to `subparsers` (argparse's add_subparsers())."""
    cfg = CONFIG
    p = subparsers.add_parser("bads", help="BADS weights for your npz training set, from a curated meta set")
    _common(p, cfg.lr, "theta's SGD-like step size")
    p.add_argument("--weight-lr", type=float, default=cfg.weight_lr, help="step of one visit to a weight")
    p.add_argument("--burn-in", type=int, default=0, help="epochs before the weights' posterior means start")
    p.set_defaults(run=_cmd_bads)

    p = subparsers.add_parser("baseline", help="a BADS baseline on your npz arrays (same flags as bads)")
    p.add_argument("--method", required=True, choices=BASELINES)
    _common(p, 1e-3, "Adam learning rate")
    p.add_argument("--budget", type=int, help="random: the subset's size")
    p.add_argument("--fraction", type=float, help="random: the subset's share of the training set")
    p.set_defaults(run=_cmd_baseline)
