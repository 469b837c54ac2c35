"""BADS robustness study: BADS against uniform, meta_only, L2RW and MWN across data sets, label noise, meta-set
sizes and seeds, every method at the same number of steps and predicting the same way.

Grid (the full study, `--grid full`):
    data sets   fashion2k (2,000 Fashion-MNIST training images), fashion20k (20,000), mnist5k (3,000 of the
                5,000 MNIST digits; 1,000 held out as its test set) and mnist1d (3,000 of the 4,000 MNIST-1D training
                signals; never
                searched on: run only with the final default, as the check that it generalises)
    noise       none, symmetric 20 / 40 / 60 / 80 %, pair 20 / 40 / 45 % (`jdps.data.corrupt_labels`)
    meta set    5, 15 and 100 clean examples per class, drawn from the training split, disjoint from the
                pool, and at most a tenth of the pool (so 100 per class becomes 20 on fashion2k)
    seeds       0, 1, 2
The screening grid (`--grid screen`, about 45 minutes) serves the search: fashion2k and mnist5k, noise
sym40 / sym80 / pair40 / pair45 / none, meta 5 and 15 per class, seed 10, scored on a VALIDATION split drawn
from the training split (`--validation`), never on a test split.

Every method trains the MLP 784-256-128-10 (MNIST-1D: 40-256-128-10) from the same initial parameters for
`epochs` * ceil(N / 128) steps (batch 128, the last batch of an epoch padded). The reported accuracy of
every method is that of the mean softmax over its last 4 epoch snapshots (BADS: its theta samples, one an
epoch); a second column gives each method's last parameters alone. Weight AUROC (clean vs corrupted) for
the methods that weight examples (BADS, L2RW, MWN). BADS runs `BADSConfig()` unless `--configs` names
settings of CANDIDATES (then each runs as a method `bads:NAME`).

Each finished cell (data set, noise, meta size, seed) is saved at once to `<out>_cells/` and a re-run skips
the cells already there, so the grid can run across sessions; the report, JSON and heatmap (BADS minus the
best baseline per cell) are rebuilt from every saved cell.

    python -m experiments.bads_robustness --grid screen --validation --configs default A B --out /tmp/screen
    python -m experiments.bads_robustness --grid full                                   # the study
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np
from sklearn.metrics import roc_auc_score

from experiments.common import (
    RESULTS,
    adam,
    command_line,
    markdown_table,
    pyplot,
    save_figure,
    snapshot_accuracy,
    write_report,
)
from jdps import bads, outputs
from jdps.baselines import run_baseline
from jdps.data import corrupt_labels, load, meta_split
from jdps.models.mlp import mlp_task

OUT = RESULTS / "bads_robustness"
BASELINES = ("uniform", "meta_only", "l2rw", "mwn")
NOISES = {"none": ("symmetric", 0.0), "sym20": ("symmetric", 0.2), "sym40": ("symmetric", 0.4),
          "sym60": ("symmetric", 0.6), "sym80": ("symmetric", 0.8), "pair20": ("pair", 0.2),
          "pair40": ("pair", 0.4), "pair45": ("pair", 0.45)}
DATASETS = {"fashion2k": ("fashion_mnist", 2000), "fashion20k": ("fashion_mnist", 20000),
            "mnist5k": ("mnist_5k", 3000), "mnist1d": ("mnist1d", 3000)}
HELD_OUT = ("mnist1d",)     # never in a search
GRIDS = {
    "full": {"datasets": tuple(DATASETS), "noises": tuple(NOISES), "meta": (5, 15, 100), "seeds": (0, 1, 2)},
    "screen": {"datasets": ("fashion2k", "mnist5k"), "noises": ("sym40", "sym80", "pair40", "pair45", "none"),
               "meta": (5, 15), "seeds": (10,)},
}
HIDDEN, BATCH, META_BATCH, SNAPSHOTS = (256, 128), 128, 100, 4
# Settings the search compared, each a set of changes to the `faithful` preset (the defaults before this
# study); "default" is BADSConfig() itself, chosen by the search (it is F_T01).
CANDIDATES = {
    "default": {},
    "faithful": {},
    "denoise": dict(weight_prior_mean=0.9, weight_prior_std=0.5, rho=4.0, theta_loss="self_normalised", lr=0.05,
                    theta_kernel="sgld", meta_strength=None, temperature=1.0),
    # pSGLD for theta, the meta set weighted like the training set, a cool chain and a prior near 1
    "P": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, weight_prior_mean=0.9,
              weight_prior_std=0.5, theta_loss="self_normalised"),
    "P_s03": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, weight_prior_mean=0.9,
                  weight_prior_std=0.3, theta_loss="self_normalised"),
    "P_ms03": dict(theta_kernel="psgld", lr=1e-3, meta_strength=0.3, temperature=0.1, weight_prior_mean=0.9,
                   weight_prior_std=0.5, theta_loss="self_normalised"),
    # the weighted theta loss: the training term shrinks with the weights (pSGLD keeps the step size)
    "P_w": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, weight_prior_mean=0.9,
                weight_prior_std=0.5, theta_loss="weighted"),
    "P_s03_w": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, weight_prior_mean=0.9,
                    weight_prior_std=0.3, theta_loss="weighted"),
    # the meta set fills the data mass the weights remove: U / N = rho [sum_B w l / b + (s + 1 - mean_B w) mean l^m]
    "F": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, weight_prior_mean=0.9,
              weight_prior_std=0.3, theta_loss="filled", noise="rademacher"),
    "F_ms05": dict(theta_kernel="psgld", lr=1e-3, meta_strength=0.5, temperature=0.1, weight_prior_mean=0.9,
                   weight_prior_std=0.3, theta_loss="filled", noise="rademacher"),
    "F_T01": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, theta_temperature=0.01,
                  weight_prior_mean=0.9, weight_prior_std=0.3, theta_loss="filled", noise="rademacher"),
    "F_T003": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.03, theta_temperature=0.01,
                   weight_prior_mean=0.9, weight_prior_std=0.3, theta_loss="filled", noise="rademacher"),
    "F_s05": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, theta_temperature=0.01,
                  weight_prior_mean=0.9, weight_prior_std=0.5, theta_loss="filled", noise="rademacher"),
    "F_s04": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, theta_temperature=0.01,
                  weight_prior_mean=0.9, weight_prior_std=0.4, theta_loss="filled", noise="rademacher"),
    # the weights' force relative to a held-out part of the meta set: rho (l_i - c)
    "F_T01_ref": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, theta_temperature=0.01,
                      weight_prior_mean=0.9, weight_prior_std=0.3, theta_loss="filled", noise="rademacher",
                      loss_reference="held_out"),
    # the default with the weights frozen at the prior mean (theta's chain alone), and with the contrastive log Z
    "F_T01_frozen": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, theta_temperature=0.01,
                         weight_prior_mean=0.9, weight_prior_std=0.3, theta_loss="filled", noise="rademacher",
                         weight_lr=0.0),
    "F_T01_logz": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, theta_temperature=0.01,
                       weight_prior_mean=0.9, weight_prior_std=0.3, theta_loss="filled", noise="rademacher",
                       log_z="contrastive"),
    "P_s03_rad": dict(theta_kernel="psgld", lr=1e-3, meta_strength=1.0, temperature=0.1, weight_prior_mean=0.9,
                      weight_prior_std=0.3, theta_loss="self_normalised", noise="rademacher"),
}


def candidate(name: str) -> bads.BADSConfig:
    """BADSConfig() for "default", else the `faithful` preset with CANDIDATES[name]'s changes."""
    return bads.BADSConfig() if name == "default" else dataclasses.replace(bads.PRESETS["faithful"], **CANDIDATES[name])


def split(name: str, noise: str, per_class: int, seed: int, validation: bool, n_pool: int | None = None):
    """(pool with its `corrupted` column, clean meta set, evaluation set, meta per class used).

    The pool, the meta set and (with `validation`) the evaluation set are disjoint draws from the training
    split, from `seed`; without `validation` the evaluation set is the test split (Fashion-MNIST's and
    MNIST-1D's official ones; for MNIST 5k a fixed 1,000 images no seed ever trains on)."""
    source, n = DATASETS[name]
    n = n_pool or n
    if source == "mnist_5k":
        every = load(source, "all")
        fixed = np.random.default_rng(12345).permutation(len(every))
        train, test = every.take(fixed[1000:]), every.take(fixed[:1000])
    else:
        train, test = load(source, "train"), load(source, "test")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    pool, rest = train.take(order[:n]), train.take(order[n:])
    classes = int(train.info.num_classes)
    used = max(1, min(per_class, n // (10 * classes)))          # at most a tenth of the pool
    rest, meta = meta_split(rest, used, seed=seed)
    if validation:
        test = rest.take(np.arange(min(len(rest), 2000)))
    kind, rate = NOISES[noise]
    pool = corrupt_labels(pool, rate, kind=kind, seed=seed) if rate > 0 else pool
    return pool, meta, test, used


def _flat(d):
    return {"x": np.asarray(d.x, np.float32).reshape(len(d.x), -1), "y": np.asarray(d.y)}


def _auroc(corrupted, weights) -> float | None:
    if corrupted is None or not corrupted.any() or corrupted.all():
        return None
    return float(roc_auc_score(~corrupted, np.asarray(weights)))


def run_bads(config, task, params, pool, meta, test, *, seed: int, epochs: int, corrupted):
    state = bads.fit(task, params, pool, meta, key=seed, epochs=epochs, batch_size=BATCH,
                     meta_batch_size=min(META_BATCH, len(meta["x"])), config=config)
    probs = bads.predict(task, state, test["x"])
    snap = float((probs.argmax(1) == test["y"]).mean())
    _, last = snapshot_accuracy(task, [state.params], test["x"], test["y"])
    weights = bads.posterior_mean_weights(state)
    return {"accuracy": snap, "accuracy_last": last, "auroc": _auroc(corrupted, weights),
            "mean_weight": float(weights.mean())}


def run_baseline_method(name, task, params, pool, meta, test, *, seed: int, epochs: int, corrupted):
    snapshots = []
    options = {"meta_batch_size": min(META_BATCH, len(meta["x"]))} if name in ("l2rw", "mwn") else {}
    result = run_baseline(name, task, params, pool, meta, key=seed, epochs=epochs, batch_size=BATCH,
                          optimizer=adam(1e-3), on_epoch=lambda e, p: snapshots.append(p), **options)
    snap, last = snapshot_accuracy(task, snapshots[-SNAPSHOTS:], test["x"], test["y"])
    return {"accuracy": snap, "accuracy_last": last,
            "auroc": _auroc(corrupted, result.weights) if name in ("l2rw", "mwn") else None,
            "steps": int(result.info["steps"])}


def run_cell(name: str, noise: str, per_class: int, seed: int, methods, configs: dict, *, epochs: int,
             validation: bool, n_pool: int | None = None) -> dict:
    pool, meta, test, used = split(name, noise, per_class, seed, validation, n_pool)
    corrupted = np.asarray(pool.columns["corrupted"], bool) if "corrupted" in pool.columns else None
    p, m, t = _flat(pool), _flat(meta), _flat(test)
    task, params = mlp_task(seed, p["x"].shape[1], HIDDEN, int(pool.info.num_classes))
    record = {"dataset": name, "noise": noise, "meta_per_class": per_class, "meta_used": used, "seed": seed,
              "n_pool": len(p["x"]), "n_meta": len(m["x"]), "epochs": epochs,
              "steps": epochs * -(-len(p["x"]) // BATCH), "evaluated_on": "validation" if validation else "test",
              "methods": {}}
    for method in methods:
        start = time.perf_counter()
        if method.startswith("bads"):
            label = method.partition(":")[2] or "default"
            out = run_bads(configs[label], task, params, p, m, t, seed=seed, epochs=epochs, corrupted=corrupted)
        else:
            out = run_baseline_method(method, task, params, p, m, t, seed=seed, epochs=epochs, corrupted=corrupted)
        out["seconds"] = round(time.perf_counter() - start, 2)
        record["methods"][method] = out
    return record


def _cell_path(cells: Path, name, noise, per_class, seed, *, validation=False, n_pool=None, epochs=20) -> Path:
    """The cell's file; a run on the validation split, a smaller pool or another length gets its own."""
    tag = ("_val" if validation else "") + (f"_n{n_pool}" if n_pool else "") + (f"_e{epochs}" if epochs != 20 else "")
    return cells / f"{name}_{noise}_m{per_class}_s{seed}{tag}.json"


def best_baseline(record) -> tuple[str, float]:
    scores = {m: v["accuracy"] for m, v in record["methods"].items() if m in BASELINES}
    name = max(scores, key=scores.get)
    return name, scores[name]


def summarise(records: list[dict], bads_method: str = "bads") -> dict:
    """Per cell (data set, noise, meta) over seeds: mean accuracies, BADS - best baseline, targets."""
    groups = {}
    for r in records:
        if bads_method not in r["methods"]:
            continue
        groups.setdefault((r["dataset"], r["noise"], r["meta_per_class"]), []).append(r)
    cells = []
    for (name, noise, per_class), rs in sorted(groups.items()):
        mean = lambda m, k="accuracy": float(np.mean([r["methods"][m][k] for r in rs]))  # noqa: E731
        methods = [m for m in rs[0]["methods"] if all(m in r["methods"] for r in rs)]
        acc = {m: mean(m) for m in methods}
        last = {m: mean(m, "accuracy_last") for m in methods}
        aur = [r["methods"][bads_method]["auroc"] for r in rs if r["methods"][bads_method]["auroc"] is not None]
        base = {m: acc[m] for m in methods if m in BASELINES}
        best = max(base, key=base.get) if base else None
        cells.append({"dataset": name, "noise": noise, "meta_per_class": per_class, "seeds": len(rs),
                      "accuracy": acc, "accuracy_last": last, "auroc": float(np.mean(aur)) if aur else None,
                      "best_baseline": best, "margin": acc[bads_method] - base[best] if best else None,
                      "vs_floor": acc[bads_method] - max(acc.get("uniform", -1), acc.get("meta_only", -1)),
                      "vs_l2rw": acc[bads_method] - acc["l2rw"] if "l2rw" in acc else None,
                      "seconds": {m: float(np.mean([r["methods"][m]["seconds"] for r in rs])) for m in methods}})
    return {"cells": cells}


def targets(summary: dict, bads_method: str = "bads") -> list[str]:
    cells = summary["cells"]
    if not cells:
        return ["no finished cell yet"]
    floor = [c for c in cells if c["vs_floor"] >= -0.01]
    l2rw = [c for c in cells if c["vs_l2rw"] is not None and c["vs_l2rw"] >= -0.01]
    sym = [c for c in cells if c["noise"].startswith("sym") and c["auroc"] is not None]
    pair = [c for c in cells if c["noise"].startswith("pair") and c["auroc"] is not None]
    lines = [
        f"- every cell, BADS >= max(uniform, meta_only) - 1 point: {len(floor)} of {len(cells)} cells "
        f"({'met' if len(floor) == len(cells) else 'missed'}; worst {100 * min(c['vs_floor'] for c in cells):+.1f})",
        f"- BADS >= L2RW - 1 point in at least 90% of the cells: {len(l2rw)} of {len(cells)} "
        f"({100 * len(l2rw) / len(cells):.0f}%: {'met' if len(l2rw) >= 0.9 * len(cells) else 'missed'})",
    ]
    if sym:
        ok = [c for c in sym if c["auroc"] >= 0.90]
        lines.append(f"- weight AUROC >= 0.90 with symmetric noise: {len(ok)} of {len(sym)} cells "
                     f"(lowest {min(c['auroc'] for c in sym):.3f})")
    if pair:
        ok = [c for c in pair if c["auroc"] >= 0.85]
        lines.append(f"- weight AUROC >= 0.85 with pair noise: {len(ok)} of {len(pair)} cells "
                     f"(lowest {min(c['auroc'] for c in pair):.3f})")
    return lines


def by_dataset(summary: dict, bads_method: str = "bads") -> list[str]:
    """The targets counted per data set (a Markdown table and a blank line), when there are several."""
    names = sorted({c["dataset"] for c in summary["cells"]})
    if len(names) < 2:
        return []
    rows = []
    for name in names:
        cells = [c for c in summary["cells"] if c["dataset"] == name]
        noisy = [c["auroc"] for c in cells if c["auroc"] is not None]
        rows.append([name, len(cells), sum(c["vs_floor"] >= -0.01 for c in cells),
                     sum(c["vs_l2rw"] is not None and c["vs_l2rw"] >= -0.01 for c in cells),
                     f"{100 * np.mean([c['margin'] for c in cells]):+.1f}",
                     f"{np.mean(noisy):.3f}" if noisy else "-"])
    header = ["data set", "cells", ">= floor - 1", ">= L2RW - 1", "mean BADS - best", "mean AUROC (noisy cells)"]
    return [markdown_table(header, rows), ""]


def table(records: list[dict], command: str, bads_method: str = "bads") -> str:
    summary = summarise(records, bads_method)
    methods = sorted({m for r in records for m in r["methods"]}, key=lambda m: (not m.startswith("bads"), m))
    header = ["data set", "noise", "meta / class", "seeds", *methods, "best baseline", "BADS - best",
              "BADS AUROC"]
    rows = []
    for c in summary["cells"]:
        rows.append([c["dataset"], c["noise"], c["meta_per_class"], c["seeds"],
                     *(f"{100 * c['accuracy'][m]:.1f} / {100 * c['accuracy_last'][m]:.1f}" if m in c["accuracy"]
                       else "-" for m in methods),
                     c["best_baseline"], f"{100 * c['margin']:+.1f}",
                     "-" if c["auroc"] is None else f"{c['auroc']:.3f}"])
    where = {r["evaluated_on"] for r in records}
    seconds = {m: np.mean([r["methods"][m]["seconds"] for r in records if m in r["methods"]]) for m in methods}
    lines = [
        "# BADS robustness study", "", f"Command: `{command}`", "",
        f"Accuracy (%) on the {' and '.join(sorted(where))} split: mean over seeds of the mean softmax over the "
        "last 4 epoch snapshots / of the last parameters alone; every method trains the same MLP from the same "
        f"initial parameters for the same steps. BADS is `{bads_method}`.", "",
        markdown_table(header, rows), "",
        "Targets (snapshot column, mean over seeds):", "", *targets(summary, bads_method), "",
        *by_dataset(summary, bads_method),
        "Seconds a run (mean; 2 shared CPU cores): " + ", ".join(f"{m} {s:.1f}" for m, s in seconds.items()), "",
    ]
    return "\n".join(lines)


def search_table(records: list[dict]) -> str:
    """One row per BADS setting over the cells it ran: mean accuracy, mean margin over the best baseline,
    cells within 1 point of max(uniform, meta_only) and of L2RW, the lowest AUROC under noise."""
    methods = sorted({m for r in records for m in r["methods"] if m.startswith("bads")})
    rows = []
    for m in methods:
        cells = summarise(records, m)["cells"]
        if not cells:
            continue
        aur = [c["auroc"] for c in cells if c["auroc"] is not None]
        rows.append([m, len(cells), f"{100 * np.mean([c['accuracy'][m] for c in cells]):.1f}",
                     f"{100 * np.mean([c['margin'] for c in cells]):+.1f}",
                     sum(c["vs_floor"] >= -0.01 for c in cells),
                     sum(c["vs_l2rw"] is not None and c["vs_l2rw"] >= -0.01 for c in cells),
                     f"{min(aur):.3f}" if aur else "-",
                     ", ".join(f"{k}={v!r}" for k, v in CANDIDATES.get(m.partition(":")[2], {}).items()) or "-"])
    header = ["setting", "cells", "mean acc", "mean vs best baseline", ">= floor - 1", ">= L2RW - 1", "min AUROC",
              "changes to `faithful`"]
    return markdown_table(header, rows)


def heatmap(records: list[dict], path: Path, bads_method: str = "bads") -> None:
    cells = summarise(records, bads_method)["cells"]
    if not cells:
        return
    rows = sorted({(c["dataset"], c["meta_per_class"]) for c in cells})
    cols = [n for n in NOISES if any(c["noise"] == n for c in cells)]
    grid = np.full((len(rows), len(cols)), np.nan)
    for c in cells:
        grid[rows.index((c["dataset"], c["meta_per_class"])), cols.index(c["noise"])] = 100 * c["margin"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * len(cols), 0.9 + 0.45 * len(rows)))
    bound = max(5.0, float(np.nanmax(np.abs(grid))))
    im = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:+.1f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), cols, fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{d} / {m}" for d, m in rows], fontsize=8)
    ax.set_title(f"{bads_method} minus the best baseline (accuracy points)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04)
    save_figure(fig, path)


def load_cells(cells: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cells.glob("*.json"))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grid", choices=tuple(GRIDS), default="full")
    parser.add_argument("--datasets", nargs="+", choices=tuple(DATASETS))
    parser.add_argument("--noises", nargs="+", choices=tuple(NOISES))
    parser.add_argument("--meta", nargs="+", type=int, help="meta examples per class")
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-pool", type=int, help="pool size instead of the data set's (a quick run)")
    parser.add_argument("--methods", nargs="+", default=list(BASELINES), choices=BASELINES,
                        help="the baselines to run beside BADS")
    parser.add_argument("--configs", nargs="+", default=["default"], choices=tuple(CANDIDATES),
                        help="BADS settings to run (default: BADSConfig() alone, reported as `bads`)")
    parser.add_argument("--validation", action="store_true", help="score on a validation split (the search)")
    parser.add_argument("--out", type=Path, default=OUT, help="path stem of the .md, .json and .png files")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the report from the cells saved in <out>_cells, computing none")
    args = parser.parse_args(argv)
    grid = {k: v for k, v in GRIDS[args.grid].items()}
    for key, value in (("datasets", args.datasets), ("noises", args.noises), ("meta", args.meta),
                       ("seeds", args.seeds)):
        if value:
            grid[key] = tuple(value)
    if args.validation and any(d in HELD_OUT for d in grid["datasets"]):
        parser.error(f"{HELD_OUT} is kept out of every search: drop it from --datasets with --validation")
    configs = {name: candidate(name) for name in args.configs}
    bads_methods = ["bads"] if args.configs == ["default"] else [f"bads:{c}" for c in args.configs]
    if args.configs == ["default"]:
        configs = {"default": configs["default"]}
    methods = [*bads_methods, *args.methods]
    cells = args.out.parent / f"{args.out.name}_cells"
    cells.mkdir(parents=True, exist_ok=True)
    command = command_line("experiments.bads_robustness", argv)
    todo = [(d, n, m, s) for d in grid["datasets"] for n in grid["noises"] for m in grid["meta"] for s in grid["seeds"]]
    for i, (d, n, m, s) in enumerate(todo, 1):
        path = _cell_path(cells, d, n, m, s, validation=args.validation, n_pool=args.n_pool, epochs=args.epochs)
        if path.exists() or args.report_only:
            continue
        start = time.perf_counter()
        record = run_cell(d, n, m, s, methods, configs, epochs=args.epochs, validation=args.validation,
                          n_pool=args.n_pool)
        outputs.write_json(path, record)
        jax.clear_caches()  # each cell compiles its own steps: drop them, or a long grid runs out of memory
        print(f"[{i}/{len(todo)}] {d} {n} meta {m} seed {s}: "
              + ", ".join(f"{k} {100 * v['accuracy']:.1f}" for k, v in record["methods"].items())
              + f" ({time.perf_counter() - start:.0f} s)", flush=True)
    where = "validation" if args.validation else "test"
    records = [r for r in load_cells(cells) if r["epochs"] == args.epochs and r["evaluated_on"] == where
               and (args.n_pool is None or r["n_pool"] == args.n_pool)]
    if args.report_only:  # the saved cells decide which BADS settings the report shows
        bads_methods = sorted({m for r in records for m in r["methods"] if m.startswith("bads")})
        configs = {m.partition(":")[2] or "default": candidate(m.partition(":")[2] or "default") for m in bads_methods
                   if (m.partition(":")[2] or "default") in CANDIDATES}
    reports = [table(records, command, b) for b in bads_methods]
    if len(bads_methods) > 1:
        reports.insert(0, "# The settings compared\n\n" + f"Command: `{command}`\n\n" + search_table(records)
                       + "\n\nEach setting's cells follow (cells where a setting did not run are left out of its row).")
    write_report(args.out, "\n\n".join(reports), {"command": command, "grid": grid, "records": records,
                                                   "configs": {k: dataclasses.asdict(v) for k, v in configs.items()}})
    heatmap(records, args.out.parent / f"{args.out.name}.png", bads_methods[0])
    print(reports[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
