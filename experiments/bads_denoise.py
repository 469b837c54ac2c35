"""Experiment 1: denoising Fashion-MNIST with BADS, against its baselines.

Data, per seed s: a clean meta set of 100 examples per class drawn from the official training split
(`meta_split`), `n_train` (20,000) of the remaining 59,000 drawn at random, and their labels
corrupted (`corrupt_labels`): 40% or 60% symmetric noise (a label moves to one of the other nine
classes) or 40% pair noise (c -> c + 1 mod 10). Test: the official 10,000-image test split.

Model and budget: every method trains the MLP 784-256-128-10 from the same initial parameters (seed s)
for epochs * (n_train // 128) steps of batch 128 (`jdps.baselines.common`). BADS is `jdps.bads.fit` with
the library default `BADSConfig()` (meta batch 100); the baselines use Adam(1e-3)
(`experiments.common.run_named_baseline`); `random` trains on as many random examples as BADS keeps, the
examples whose posterior-mean weight is at least the mean weight.

Reported per method: test accuracy (%) as mean ± std over the seeds, every method predicting the same way:
with the class probabilities averaged over its last 4 epoch snapshots (BADS's theta samples), and, in a
second table, with its last parameters alone. For BADS also: the AUROC of the
posterior-mean weights for clean vs corrupted examples (corrupted = low weight) and the mean weight of
each group; a histogram of the weights by clean / corrupted goes to `<out>_weights.png` (seed of the
first run).

    python -m experiments.bads_denoise                    # the full grid: 3 noises x 9 methods x 3 seeds
    python -m experiments.bads_denoise --noise sym60 --seeds 0 --methods bads uniform
    python -m experiments.bads_denoise --demo             # sym60, seed 0, six methods; prints the table
    python -m experiments.bads_denoise --tune --seeds 0   # BADS with each setting of TUNING, sym60

writes `<out>.md` (the table and the command that made it), `<out>.json` (every run's figures) and
`<out>_weights.png` (`--tune`: `<out>_tuning.md`); `--out` defaults to experiments/results/bads_denoise.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from experiments.common import (
    BASELINES,
    RESULTS,
    Cells,
    add_checkpoint_dir,
    command_line,
    kept_size,
    markdown_table,
    mean_std,
    mlp,
    pyplot,
    run_named_baseline,
    save_figure,
    seconds_line,
    snapshot_accuracy,
    timed,
    write_report,
)
from jdps import bads
from jdps.data.catalogue import load
from jdps.data.corruptions import corrupt_labels, meta_split
from jdps.errors import InputError

NOISES = {"sym40": ("symmetric", 0.4), "sym60": ("symmetric", 0.6), "pair40": ("pair", 0.4)}
METHODS = ("bads", *BASELINES)
SNAPSHOTS = 4   # every method predicts with the mean softmax over its last 4 epoch snapshots
OUT = RESULTS / "bads_denoise"


@dataclass(frozen=True)
class Setup:
    """The size of a run: training examples, meta examples per class, epochs, batches, step sizes."""

    n_train: int = 20_000
    meta_per_class: int = 100
    epochs: int = 20
    batch_size: int = 128
    meta_batch_size: int = 100
    adam_lr: float = 1e-3
    hidden: tuple[int, ...] = (256, 128)


FULL = Setup()
DEMO_METHODS = ("bads", "uniform", "meta_only", "l2rw", "mwn", "oracle")  # the cheaper baselines and BLO

# The BADS settings tried at 60% symmetric noise, seed 0 (`--tune`): label -> (preset, changes); the labels
# name the `denoise` preset CONFIG. The library defaults, then the weight prior, rho and temperature (how
# fast and how far a weight settles), theta's loss, the step sizes and burn-in.
TUNING = {
    "BADSConfig() (library defaults)": (None, {}),
    "defaults, self-normalised": (None, {"theta_loss": "self_normalised"}),
    "beta 1, sigma_w 0.3, rho 10, s-n": (None, {"weight_prior_mean": 1.0, "weight_prior_std": 0.3, "rho": 10.0,
                                                "theta_loss": "self_normalised"}),
    "beta 1, sigma_w 0.3, rho 10, s-n, T 0.3": (None, {"weight_prior_mean": 1.0, "weight_prior_std": 0.3,
                                                       "rho": 10.0, "theta_loss": "self_normalised",
                                                       "temperature": 0.3}),
    "beta 1, sigma_w 0.2, rho 20, s-n": (None, {"weight_prior_mean": 1.0, "weight_prior_std": 0.2, "rho": 20.0,
                                                "theta_loss": "self_normalised"}),
    "beta 1, sigma_w 0.5, rho 4, s-n": (None, {"weight_prior_mean": 1.0, "weight_prior_std": 0.5, "rho": 4.0,
                                               "theta_loss": "self_normalised"}),
    "beta 1, sigma_w 0.5, rho 2, s-n": (None, {"weight_prior_mean": 1.0, "weight_prior_std": 0.5, "rho": 2.0,
                                               "theta_loss": "self_normalised"}),
    "CONFIG (beta 0.9, sigma_w 0.5, rho 4, s-n)": ("denoise", {}),
    "CONFIG, weighted theta loss": ("denoise", {"theta_loss": "weighted"}),
    "CONFIG, weight_lr 0.3": ("denoise", {"weight_lr": 0.3}),
    "CONFIG, weight_lr 0.03": ("denoise", {"weight_lr": 0.03}),
    "CONFIG, lr 0.1": ("denoise", {"lr": 0.1}),
    "CONFIG, burn-in 2 epochs": ("denoise", {"burn_in": 312}),
}


def make_data(noise: str, setup: Setup, seed: int):
    """(train with columns clean_y and corrupted, clean meta, test) for noise `noise` (a NOISES key)."""
    kind, rate = NOISES[noise]
    rest, meta = meta_split(load("fashion_mnist", "train"), setup.meta_per_class, seed=seed)
    if setup.n_train > len(rest):
        raise InputError(f"n_train={setup.n_train} exceeds the {len(rest)} training examples left after the "
                         f"meta split; pass --n-train {len(rest)} or less")
    pick = np.sort(np.random.default_rng(seed).permutation(len(rest))[: setup.n_train])
    train = corrupt_labels(rest.take(pick), rate, kind=kind, seed=seed)
    return train, meta, load("fashion_mnist", "test")


def run_bads(train, meta, test, setup: Setup, seed: int, config=None) -> dict:
    """BADS on one data draw: accuracies (posterior-averaged and final theta), weight AUROC, kept size.
    config: a `BADSConfig`, default `BADSConfig()`."""
    task, params = mlp(setup.hidden, seed)
    state = bads.fit(task, params, train, meta, key=seed, epochs=setup.epochs, batch_size=setup.batch_size,
                     meta_batch_size=setup.meta_batch_size,
                     config=bads.BADSConfig() if config is None else config)
    weights = bads.posterior_mean_weights(state)
    corrupted = train.columns["corrupted"]
    final = np.asarray(task.apply(state.params, test.x)).argmax(1)
    return {"accuracy": float((bads.predict(task, state, test.x).argmax(1) == test.y).mean()),
            "accuracy_final": float((final == test.y).mean()),
            "auroc": float(roc_auc_score(corrupted, -weights)),
            "weight_clean": float(weights[~corrupted].mean()), "weight_corrupted": float(weights[corrupted].mean()),
            "kept": kept_size(weights), "weights": weights}


def run_method(name: str, train, meta, test, setup: Setup, seed: int, kept: int | None = None) -> dict:
    """Baseline `name` on one data draw -> {accuracy (mean softmax over the last 4 epoch snapshots),
    accuracy_final (last parameters)}; `random` keeps `kept` examples."""
    task, params = mlp(setup.hidden, seed)
    snapshots = []
    run_named_baseline(name, task, params, train, meta, seed=seed, epochs=setup.epochs, batch_size=setup.batch_size,
                       adam_lr=setup.adam_lr, meta_batch_size=setup.meta_batch_size, kept=kept,
                       on_epoch=lambda e, p: snapshots.append(p))
    snap, last = snapshot_accuracy(task, snapshots[-SNAPSHOTS:], test.x, test.y)
    return {"accuracy": snap, "accuracy_final": last}


def run_grid(noises, methods, seeds, setup: Setup, log=print, cells: Cells | None = None) -> list[dict]:
    """Every (noise, seed, method) run -> a list of records {noise, seed, method, seconds, ...figures}.

    BADS runs first on each data draw (`random` needs its kept size); its record keeps the weights and
    the corrupted mask for the histogram. With `cells` (--checkpoint-dir) each finished run is kept and a
    re-run computes only the missing ones."""
    cells = cells or Cells(None, {})
    records = []
    for noise in noises:
        for seed in seeds:
            data = []  # drawn on the first run that needs it
            kept = None

            def run_one(name):
                if not data:
                    data.extend(make_data(noise, setup, seed))
                train, meta, test = data
                if name == "bads":
                    figures, seconds = timed(run_bads, train, meta, test, setup, seed)
                    figures["corrupted"] = train.columns["corrupted"]
                else:
                    figures, seconds = timed(run_method, name, train, meta, test, setup, seed, kept)
                return {"noise": noise, "seed": seed, "method": name, "seconds": round(seconds, 1), **figures}

            for name in sorted(methods, key=lambda m: m != "bads"):
                record = cells.run(lambda: run_one(name), noise=noise, seed=seed, method=name)
                if name == "bads":
                    kept = record["kept"]
                records.append(record)
                log(f"{noise} seed {seed} {name:9s} accuracy {100 * record['accuracy']:.2f}%"
                    + (f" (final theta {100 * record['accuracy_final']:.2f}%), weight AUROC {record['auroc']:.4f}"
                       if name == "bads" else "") + f"  [{record['seconds']:.0f} s]")
    return records


def _values(records, noise, method, key="accuracy"):
    return [r[key] for r in records if r["noise"] == noise and r["method"] == method]


def table(records: list[dict], setup: Setup, command: str) -> str:
    """The Markdown report: accuracies per method and noise, BADS's weights, the targets, the timings."""
    noises = [n for n in NOISES if any(r["noise"] == n for r in records)]
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    seeds = sorted({r["seed"] for r in records})
    rows = [[m] + [mean_std(_values(records, n, m)) for n in noises] for m in methods]
    last_rows = [[m] + [mean_std(_values(records, n, m, "accuracy_final")) if all(
        "accuracy_final" in r for r in records if r["method"] == m) else "-" for n in noises] for m in methods]
    setting = (f"Setup: {setup.n_train:,} training examples, {setup.meta_per_class} clean meta examples per "
               f"class, MLP 784-{'-'.join(map(str, setup.hidden))}-10, {setup.epochs} epochs of batch "
               f"{setup.batch_size} ({setup.epochs * (setup.n_train // setup.batch_size):,} steps) for every "
               f"method; seeds {seeds}. Test accuracy (%) on the official 10,000 test images, mean ± std over "
               "the seeds. BADS runs the library default `BADSConfig()`; the baselines use "
               f"Adam({setup.adam_lr:g}). Every method predicts with the class probabilities averaged over its "
               "last 4 epoch snapshots (BADS: its theta samples, the ends of the last 4 epochs); the second table "
               "gives each method's last parameters alone.\n")
    weight_rows = [[label] + [mean_std(_values(records, n, "bads", key), 1.0, digits) for n in noises]
                   for key, label, digits in (("auroc", "AUROC, clean vs corrupted", 4),
                                              ("weight_clean", "mean weight, clean", 3),
                                              ("weight_corrupted", "mean weight, corrupted", 3),
                                              ("kept", "kept (weight >= mean weight)", 0))]
    lines = [f"# Experiment 1: denoising Fashion-MNIST\n\nCommand: `{command}`\n", setting,
             markdown_table(["method", *noises], rows), "",
             "Last parameters alone (BADS: the final theta):\n", markdown_table(["method", *noises], last_rows), "",
             "BADS's posterior-mean weights (corrupted examples should weigh less):\n",
             markdown_table(["", *noises], weight_rows)]
    if "sym60" in noises and "bads" in methods:
        lines += ["", "Targets at 60% symmetric noise:\n"]
        bads_acc = np.mean(_values(records, "sym60", "bads"))
        for other, goal in (("uniform", 0.03), ("meta_only", 0.0), ("l2rw", 0.0), ("mwn", 0.0)):
            if other in methods:
                gap = bads_acc - np.mean(_values(records, "sym60", other))
                verdict = "met" if gap >= goal else "not met"
                lines.append(f"- BADS - {other}: {100 * gap:+.1f} points (target >= {100 * goal:+.0f}): {verdict}")
        auroc = np.mean(_values(records, "sym60", "bads", "auroc"))
        lines.append(f"- weight AUROC: {auroc:.4f} (target >= 0.95): {'met' if auroc >= 0.95 else 'not met'}")
    lines += ["", seconds_line(records, methods)]
    return "\n".join(lines) + "\n"


def histogram(records: list[dict], path: Path) -> None:
    """One panel per noise: BADS's posterior-mean weights of clean and corrupted examples (first seed)."""
    runs = [r for n in NOISES for r in records if r["noise"] == n and r["method"] == "bads"]
    runs = [next(r for r in runs if r["noise"] == n) for n in dict.fromkeys(r["noise"] for r in runs)]
    fig, axes = pyplot().subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, r in zip(axes[0], runs):
        w, bad = np.asarray(r["weights"]), np.asarray(r["corrupted"], bool)
        ax.hist(w[~bad], bins, alpha=0.6, label=f"clean ({(~bad).sum():,})", color="tab:blue")
        ax.hist(w[bad], bins, alpha=0.6, label=f"corrupted ({bad.sum():,})", color="tab:red")
        ax.set(title=f"{r['noise']}, seed {r['seed']}: AUROC {r['auroc']:.3f}", xlabel="posterior-mean weight",
               ylabel="examples")
        ax.legend()
    save_figure(fig, path)


def save(records: list[dict], setup: Setup, command: str, out: Path) -> str:
    """<out>.md (the table), <out>.json (every run's figures) and <out>_weights.png -> the table."""
    report = table(records, setup, command)
    plain = [{k: v for k, v in r.items() if k not in ("weights", "corrupted")} for r in records]
    write_report(out, report, {"command": command, "setup": asdict(setup), "runs": plain})
    if any(r["method"] == "bads" for r in records):
        histogram(records, out.parent / f"{out.name}_weights.png")
    return report


def demo(seed: int = 0, setup: Setup = FULL, methods=DEMO_METHODS, log=print) -> str:
    """Experiment 1's 60% symmetric noise at full size, one seed, six of its methods; returns the table."""
    records = run_grid(["sym60"], methods, [seed], setup, log)
    return table(records, setup, f"python -m experiments.bads_denoise --demo --seeds {seed}"
                                 + (f" --methods {' '.join(methods)}" if tuple(methods) != DEMO_METHODS else ""))


def tune(setup: Setup, seed: int, command: str, log=print) -> str:
    """BADS with each of `TUNING`'s settings at 60% symmetric noise -> a Markdown table."""
    train, meta, test = make_data("sym60", setup, seed)
    rows = []
    for name, (preset, changes) in TUNING.items():
        r, seconds = timed(run_bads, train, meta, test, setup, seed, bads.preset(preset, **changes))
        log(f"{name}: {100 * r['accuracy']:.2f}% ({100 * r['accuracy_final']:.2f}%), AUROC {r['auroc']:.4f}")
        rows.append([name, f"{100 * r['accuracy']:.1f}", f"{100 * r['accuracy_final']:.1f}", f"{r['auroc']:.4f}",
                     f"{r['weight_clean']:.3f} / {r['weight_corrupted']:.3f}", f"{seconds:.0f}"])
    header = ["BADS settings (s-n: self-normalised theta loss)", "accuracy, θ samples", "accuracy, final θ",
              "weight AUROC", "mean weight clean / corrupted", "seconds"]
    return (f"# Experiment 1: tuning BADS at 60% symmetric noise\n\nCommand: `{command}`\n\n"
            f"One seed ({seed}), {setup.n_train:,} training examples, {setup.epochs} epochs; every other setting is "
            "`BADSConfig`'s default (lr 0.05, weight_lr 0.1, T 1, reflection, lazy off-batch updates, no burn-in). "
            "Test accuracy in %.\n\n" + markdown_table(header, rows) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noise", nargs="+", choices=tuple(NOISES), default=list(NOISES))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-train", type=int, default=FULL.n_train)
    parser.add_argument("--epochs", type=int, default=FULL.epochs)
    parser.add_argument("--out", type=Path, default=OUT, help="path stem of the .md, .json and _weights.png")
    parser.add_argument("--demo", action="store_true", help="sym60, one seed, six methods; print the table")
    parser.add_argument("--tune", action="store_true", help="BADS with each setting of TUNING, sym60, one seed; "
                        "writes <out>_tuning.md")
    add_checkpoint_dir(parser, "noise, seed, method")
    args = parser.parse_args(argv)
    if args.demo:
        print(demo(args.seeds[0]))
        return 0
    setup = replace(FULL, n_train=args.n_train, epochs=args.epochs)
    command = command_line("experiments.bads_denoise", argv)
    if args.tune:
        report = tune(setup, args.seeds[0], command)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.parent.joinpath(f"{args.out.name}_tuning.md").write_text(report)
        print(report)
        return 0
    if "random" in args.methods and "bads" not in args.methods:
        parser.error("random keeps as many examples as BADS: add bads to --methods")
    cells = Cells(args.checkpoint_dir, {"module": "experiments.bads_denoise", "setup": asdict(setup),
                                        "config": asdict(bads.BADSConfig())})
    records = run_grid(args.noise, args.methods, args.seeds, setup, cells=cells)
    print(save(records, setup, command, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
