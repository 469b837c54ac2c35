"""Experiment 4: mixture tuning. Each text source is a dataset of the training mixture; with a meta set
from one target source, BADS's mean weight per source says how much of each to train on (the paper's
Table 4, there over instruction-tuning datasets).

Sources: the King James Bible ("kjv", 1,189 chapters), the Brown corpus ("brown", 500 texts of 15
genres) and the SpamAssassin mails, ham ("ham", 4,150) and spam ("spam", 1,896). Every document is cut
into windows of 64 byte tokens once. Per target source t and seed s: a random tenth of t's documents
is held out (seed s); training keeps 300 random windows of every source from the other documents
(1,200 windows), the meta set 100 random windows of the held-out documents, so no meta window shares
a document with training.

BADS is run as in experiment 3 (`experiments.bads_text`: the transformer LM with d_model 32, 2 layers,
2 heads; `jdps.bads.PRESETS["text"]`: contrastive log Z, rho = 0.05, T = 1e-3, sigma_w = 30,
weight_lr = 100, lr = 2, self-normalised theta loss; batch 32, meta batch 32, 6 epochs, running means
after 2). Reported: the
mean posterior weight of each source for each target, mean ± std over the seeds, and whether the
target source gets the highest mean weight (the expected result).

    python -m experiments.bads_mixture                          # 4 targets x 3 seeds
    python -m experiments.bads_mixture --targets kjv --seeds 0

writes `<out>.md`, `<out>.json` and `<out>_weights.png` (a target x source heat map of the mean
weights); `--out` defaults to experiments/results/bads_mixture.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from experiments.common import (
    RESULTS,
    Cells,
    add_checkpoint_dir,
    command_line,
    corpus,
    domain_means,
    lm_task,
    markdown_table,
    mean_std,
    overrides,
    preset_changes,
    pyplot,
    save_figure,
    timed,
    write_report,
)
from jdps import bads
from jdps.data.corruptions import subsample_groups
from jdps.data.text import windows
from jdps.errors import InputError

PRESET = "text"  # jdps.bads.PRESETS: the BADS configuration of experiment 3
SOURCES = ("kjv", "brown", "ham", "spam")
OUT = RESULTS / "bads_mixture"


@dataclass(frozen=True)
class Setup:
    """Sources and targets, windows, the LM, the BADS budget."""

    sources: tuple[str, ...] = SOURCES
    targets: tuple[str, ...] = SOURCES
    length: int = 64
    per_source: int = 300
    meta_windows: int = 100
    held_out: float = 0.1
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    epochs: int = 6
    batch_size: int = 32
    meta_batch_size: int = 32
    burn_in_epochs: int = 2


FULL = Setup()


def source_windows(setup: Setup):
    """Every window of every source: a Dataset with columns `domain` (index into setup.sources) and `doc`."""
    return windows(corpus(setup.sources), setup.length, domain_names=setup.sources)


def make_data(pool, setup: Setup, target: str, seed: int):
    """(train: per_source windows of each source, meta: meta_windows of `target`) from `pool`, with a
    random `held_out` share of the target's documents kept for the meta set only."""
    if target not in setup.sources:
        raise InputError(f"target {target!r} is not one of the sources {setup.sources}; add it")
    rng = np.random.default_rng(seed)
    doc, domain = pool.columns["doc"], pool.columns["domain"]
    docs = np.unique(doc[domain == setup.sources.index(target)])
    held = rng.choice(docs, size=max(1, round(setup.held_out * len(docs))), replace=False)
    is_held = np.isin(doc, held)
    rest = pool.take(np.flatnonzero(~is_held))
    have = np.bincount(rest.columns["domain"], minlength=len(setup.sources))
    if (have < setup.per_source).any() or is_held.sum() < setup.meta_windows:
        raise InputError(f"too few windows: {dict(zip(setup.sources, have.tolist()))} for training, "
                         f"{int(is_held.sum())} held out for the meta set; lower per_source or meta_windows")
    train = subsample_groups(rest, np.full(len(setup.sources), setup.per_source), column="domain", seed=rng)
    meta = pool.take(np.sort(rng.choice(np.flatnonzero(is_held), setup.meta_windows, replace=False)))
    return train, meta


def run_one(pool, setup: Setup, target: str, seed: int, extra: dict) -> dict:
    """BADS for one target and seed -> {source_weights [S]}; extra: changes to the preset (--set)."""
    train, meta = make_data(pool, setup, target, seed)
    task, params = lm_task(setup, seed)
    config = bads.preset(PRESET, **extra, burn_in=setup.burn_in_epochs * (len(train) // setup.batch_size))
    state = bads.fit(task, params, {"x": train.x}, {"x": meta.x}, key=seed, epochs=setup.epochs,
                     batch_size=setup.batch_size, meta_batch_size=setup.meta_batch_size, config=config)
    weights = bads.posterior_mean_weights(state)
    return {"source_weights": domain_means(weights, train.columns["domain"], len(setup.sources))}


def run_grid(targets, seeds, setup: Setup, extra: dict | None = None, log=print,
             cells: Cells | None = None) -> list[dict]:
    """Every (target, seed) -> records {target, seed, seconds, source_weights}; with `cells`
    (--checkpoint-dir) each finished run is kept and a re-run computes only the missing ones."""
    pool, cells = source_windows(setup), cells or Cells(None, {})
    records = []
    for target in targets:
        for seed in seeds:
            def run_cell(target=target, seed=seed):
                figures, seconds = timed(run_one, pool, setup, target, seed, extra or {})
                return {"target": target, "seed": seed, "seconds": round(seconds, 1), **figures}
            figures = cells.run(run_cell, target=target, seed=seed)
            records.append(figures)
            log(f"target {target:5s} seed {seed}: mean weight per source "
                + ", ".join(f"{s} {w:.3f}" for s, w in zip(setup.sources, figures["source_weights"]))
                + f"  [{records[-1]['seconds']:.0f} s]")
    return records


def weight_matrix(records, setup: Setup) -> tuple[list[str], np.ndarray]:
    """(targets, [T, seeds, S] mean weights) in the order the targets first appear."""
    targets = list(dict.fromkeys(r["target"] for r in records))
    return targets, [np.asarray([r["source_weights"] for r in records if r["target"] == t]) for t in targets]


def table(records: list[dict], setup: Setup, command: str, config: dict) -> str:
    """The Markdown report: mean weight per source for each target, and whether the target's is highest."""
    targets, w = weight_matrix(records, setup)
    seeds = sorted({r["seed"] for r in records})
    rows, met = [], 0
    for t, wt in zip(targets, w):
        mean = wt.mean(0)
        top = int(np.argmax(mean))
        met += setup.sources[top] == t
        cells = [("**" + mean_std(wt[:, i], 1.0, 3) + "**") if i == top else mean_std(wt[:, i], 1.0, 3)
                 for i in range(len(setup.sources))]
        rows.append([t, *cells, "yes" if setup.sources[top] == t else f"no ({setup.sources[top]})"])
    windows = setup.per_source * len(setup.sources)
    lines = [f"# Experiment 4: mixture tuning with BADS weights per source\n\nCommand: `{command}`\n",
             (f"Setup: sources {', '.join(setup.sources)}; for each target, {setup.per_source} training windows of "
             f"{setup.length} bytes from every source ({windows:,} in all) and {setup.meta_windows} meta windows from "
             f"a held-out {setup.held_out:.0%} of the target's documents. Transformer LM d_model {setup.d_model}, "
             f"{setup.n_layers} layers, {setup.n_heads} heads; {setup.epochs} epochs of batch {setup.batch_size} "
             f"({setup.epochs * (windows // setup.batch_size):,} steps); seeds {seeds}.\n"),
             f"BADS configuration: `{config}` (and burn_in = {setup.burn_in_epochs} epochs).\n",
             ("Mean posterior BADS weight of each source's training windows (mean ± std over the seeds; the "
             "highest of each row in bold):\n"),
             markdown_table(["meta set from", *setup.sources, "target highest?"], rows), "",
             f"Expected result, the target source gets the highest mean weight: {met} of {len(targets)} targets.",
             "", ("Seconds a run (mean; 2 CPU cores, shared): "
             f"{np.mean([r['seconds'] for r in records]):.0f}")]
    return "\n".join(lines) + "\n"


def figure(records, setup: Setup, path: Path) -> None:
    """A heat map of the mean weights: targets (rows) x sources (columns), values annotated."""
    targets, w = weight_matrix(records, setup)
    mean = np.asarray([wt.mean(0) for wt in w])
    fig, ax = pyplot().subplots(figsize=(1.3 * len(setup.sources) + 2, 0.7 * len(targets) + 1.8))
    image = ax.imshow(mean, cmap="viridis")
    for i in range(len(targets)):
        for j in range(len(setup.sources)):
            ax.text(j, i, f"{mean[i, j]:.3f}", ha="center", va="center",
                    color="black" if mean[i, j] > mean.mean() else "white", fontsize=9)
    ax.set_xticks(range(len(setup.sources)), setup.sources)
    ax.set_yticks(range(len(targets)), targets)
    ax.set(xlabel="training source", ylabel="meta set from", title="mean posterior BADS weight per source")
    fig.colorbar(image, ax=ax)
    save_figure(fig, path)


def save(records, setup: Setup, command: str, out: Path, extra: dict) -> str:
    config = {**preset_changes(PRESET), **extra}
    report = table(records, setup, command, config)
    write_report(out, report, {"command": command, "setup": asdict(setup), "bads_config": config, "runs": records})
    figure(records, setup, out.parent / f"{out.name}_weights.png")
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=FULL.epochs)
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="BADSConfig fields over this experiment's configuration, e.g. rho=0.1")
    parser.add_argument("--out", type=Path, default=OUT, help="path stem of the .md, .json and .png files")
    add_checkpoint_dir(parser, "target, seed")
    args = parser.parse_args(argv)
    setup = replace(FULL, targets=tuple(args.targets), epochs=args.epochs)
    extra = overrides(args.set)
    cells = Cells(args.checkpoint_dir, {"module": "experiments.bads_mixture", "setup": asdict(setup), "extra": extra})
    records = run_grid(args.targets, args.seeds, setup, extra, cells=cells)
    print(save(records, setup, command_line("experiments.bads_mixture", argv), args.out, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
