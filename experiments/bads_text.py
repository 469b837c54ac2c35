"""Experiment 3: efficient learning on text. A small byte-level transformer LM on a mixture of domains,
with a meta set from one target domain: which method gives the lowest held-out loss on the target?

Data, per seed s: five domains, the King James Bible (all of it, one domain "kjv") and the Brown
corpus genres "press: reportage", "learned", "fiction: general" and the target "fiction: romance".
The target's documents are split at random (seed s) into test documents (6), meta documents (3) and
training documents (the rest, 20); every other domain gives all its documents to training. Documents
are cut into windows of 64 byte tokens (`jdps.data.text.windows`); training keeps 300 random windows
of each domain (1,500 windows, the target a fifth of them), the meta set 100 windows of the meta
documents and the test set 500 windows of the test documents, so meta and test never share a
document with training or with each other (`experiments.common.target_split`).

Model and budget: the transformer LM (d_model 32, 2 layers, 2 heads; `experiments.common.lm_task`) from
the same initial parameters (seed s), epochs * (N // 32) steps of batch 32 for every method; baselines
use Adam(1e-3) (`experiments.common.run_named_baseline`); `random` keeps as many random windows as BADS
keeps; `oracle` trains on the target's training windows (and the meta set) only. Reported: the mean
next-token loss (nats per byte) on the target's test windows, mean ± std over the seeds; BADS with its
posterior predictive (token probabilities averaged over its theta snapshots) and with its final theta;
BADS's mean posterior weight per domain.

BADS (`jdps.bads.fit` with `jdps.bads.PRESETS["text"]`), configured as in experiment 2
(`experiments.bads_balance`): log Z estimated by the contrastive chain (a weight sees
l_i(theta) - l_i(theta'), how much the meta set helps theta fit window i; with log Z dropped it sees only
l_i(theta) and favours easy, repetitive text whatever the target), rho = 0.05 (the meta set's share of
theta's gradient M / (rho N) = 1.3), a cold chain (T = 1e-3, sigma_w = 30, weight_lr = 100),
self-normalised theta loss; lr = 2 (theta's step rho lr = 0.1; chosen by the final meta-set loss of one
seed among 2, 5 and 10, which diverged). `--set NAME=VALUE` changes any of it.

    python -m experiments.bads_text                           # 9 methods x 3 seeds
    python -m experiments.bads_text --methods bads uniform --seeds 0 --epochs 4

writes `<out>.md`, `<out>.json` and `<out>_weights.png` (mean BADS weight per domain); `--out`
defaults to experiments/results/bads_text.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from experiments.common import (
    BASELINES,
    RESULTS,
    Cells,
    add_checkpoint_dir,
    command_line,
    domain_means,
    kept_size,
    lm_task,
    markdown_table,
    mean_std,
    overrides,
    preset_changes,
    pyplot,
    run_named_baseline,
    save_figure,
    seconds_line,
    target_split,
    timed,
    write_report,
)
from jdps import bads
from jdps.losses import PAD_ID
from jdps.train import evaluate

PRESET = "text"  # jdps.bads.PRESETS: this experiment's BADS configuration
METHODS = ("bads", *BASELINES)
OUT = RESULTS / "bads_text"


@dataclass(frozen=True)
class Setup:
    """Domains and target, window length and counts, the model, the budget and the baselines' Adam step."""

    domains: tuple[str, ...] = ("kjv", "press: reportage", "learned", "fiction: general", "fiction: romance")
    target: str = "fiction: romance"
    length: int = 64
    train_per_domain: int = 300
    meta_windows: int = 100
    test_windows: int = 500
    meta_docs: int = 3
    test_docs: int = 6
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    epochs: int = 6
    batch_size: int = 32
    meta_batch_size: int = 32
    burn_in_epochs: int = 2
    adam_lr: float = 1e-3


FULL = Setup()


def make_data(setup: Setup, seed: int):
    """(train [N windows, `domain` column], meta, test) for one seed; meta and test from held-out
    documents of `setup.target`."""
    return target_split(setup.domains, setup.target, length=setup.length, per_domain=setup.train_per_domain,
                        meta_windows=setup.meta_windows, test_windows=setup.test_windows, meta_docs=setup.meta_docs,
                        test_docs=setup.test_docs, seed=seed)


def posterior_lm_loss(task, state, x, batch_size: int = 250) -> float:
    """Mean over windows of the next-token loss of the posterior predictive p(t) = mean_k softmax(f(theta_k))_t
    over the state's theta snapshots: l = -sum_t m_t log p(x_{t+1}) / sum_t m_t, m_t = [x_{t+1} != PAD]."""
    losses = []
    for start in range(0, len(x), batch_size):
        xb = jnp.asarray(x[start:start + batch_size])
        p = bads.posterior_predictive(task.apply, state, xb)[:, :-1]
        target = xb[:, 1:]
        logp = jnp.log(jnp.take_along_axis(p, target[..., None], axis=-1)[..., 0])
        mask = (target != PAD_ID).astype(jnp.float32)
        losses.append(np.asarray((-logp * mask).sum(-1) / jnp.maximum(mask.sum(-1), 1.0)))
    return float(np.concatenate(losses).mean())


def run_bads(train, meta, test, setup: Setup, seed: int, extra: dict) -> dict:
    """BADS on one draw: target test loss (posterior predictive; final theta), weights [N], kept size.
    extra: changes to the preset (the command line's --set)."""
    task, params = lm_task(setup, seed)
    config = bads.preset(PRESET, **extra, burn_in=setup.burn_in_epochs * (len(train) // setup.batch_size))
    state = bads.fit(task, params, {"x": train.x}, {"x": meta.x}, key=seed, epochs=setup.epochs,
                     batch_size=setup.batch_size, meta_batch_size=setup.meta_batch_size, config=config)
    weights = bads.posterior_mean_weights(state)
    return {"loss": posterior_lm_loss(task, state, test.x),
            "loss_final": evaluate(task, state.params, {"x": test.x})["loss"],
            "kept": kept_size(weights), "weights": weights}


def run_baseline(name: str, train, meta, test, setup: Setup, seed: int, kept: int | None) -> dict:
    """Baseline `name` on one draw -> {loss} on the target's test windows; `oracle` keeps the target's windows."""
    task, params = lm_task(setup, seed)
    clean = train.columns["domain"] == setup.domains.index(setup.target) if name == "oracle" else None
    result = run_named_baseline(name, task, params, {"x": train.x}, {"x": meta.x}, seed=seed, epochs=setup.epochs,
                                batch_size=setup.batch_size, adam_lr=setup.adam_lr,
                                meta_batch_size=setup.meta_batch_size, kept=kept, clean=clean)
    return {"loss": evaluate(task, result.params, {"x": test.x})["loss"]}


def run_grid(methods, seeds, setup: Setup, extra: dict | None = None, log=print,
             cells: Cells | None = None) -> list[dict]:
    """Every (seed, method) run -> records {seed, method, seconds, loss, ...}; BADS runs first on each draw
    and its record holds the mean weight per domain."""
    extra, cells = extra or {}, cells or Cells(None, {})
    records = []
    for seed in seeds:
        train, meta, test = make_data(setup, seed)
        kept = None
        for name in sorted(methods, key=lambda m: m != "bads"):
            def run_one(name=name, kept=kept):
                if name == "bads":
                    figures, seconds = timed(run_bads, train, meta, test, setup, seed, extra)
                    figures["domain_weights"] = domain_means(figures.pop("weights"), train.columns["domain"],
                                                             len(setup.domains))
                else:
                    figures, seconds = timed(run_baseline, name, train, meta, test, setup, seed, kept)
                return {"seed": seed, "method": name, "seconds": round(seconds, 1), **figures}
            figures = cells.run(run_one, seed=seed, method=name)
            if name == "bads":
                kept = figures["kept"]
            records.append(figures)
            log(f"seed {seed} {name:9s} target test loss {figures['loss']:.4f}  [{records[-1]['seconds']:.0f} s]")
    return records


def weight_figure(domains, weights, path: Path, title: str, highlight: str | None = None) -> None:
    """A bar chart of the mean BADS weight per domain (mean ± std over seeds) -> PNG at `path`."""
    w = np.asarray(weights)
    fig, ax = pyplot().subplots(figsize=(1.2 * len(domains) + 2, 3.6))
    colors = ["tab:red" if d == highlight else "tab:blue" for d in domains]
    ax.bar(range(len(domains)), w.mean(0), yerr=w.std(0), color=colors, capsize=3)
    ax.set_xticks(range(len(domains)), domains, rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="mean posterior BADS weight", title=title)
    save_figure(fig, path)


def table(records: list[dict], setup: Setup, command: str, config: dict) -> str:
    """The Markdown report: target test loss per method, BADS's mean weight per domain, the timings."""
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    seeds = sorted({r["seed"] for r in records})

    def pick(m, key="loss"):
        return [r[key] for r in records if r["method"] == m]

    rows = []
    for m in methods:
        rows.append(["bads (θ samples)" if m == "bads" else m, mean_std(pick(m), 1.0, 3)])
        if m == "bads":
            rows.append(["bads (final θ)", mean_std(pick(m, "loss_final"), 1.0, 3)])
    n = setup.epochs * (setup.train_per_domain * len(setup.domains) // setup.batch_size)
    lines = [f"# Experiment 3: efficient learning on text\n\nCommand: `{command}`\n",
             (f"Setup: {len(setup.domains)} domains ({', '.join(setup.domains)}), {setup.train_per_domain} training "
             f"windows of {setup.length} bytes each; target {setup.target!r}: {setup.meta_windows} meta windows "
             f"from {setup.meta_docs} held-out documents, {setup.test_windows} test windows from {setup.test_docs} "
             f"others. Transformer LM d_model {setup.d_model}, {setup.n_layers} layers, {setup.n_heads} heads; "
             f"{setup.epochs} epochs of batch {setup.batch_size} ({n:,} steps) for every method; baselines "
             f"Adam({setup.adam_lr:g}); seeds {seeds}. Target-domain test loss (nats per byte, lower is better), "
             "mean ± std over the seeds.\n"),
             f"BADS configuration: `{config}` (and burn_in = {setup.burn_in_epochs} epochs).\n",
             markdown_table(["method", f"{setup.target} test loss"], rows)]
    if "bads" in methods:
        w = np.asarray(pick("bads", "domain_weights"))
        rows = [[d + (" (target)" if d == setup.target else ""), mean_std(w[:, i], 1.0, 3)]
                for i, d in enumerate(setup.domains)]
        lines += ["", "Mean posterior BADS weight per domain (mean ± std over the seeds):\n",
                  markdown_table(["domain", "mean weight"], rows)]
    lines += ["", seconds_line(records, methods)]
    return "\n".join(lines) + "\n"


def save(records, setup: Setup, command: str, out: Path, extra: dict) -> str:
    config = {**preset_changes(PRESET), **extra}
    report = table(records, setup, command, config)
    write_report(out, report, {"command": command, "setup": asdict(setup), "bads_config": config, "runs": records})
    bads_runs = [r["domain_weights"] for r in records if r["method"] == "bads"]
    if bads_runs:
        weight_figure(setup.domains, bads_runs, out.parent / f"{out.name}_weights.png",
                      f"BADS weight per domain, meta set from {setup.target!r}", setup.target)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=FULL.epochs)
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="BADSConfig fields over this experiment's configuration, e.g. rho=0.1")
    parser.add_argument("--out", type=Path, default=OUT, help="path stem of the .md, .json and .png files")
    add_checkpoint_dir(parser, "seed, method")
    args = parser.parse_args(argv)
    if "random" in args.methods and "bads" not in args.methods:
        parser.error("random keeps as many windows as BADS: add bads to --methods")
    setup = replace(FULL, epochs=args.epochs)
    extra = overrides(args.set)
    cells = Cells(args.checkpoint_dir, {"module": "experiments.bads_text", "setup": asdict(setup), "extra": extra})
    records = run_grid(args.methods, args.seeds, setup, extra, cells=cells)
    print(save(records, setup, command_line("experiments.bads_text", argv), args.out, extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
