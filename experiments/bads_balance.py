"""Experiment 2: balancing a long-tailed Fashion-MNIST with BADS and a small balanced meta set.

Data, per seed s: a balanced meta pool of 50 examples per class drawn from the official training split
(`meta_split`); the rest subsampled to the long-tail profile n_c = floor(n_max 100^(-c/9)) (`long_tail`,
imbalance ratio 100, class 0 largest, n_max the smallest class left: 5,950 ... 59, 14,762 examples in
all); the meta set of k examples per class is the first k of each class of the pool (so the sets are
nested), k in 5, 10, 25, 50 (the paper's Fig. 3). Test: the official 10,000 test images (1,000 per
class), scored by balanced accuracy (the mean recall over the classes; equal to accuracy here).

Model and budget: the MLP 784-256-128-10 from the same initial parameters (seed s), epochs * (N // 128)
steps of batch 128 for every method. Baselines: Adam(1e-3) (`experiments.common.run_named_baseline`);
`random` keeps as many random examples as BADS keeps (weight >= mean weight).

BADS (`jdps.bads.fit`, SGLD over theta and the weights, meta batch 100, running means after 2 epochs,
prediction averaged over 4 theta snapshots) runs `jdps.bads.PRESETS["balance"]`, chosen in short runs
(5-10 epochs, one seed, 10 meta examples per class; the later of them scored on a balanced validation
split of the training images):
  log_z="contrastive"  the weights see l_i(theta) - l_i(theta'), theta' a meta-free chain. With log Z
      dropped a weight sees only rho l_i(theta), so badly fitted examples weigh less, and on a long
      tail those are the rare classes: it down-weights exactly what must be up-weighted. The
      contrast up-weights the examples the meta set (balanced) helps theta fit: the rare classes.
  rho=0.05, lr=5  rho sets the meta set's share of theta's gradient, M / (rho N) (0.14 at M = 100);
      lr = 5 keeps theta's step rho lr = 0.25.
  temperature=0.001, weight_prior_std=30, weight_lr=100  a cold chain, so that a weight's conditional
      exp(-rho (l_i - l'_i) w / T) responds to loss differences of a few hundredths (rho / T = 50);
      sigma_w sqrt(T) ~ 1 keeps the prior as broad as the default's; weight_lr rho = 5 per visit.
  theta_loss="self_normalised"  sum w l / sum w: theta's step does not depend on mean(w), so the
      meta share stays M / (rho N) whatever level the weights settle at.
Variants (rows of the table, same settings otherwise): bads_dropped (log Z dropped), bads_weighted
(theta_loss="weighted"), bads_frozen (weight_lr=0: the same theta chain with every weight fixed at 1/2,
which separates the weights' effect from the sampler's SGD-like optimiser).

    python -m experiments.bads_balance                        # 4 meta sizes x 9 methods x 3 seeds
    python -m experiments.bads_balance --methods bads_dropped bads_weighted --seeds 0 --out ...
    python -m experiments.bads_balance --set rho=0.1 lr=2.5   # another BADS configuration

writes `<out>.md` (tables and the command), `<out>.json` (every run's figures), `<out>_accuracy.png`
(balanced accuracy against meta-set size) and `<out>_weights.png` (mean BADS weight per class against
class frequency); `--out` defaults to experiments/results/bads_balance.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

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
    overrides,
    preset_changes,
    pyplot,
    run_named_baseline,
    save_figure,
    seconds_line,
    timed,
    write_report,
)
from jdps import bads
from jdps.data.catalogue import load
from jdps.data.corruptions import long_tail, meta_split
from jdps.data.sources import FASHION_CLASSES

PRESET = "balance"  # jdps.bads.PRESETS: this experiment's BADS configuration
VARIANTS = {"bads": {}, "bads_dropped": {"log_z": "dropped"}, "bads_weighted": {"theta_loss": "weighted"},
            "bads_frozen": {"weight_lr": 0.0, "log_z": "dropped"}}  # changes to the preset
NO_TRUTH = tuple(b for b in BASELINES if b != "oracle")  # no example is corrupted: nothing for an oracle
METHODS = (*VARIANTS, *NO_TRUTH)
DEFAULT_METHODS = ("bads", "bads_frozen", *NO_TRUTH)
OUT = RESULTS / "bads_balance"


@dataclass(frozen=True)
class Setup:
    """The size of a run: imbalance, meta sizes, epochs, batches, the baselines' Adam step, the MLP."""

    ratio: float = 100.0
    meta_sizes: tuple[int, ...] = (5, 10, 25, 50)
    epochs: int = 10
    batch_size: int = 128
    meta_batch_size: int = 100
    burn_in_epochs: int = 2
    adam_lr: float = 1e-3
    hidden: tuple[int, ...] = (256, 128)
    n_max: int | None = None  # largest class; None: the smallest class left after the meta split


FULL = Setup()


def make_data(setup: Setup, seed: int):
    """(long-tailed train, balanced meta pool of max(meta_sizes) per class, test) for seed `seed`."""
    rest, pool = meta_split(load("fashion_mnist", "train"), max(setup.meta_sizes), seed=seed)
    return long_tail(rest, setup.ratio, seed=seed, n_max=setup.n_max), pool, load("fashion_mnist", "test")


def meta_subset(pool, per_class: int):
    """The first `per_class` examples of each class of `pool`, in pool order."""
    first = [np.flatnonzero(pool.y == c)[:per_class] for c in np.unique(pool.y)]
    return pool.take(np.sort(np.concatenate(first)))


def balanced_accuracy(predicted, y) -> float:
    """Mean over the classes present in y of their recall."""
    return float(np.mean([(predicted[y == c] == c).mean() for c in np.unique(y)]))


def bads_config(method: str, setup: Setup, steps_per_epoch: int, extra: dict):
    """The preset with the command line's changes `extra`, the variant's changes and the burn-in."""
    return bads.preset(PRESET, **{**extra, **VARIANTS[method]}, burn_in=setup.burn_in_epochs * steps_per_epoch)


def run_bads(method: str, train, meta, test, setup: Setup, seed: int, extra: dict) -> dict:
    """A BADS variant on one draw: balanced accuracy (theta samples; final theta), mean weight per class."""
    task, params = mlp(setup.hidden, seed)
    config = bads_config(method, setup, len(train) // setup.batch_size, extra)
    state = bads.fit(task, params, train, meta, key=seed, epochs=setup.epochs, batch_size=setup.batch_size,
                     meta_batch_size=setup.meta_batch_size, config=config)
    weights = bads.posterior_mean_weights(state)
    final = np.asarray(task.apply(state.params, test.x)).argmax(1)
    return {"balanced_accuracy": balanced_accuracy(bads.predict(task, state, test.x).argmax(1), test.y),
            "balanced_accuracy_final": balanced_accuracy(final, test.y),
            "class_weights": [float(weights[train.y == c].mean()) for c in range(10)],
            "kept": kept_size(weights)}


def run_baseline(name: str, train, meta, test, setup: Setup, seed: int, kept: int | None) -> dict:
    task, params = mlp(setup.hidden, seed)
    result = run_named_baseline(name, task, params, train, meta, seed=seed, epochs=setup.epochs,
                                batch_size=setup.batch_size, adam_lr=setup.adam_lr,
                                meta_batch_size=setup.meta_batch_size, kept=kept)
    predicted = np.asarray(task.apply(result.params, test.x)).argmax(1)
    return {"balanced_accuracy": balanced_accuracy(predicted, test.y)}


def run_grid(methods, seeds, setup: Setup, extra: dict | None = None, log=print,
             cells: Cells | None = None) -> tuple[list[dict], dict]:
    """Every (seed, meta size, method) run -> (records, {seed: training class counts [C]}).

    BADS variants run first on each draw (`random` keeps as many examples as `bads`, else as the first
    variant run)."""
    extra, cells = extra or {}, cells or Cells(None, {})
    records, counts = [], {}
    order = sorted(methods, key=lambda m: (m not in VARIANTS, m != "bads"))
    for seed in seeds:
        train, pool, test = make_data(setup, seed)
        counts[seed] = np.bincount(train.y, minlength=10).tolist()
        for k in setup.meta_sizes:
            meta, kept = meta_subset(pool, k), None
            for name in order:
                def run_one(name=name, kept=kept):
                    if name in VARIANTS:
                        figures, seconds = timed(run_bads, name, train, meta, test, setup, seed, extra)
                    else:
                        figures, seconds = timed(run_baseline, name, train, meta, test, setup, seed, kept)
                    return {"meta_per_class": k, "seed": seed, "method": name, "seconds": round(seconds, 1),
                            **figures}
                record = cells.run(run_one, seed=seed, meta=k, method=name)
                if name in VARIANTS:
                    kept = record["kept"] if kept is None or name == "bads" else kept
                records.append(record)
                figures = record
                log(f"seed {seed} meta {k:2d}/class {name:13s} balanced accuracy "
                    f"{100 * figures['balanced_accuracy']:.2f}%  [{records[-1]['seconds']:.0f} s]")
    return records, counts


def _pick(records, k, method, key="balanced_accuracy"):
    return [r[key] for r in records if r["meta_per_class"] == k and r["method"] == method]


def class_weight_means(records, method="bads") -> dict[int, np.ndarray]:
    """{meta size: mean over seeds of the per-class mean weights [C]} for a BADS variant."""
    sizes = sorted({r["meta_per_class"] for r in records if r["method"] == method})
    return {k: np.mean(_pick(records, k, method, "class_weights"), axis=0) for k in sizes}


def table(records: list[dict], counts: dict, setup: Setup, command: str, config: dict) -> str:
    """The Markdown report: balanced accuracy per method and meta size, the target, BADS's class weights."""
    sizes = [k for k in setup.meta_sizes if any(r["meta_per_class"] == k for r in records)]
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    seeds = sorted({r["seed"] for r in records})
    count = np.mean([counts[s] for s in seeds], axis=0)
    rows = [[m] + [mean_std(_pick(records, k, m)) for k in sizes] for m in methods]
    for m in (m for m in methods if m in VARIANTS):
        rows.append([f"{m} (final θ)"] + [mean_std(_pick(records, k, m, "balanced_accuracy_final")) for k in sizes])
    lines = [f"# Experiment 2: balancing long-tailed Fashion-MNIST\n\nCommand: `{command}`\n",
             (f"Setup: Fashion-MNIST training split, long tail with imbalance ratio {setup.ratio:g} "
             f"({int(count.sum()):,} examples, {int(count[0]):,} ... {int(count[-1])} per class), balanced meta "
             f"sets of {', '.join(map(str, sizes))} examples per class; MLP 784-{'-'.join(map(str, setup.hidden))}-10, "
             f"{setup.epochs} epochs of batch {setup.batch_size} ({setup.epochs * (int(count.sum()) // setup.batch_size):,}"
             f" steps) for every method; baselines Adam({setup.adam_lr:g}); seeds {seeds}. Balanced test accuracy "
             "(%) on the official 10,000 test images, mean ± std over the seeds; BADS rows predict with the "
             "posterior average over its theta samples, the (final θ) rows with the last theta.\n"),
             f"BADS configuration: `{config}` (and burn_in = {setup.burn_in_epochs} epochs).\n",
             markdown_table(["method"] + [f"{k} / class" for k in sizes], rows)]
    if "bads" in methods and "uniform" in methods:
        lines += ["", "Target: BADS beats uniform in balanced accuracy at every meta-set size.\n"]
        for k in sizes:
            gap = np.mean(_pick(records, k, "bads")) - np.mean(_pick(records, k, "uniform"))
            lines.append(f"- {k} / class: BADS - uniform = {100 * gap:+.1f} points: {'met' if gap > 0 else 'not met'}")
    for m in (m for m in methods if m in VARIANTS and m != "bads_frozen"):
        means = class_weight_means(records, m)
        lines += ["", f"Mean {m} weight per class (mean over seeds) against the class's training count:\n"]
        rows = [[c, FASHION_CLASSES[c], int(count[c]), f"{count[c] / count.sum():.4f}"]
                + [f"{means[k][c]:.3f}" for k in sizes] for c in range(10)]
        rows.append(["", "Spearman ρ(weight, count)", "", ""]
                    + [f"{spearmanr(means[k], count).statistic:+.2f}" for k in sizes])
        lines.append(markdown_table(["class", "name", "count", "frequency"] + [f"{k} / class" for k in sizes], rows))
    lines += ["", seconds_line(records, methods)]
    return "\n".join(lines) + "\n"


def figures(records: list[dict], counts: dict, out: Path) -> None:
    """<out>_accuracy.png (balanced accuracy against meta size) and <out>_weights.png (BADS class weights)."""
    sizes = sorted({r["meta_per_class"] for r in records})
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for m in methods:
        acc = [100 * np.asarray(_pick(records, k, m)) for k in sizes]
        ax.errorbar(sizes, [a.mean() for a in acc], [a.std() for a in acc], marker="o", capsize=3, label=m,
                    lw=2.5 if m == "bads" else 1.2)
    ax.set(xscale="log", xticks=sizes, xticklabels=sizes, xlabel="meta examples per class",
           ylabel="balanced test accuracy (%)", title="Long-tailed Fashion-MNIST (ratio 100)")
    ax.minorticks_off()
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, out.parent / f"{out.name}_accuracy.png")

    if "bads" not in methods:
        return
    count = np.mean(list(counts.values()), axis=0)
    means = class_weight_means(records)
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for k, w in means.items():
        ax.plot(count, w, marker="o", label=f"{k} meta / class")
    for c in range(10):
        ax.annotate(str(c), (count[c], means[sizes[-1]][c]), fontsize=7, textcoords="offset points", xytext=(3, 3))
    ax.set(xscale="log", xlabel="training examples of the class", ylabel="mean posterior BADS weight",
           title="BADS weight per class against class frequency")
    ax.legend(fontsize=8)
    save_figure(fig, out.parent / f"{out.name}_weights.png")


def save(records, counts, setup: Setup, command: str, out: Path, extra: dict) -> str:
    config = {**preset_changes(PRESET), **extra}
    report = table(records, counts, setup, command, config)
    write_report(out, report, {"command": command, "setup": asdict(setup), "bads_config": config,
                               "variants": VARIANTS, "class_counts": counts, "runs": records})
    figures(records, counts, out)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--meta-sizes", nargs="+", type=int, default=list(FULL.meta_sizes))
    parser.add_argument("--epochs", type=int, default=FULL.epochs)
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="BADSConfig fields over this experiment's configuration, e.g. rho=0.1")
    parser.add_argument("--out", type=Path, default=OUT, help="path stem of the .md, .json and .png files")
    add_checkpoint_dir(parser, "seed, meta size, method")
    args = parser.parse_args(argv)
    if "random" in args.methods and not set(args.methods) & set(VARIANTS):
        parser.error("random keeps as many examples as BADS: add bads to --methods")
    setup = replace(FULL, meta_sizes=tuple(args.meta_sizes), epochs=args.epochs)
    extra = overrides(args.set)
    cells = Cells(args.checkpoint_dir, {"module": "experiments.bads_balance", "setup": asdict(setup), "extra": extra})
    records, counts = run_grid(args.methods, args.seeds, setup, extra, cells=cells)
    print(save(records, counts, setup, command_line("experiments.bads_balance", argv), args.out, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
