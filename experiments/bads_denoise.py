"""Experiment 1: denoising Fashion-MNIST with BADS, against its baselines.

Data, per seed s: a clean meta set of 100 examples per class drawn from the official training split
(`meta_split`), `n_train` (20,000) of the remaining 59,000 drawn at random, and their labels
corrupted (`corrupt_labels`): 40% or 60% symmetric noise (a label moves to one of the other nine
classes) or 40% pair noise (c -> c + 1 mod 10). Test: the official 10,000-image test split.

Model and budget: every method trains the MLP 784-256-128-10 from the same initial parameters (seed s)
for epochs * (n_train // 128) steps of batch 128 (`jdps.baselines.common`). BADS is SGLD
(`jdps.bads` with `jdps.cli.bads.CONFIG`, the settings this experiment chose: weight prior N(0.9, 0.5^2)
on [0, 1], rho = 4, theta's loss self-normalised; meta batch 100; running weight means from the first
step); the baselines use Adam(1e-3) (`jdps.baselines.run_baseline`); `random` trains on as many random
examples as BADS keeps, the examples whose posterior-mean weight is at least the mean weight.

Reported per method: test accuracy (%) as mean ± std over the seeds. BADS predicts with the class
probabilities averaged over its theta samples (4 snapshots, one at the end of each of the last 4
epochs); the row "bads, final θ" predicts with the last theta alone. For BADS also: the AUROC of the
posterior-mean weights for clean vs corrupted examples (corrupted = low weight) and the mean weight of
each group; a histogram of the weights by clean / corrupted goes to `<out>_weights.png` (seed of the
first run).

    python experiments/bads_denoise.py                       # the full grid: 3 noises x 9 methods x 3 seeds
    python experiments/bads_denoise.py --noise sym60 --seeds 0 --methods bads uniform
    python experiments/bads_denoise.py --demo                # sym60, seed 0, six methods; prints the table
    python experiments/bads_denoise.py --tune --seeds 0      # BADS with each setting of TUNING, sym60

writes `<out>.md` (the table and the command that made it), `<out>.json` (every run's figures) and
`<out>_weights.png` (`--tune`: `<out>_tuning.md`); `--out` defaults to experiments/results/bads_denoise.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

NOISES = {"sym40": ("symmetric", 0.4), "sym60": ("symmetric", 0.6), "pair40": ("pair", 0.4)}
METHODS = ("bads", "uniform", "meta_only", "dup_meta", "random", "cds", "l2rw", "mwn", "oracle")
OUT = Path(__file__).resolve().parent / "results" / "bads_denoise"


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

# The BADS settings tried at 60% symmetric noise, seed 0 (`--tune`): the library defaults, then the weight
# prior, rho and temperature (how fast and how far a weight settles), theta's loss, the step sizes and burn-in.
TUNING = {
    "BADSConfig() (library defaults)": {},
    "defaults, self-normalised": {"theta_loss": "self_normalised"},
    "beta 1, sigma_w 0.3, rho 10, s-n": {"weight_prior_mean": 1.0, "weight_prior_std": 0.3, "rho": 10.0,
                                         "theta_loss": "self_normalised"},
    "beta 1, sigma_w 0.3, rho 10, s-n, T 0.3": {"weight_prior_mean": 1.0, "weight_prior_std": 0.3, "rho": 10.0,
                                                "theta_loss": "self_normalised", "temperature": 0.3},
    "beta 1, sigma_w 0.2, rho 20, s-n": {"weight_prior_mean": 1.0, "weight_prior_std": 0.2, "rho": 20.0,
                                         "theta_loss": "self_normalised"},
    "beta 1, sigma_w 0.5, rho 4, s-n": {"weight_prior_mean": 1.0, "weight_prior_std": 0.5, "rho": 4.0,
                                        "theta_loss": "self_normalised"},
    "beta 1, sigma_w 0.5, rho 2, s-n": {"weight_prior_mean": 1.0, "weight_prior_std": 0.5, "rho": 2.0,
                                        "theta_loss": "self_normalised"},
    "CONFIG (beta 0.9, sigma_w 0.5, rho 4, s-n)": None,
    "CONFIG, weighted theta loss": {"theta_loss": "weighted"},
    "CONFIG, weight_lr 0.3": {"weight_lr": 0.3},
    "CONFIG, weight_lr 0.03": {"weight_lr": 0.03},
    "CONFIG, lr 0.1": {"lr": 0.1},
    "CONFIG, burn-in 2 epochs": {"burn_in": 312},
}


def make_data(noise: str, setup: Setup, seed: int):
    """(train with columns clean_y and corrupted, clean meta, test) for noise `noise` (a NOISES key)."""
    from jdps.data.catalogue import load
    from jdps.data.corruptions import corrupt_labels, meta_split
    from jdps.errors import InputError

    kind, rate = NOISES[noise]
    rest, meta = meta_split(load("fashion_mnist", "train"), setup.meta_per_class, seed=seed)
    if setup.n_train > len(rest):
        raise InputError(f"n_train={setup.n_train} exceeds the {len(rest)} training examples left after the "
                         f"meta split; pass --n-train {len(rest)} or less")
    pick = np.sort(np.random.default_rng(seed).permutation(len(rest))[: setup.n_train])
    train = corrupt_labels(rest.take(pick), rate, kind=kind, seed=seed)
    return train, meta, load("fashion_mnist", "test")


def _task(setup: Setup, seed: int):
    from jdps.models.mlp import mlp_task

    return mlp_task(seed, 28 * 28, setup.hidden, 10)


def run_bads(train, meta, test, setup: Setup, seed: int, config=None) -> dict:
    """BADS on one data draw: accuracies (posterior-averaged and final theta), weight AUROC, kept size.
    config: a `BADSConfig`, default `jdps.cli.bads.CONFIG`."""
    from sklearn.metrics import roc_auc_score

    from jdps import bads
    from jdps.cli.bads import CONFIG, fit_bads, predict

    task, params = _task(setup, seed)
    state = fit_bads(task, params, train, meta, key=seed, epochs=setup.epochs, batch_size=setup.batch_size,
                     meta_batch_size=setup.meta_batch_size, config=CONFIG if config is None else config)
    weights = bads.posterior_mean_weights(state)
    corrupted = train.columns["corrupted"]
    final = np.asarray(task.apply(state.params, test.x)).argmax(1)
    return {"accuracy": float((predict(task, state, test.x).argmax(1) == test.y).mean()),
            "accuracy_final": float((final == test.y).mean()),
            "auroc": float(roc_auc_score(corrupted, -weights)),
            "weight_clean": float(weights[~corrupted].mean()), "weight_corrupted": float(weights[corrupted].mean()),
            "kept": int((weights >= weights.mean()).sum()), "weights": weights}


def run_method(name: str, train, meta, test, setup: Setup, seed: int, kept: int | None = None) -> dict:
    """Baseline `name` on one data draw -> {accuracy}; `random` keeps `kept` examples."""
    import optax

    from jdps.baselines import run_baseline
    from jdps.train import evaluate

    task, params = _task(setup, seed)
    options = {"budget": kept} if name == "random" else {}
    if name in ("l2rw", "mwn"):
        options["meta_batch_size"] = setup.meta_batch_size
    result = run_baseline(name, task, params, train, meta, key=seed, epochs=setup.epochs,
                          batch_size=setup.batch_size, optimizer=optax.adam(setup.adam_lr), **options)
    return {"accuracy": evaluate(task, result.params, test)["accuracy"]}


def run_grid(noises, methods, seeds, setup: Setup, log=print) -> list[dict]:
    """Every (noise, seed, method) run -> a list of records {noise, seed, method, seconds, ...figures}.

    BADS runs first on each data draw (`random` needs its kept size); its record keeps the weights and
    the corrupted mask for the histogram."""
    records = []
    for noise in noises:
        for seed in seeds:
            train, meta, test = make_data(noise, setup, seed)
            kept = None
            for name in sorted(methods, key=lambda m: m != "bads"):
                start = time.perf_counter()
                if name == "bads":
                    figures = run_bads(train, meta, test, setup, seed)
                    figures["corrupted"] = train.columns["corrupted"]
                    kept = figures["kept"]
                else:
                    figures = run_method(name, train, meta, test, setup, seed, kept)
                record = {"noise": noise, "seed": seed, "method": name,
                          "seconds": round(time.perf_counter() - start, 1), **figures}
                records.append(record)
                log(f"{noise} seed {seed} {name:9s} accuracy {100 * record['accuracy']:.2f}%"
                    + (f" (final theta {100 * record['accuracy_final']:.2f}%), weight AUROC {record['auroc']:.4f}"
                       if name == "bads" else "") + f"  [{record['seconds']:.0f} s]")
    return records


def _cell(values, scale: float = 100.0, digits: int = 1) -> str:
    if not values:
        return "-"
    v = scale * np.asarray(values, np.float64)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v[0]:.{digits}f}"


def _values(records, noise, method, key="accuracy"):
    return [r[key] for r in records if r["noise"] == noise and r["method"] == method]


def table(records: list[dict], setup: Setup, command: str) -> str:
    """The Markdown report: accuracies per method and noise, BADS's weights, the targets, the timings."""
    noises = [n for n in NOISES if any(r["noise"] == n for r in records)]
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    seeds = sorted({r["seed"] for r in records})
    head = "| method | " + " | ".join(noises) + " |\n|---|" + "---|" * len(noises)
    rows = []
    for m in methods:
        name = "bads (θ samples)" if m == "bads" else m
        rows.append(f"| {name} | " + " | ".join(_cell(_values(records, n, m)) for n in noises) + " |")
        if m == "bads":
            rows.append("| bads (final θ) | " + " | ".join(_cell(_values(records, n, m, "accuracy_final"))
                                                         for n in noises) + " |")
    setting = (f"Setup: {setup.n_train:,} training examples, {setup.meta_per_class} clean meta examples per "
               f"class, MLP 784-{'-'.join(map(str, setup.hidden))}-10, {setup.epochs} epochs of batch "
               f"{setup.batch_size} ({setup.epochs * (setup.n_train // setup.batch_size):,} steps) for every "
               f"method; seeds {seeds}. Test accuracy (%) on the official 10,000 test images, mean ± std over "
               "the seeds. BADS runs `jdps.cli.bads.CONFIG` (chosen in bads_denoise_tuning.md); its first row "
               "predicts with the class probabilities averaged over 4 theta samples (the ends of the last 4 "
               f"epochs), its second with the last theta; the baselines use Adam({setup.adam_lr:g}) and their last "
               "parameters.\n")
    lines = [f"# Experiment 1: denoising Fashion-MNIST\n\nCommand: `{command}`\n", setting, head, *rows, "",
             "BADS's posterior-mean weights (corrupted examples should weigh less):\n",
             "| | " + " | ".join(noises) + " |\n|---|" + "---|" * len(noises)]
    for key, label, scale, digits in (("auroc", "AUROC, clean vs corrupted", 1.0, 4),
                                      ("weight_clean", "mean weight, clean", 1.0, 3),
                                      ("weight_corrupted", "mean weight, corrupted", 1.0, 3),
                                      ("kept", "kept (weight >= mean weight)", 1.0, 0)):
        lines.append(f"| {label} | " + " | ".join(_cell(_values(records, n, "bads", key), scale, digits)
                                                 for n in noises) + " |")
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
    lines += ["", "Seconds a run (mean over the runs; 2 CPU cores, shared): "
              + ", ".join(f"{m} {np.mean([r['seconds'] for r in records if r['method'] == m]):.0f}"
                          for m in methods)]
    return "\n".join(lines) + "\n"


def histogram(records: list[dict], path: Path) -> None:
    """One panel per noise: BADS's posterior-mean weights of clean and corrupted examples (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for n in NOISES for r in records if r["noise"] == n and r["method"] == "bads"]
    runs = [next(r for r in runs if r["noise"] == n) for n in dict.fromkeys(r["noise"] for r in runs)]
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.4), squeeze=False)
    bins = np.linspace(0, 1, 41)
    for ax, r in zip(axes[0], runs):
        w, bad = np.asarray(r["weights"]), np.asarray(r["corrupted"], bool)
        ax.hist(w[~bad], bins, alpha=0.6, label=f"clean ({(~bad).sum():,})", color="tab:blue")
        ax.hist(w[bad], bins, alpha=0.6, label=f"corrupted ({bad.sum():,})", color="tab:red")
        ax.set(title=f"{r['noise']}, seed {r['seed']}: AUROC {r['auroc']:.3f}", xlabel="posterior-mean weight",
               ylabel="examples")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _save(records: list[dict], setup: Setup, command: str, out: Path) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    report = table(records, setup, command)
    out.with_suffix(".md").write_text(report)
    plain = [{k: v for k, v in r.items() if k not in ("weights", "corrupted")} for r in records]
    out.with_suffix(".json").write_text(json.dumps({"command": command, "setup": asdict(setup), "runs": plain},
                                                   indent=1) + "\n")
    if any(r["method"] == "bads" for r in records):
        histogram(records, out.parent / f"{out.name}_weights.png")
    return report


def demo(seed: int = 0, setup: Setup = FULL, methods=DEMO_METHODS, log=print) -> str:
    """Experiment 1's 60% symmetric noise at full size, one seed, six of its methods; returns the table."""
    records = run_grid(["sym60"], methods, [seed], setup, log)
    return table(records, setup, f"jdps demo (experiment 1: sym60, seed {seed}, methods {' '.join(methods)})")


def tune(setup: Setup, seed: int, command: str, log=print) -> str:
    """BADS with each of `TUNING`'s settings at 60% symmetric noise -> a Markdown table."""
    from jdps.bads import BADSConfig
    from jdps.cli.bads import CONFIG

    train, meta, test = make_data("sym60", setup, seed)
    head = ("| BADS settings (s-n: self-normalised theta loss) | accuracy, θ samples | accuracy, final θ | "
            "weight AUROC | mean weight clean / corrupted | seconds |")
    rows = [head, "|---|---|---|---|---|---|"]
    for name, options in TUNING.items():
        start = time.perf_counter()
        config = replace(CONFIG, **(options or {})) if "CONFIG" in name else BADSConfig(**options)
        r = run_bads(train, meta, test, setup, seed, config)
        seconds = time.perf_counter() - start
        log(f"{name}: {100 * r['accuracy']:.2f}% ({100 * r['accuracy_final']:.2f}%), AUROC {r['auroc']:.4f}")
        rows.append(f"| {name} | {100 * r['accuracy']:.1f} | {100 * r['accuracy_final']:.1f} | {r['auroc']:.4f} | "
                    f"{r['weight_clean']:.3f} / {r['weight_corrupted']:.3f} | {seconds:.0f} |")
    return (f"# Experiment 1: tuning BADS at 60% symmetric noise\n\nCommand: `{command}`\n\n"
            f"One seed ({seed}), {setup.n_train:,} training examples, {setup.epochs} epochs; every other setting is "
            "`BADSConfig`'s default (lr 0.05, weight_lr 0.1, T 1, reflection, lazy off-batch updates, no burn-in). "
            "Test accuracy in %.\n\n" + "\n".join(rows) + "\n")


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
    args = parser.parse_args(argv)
    if args.demo:
        print(demo(args.seeds[0]))
        return 0
    setup = replace(FULL, n_train=args.n_train, epochs=args.epochs)
    command = shlex.join(["python", "experiments/bads_denoise.py", *(sys.argv[1:] if argv is None else argv)])
    if args.tune:
        report = tune(setup, args.seeds[0], command)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.parent.joinpath(f"{args.out.name}_tuning.md").write_text(report)
        print(report)
        return 0
    if "random" in args.methods and "bads" not in args.methods:
        parser.error("random keeps as many examples as BADS: add bads to --methods")
    records = run_grid(args.noise, args.methods, args.seeds, setup)
    print(_save(records, setup, command, args.out))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's jdps, installed or not
    sys.exit(main())
