"""GTP experiment 2: in-domain coresets of Fashion-MNIST, with and without planted near-duplicates.

Data, per seed s: a pool of `n_pool` (5,000) images drawn at random from the official training split;
the "dup" variant adds, for `n_dup_groups` (250) of the pool's images, `copies - 1` (4) extra copies with
N(0, `dup_noise`^2) pixel noise (clipped to [0, 1]), so 250 groups of 5 near-identical images sit in a
pool of 6,000. Test: the official 10,000-image test split.

Features: the MLP 784-128-10 (`mlp_task`, seed s) warms up on the whole pool for `warmup_epochs` epochs
(Adam(1e-3), batch 128; `experiments.common.warmup_checkpoints`); the parameters after each epoch are the
T checkpoints. The selector `gtp` (`jdps.selectors`) gives each pool example its gradient trajectory
(`jdps.gtp.trajectory.trajectory_features`, grad_form 'factored': per Dense layer P_in^T g P_out, width
`d` per checkpoint, one projection per checkpoint) and the target is the mean row (in-domain selection).
Selectors, at 1%, 5% and 10% of the pool:

    gtp-omp      non-negative OMP (gtp, solver 'omp'), weights = its NNLS weights
    gtp-omp-unit the same selection trained with weight 1 (separates what GTP picks from how it weights)
    gtp-cosamp   non-negative CoSaMP (10 rounds at most); only for k <= `cosamp_max_k` (100): its NNLS on
                 a union of up to 3k atoms is too slow for larger k on a 2-core machine
    gradmatch    GradMatch's OMP (ridge 0.5) on the same features
    topk         the k rows of largest correlation with the mean row (LESS / TracIn style), weight 1
    random       k uniform random examples (the selector `random`, key s), weight 1
    full         the whole pool, weight 1
    gtp-omp-sample   gtp-omp's selection, its weights used as sampling probabilities (rows drawn with
                 probability w / sum w, then weight 1) instead of loss weights
    *-balanced   the pursuit run per class (`groups` = the labels): budget in proportion to the class's
                 size, target the class's share of the mean row
    *-norm       the features with every checkpoint's rows normalised to unit length (LESS's
                 normalisation; the target is the mean normalised row)
    *-norm-init  the same with the initial parameters as a fourth checkpoint
    *-fill       fill='pursuit': further passes over the rows not chosen until k atoms (see jdps.gtp.select)

Training (`experiments.common.train_subset`): a fresh MLP (seed s + 1000) trains on the subset with its
weights, the loss self-normalised by the weights of each batch, Adam(1e-3), batch 64, for about `steps`
steps whatever the subset size (epochs = round(steps / max(1, k // 64))). Reported: test accuracy (%) as
mean ± std over the seeds; for the dup pool also how many selected examples are planted copies, and how
many are redundant (a second or later pick from one group of near-duplicates).

    python -m experiments.gtp_coreset                       # both pools, 3 seeds
    python -m experiments.gtp_coreset --seeds 0 --pools dup --fractions 0.01

writes `<out>.md`, `<out>.json` and `<out>.png` (accuracy against the fraction), each with its
provenance; `--out` defaults to experiments/results/gtp_coreset. With `--checkpoint-dir DIR` every
finished cell (pool, seed, method, fraction) is kept in DIR and a re-run of the command skips it
(`experiments.common.Cells`): a killed run resumes to the records of an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from experiments.common import (
    RESULTS,
    Cells,
    adam,
    add_checkpoint_dir,
    beyond_spread,
    experiment_run,
    fit_selector,
    markdown_table,
    mean_std,
    mlp,
    paired,
    sample_std,
    plot_by_fraction,
    run_seeds,
    timed,
    train_subset,
    warmup_checkpoints,
    write_report,
)
from jdps.data.catalogue import load
from jdps.train import evaluate, train

# method: (selector of jdps.selectors, its select options, how the selection's weights train: "loss" (in the
# loss), "unit" (weight 1), "sample" (rows drawn with probability w / sum w)); groups "class": the pool's labels
SELECTORS = {"gtp-omp": ("gtp", {"solver": "omp"}, "loss"), "gtp-omp-unit": ("gtp", {"solver": "omp"}, "unit"),
             "gtp-omp-sample": ("gtp", {"solver": "omp"}, "sample"),
             "gtp-omp-balanced": ("gtp", {"solver": "omp", "groups": "class"}, "loss"),
             "gtp-omp-balanced-unit": ("gtp", {"solver": "omp", "groups": "class"}, "unit"),
             "gtp-cosamp": ("gtp", {"solver": "cosamp"}, "loss"),
             "gtp-cosamp-balanced": ("gtp", {"solver": "cosamp", "groups": "class"}, "loss"),
             "gradmatch": ("gtp", {"solver": "gradmatch"}, "loss"),
             "gradmatch-balanced": ("gtp", {"solver": "gradmatch", "groups": "class"}, "loss"),
             "topk": ("gtp", {"solver": "topk"}, "unit"), "random": ("random", {}, "unit"),
             "gtp-omp-norm": ("gtp-norm", {"solver": "omp"}, "loss"),
             "gtp-omp-norm-fill": ("gtp-norm", {"solver": "omp", "fill": "pursuit"}, "loss"),
             "gtp-cosamp-norm": ("gtp-norm", {"solver": "cosamp"}, "loss"),
             "gtp-omp-norm-init": ("gtp-norm-init", {"solver": "omp"}, "loss"),
             "gtp-omp-norm-init-fill": ("gtp-norm-init", {"solver": "omp", "fill": "pursuit"}, "loss")}
METHODS = tuple(SELECTORS)
LR = 1e-3                 # Adam's step, warm-up and subset training
WARMUP_BATCH_SIZE = 128
OUT = RESULTS / "gtp_coreset"


@dataclass(frozen=True)
class Setup:
    """Pool size, duplicates, model, warm-up, features and training budget."""

    n_pool: int = 5_000
    n_dup_groups: int = 250
    copies: int = 5
    dup_noise: float = 0.01
    hidden: tuple[int, ...] = (128,)
    warmup_epochs: int = 3
    d: int = 512
    cosamp_max_k: int = 100
    steps: int = 500
    batch_size: int = 64


FULL = Setup()


def make_pool(setup: Setup, seed: int, dup: bool, train=None):
    """(x [N, 28, 28, 1], y [N], group [N]): the pool, group g >= 0 marking the copies of planted image g
    (the original included), -1 elsewhere."""
    train = load("fashion_mnist", "train") if train is None else train
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.permutation(len(train.x))[: setup.n_pool])
    x, y = np.asarray(train.x)[pick], np.asarray(train.y)[pick]
    group = np.full(len(x), -1, np.int64)
    if dup:
        originals = np.sort(rng.choice(len(x), setup.n_dup_groups, replace=False))
        group[originals] = np.arange(setup.n_dup_groups)
        extra = np.repeat(originals, setup.copies - 1)
        noisy = np.clip(x[extra] + rng.normal(0, setup.dup_noise, x[extra].shape), 0, 1).astype(np.float32)
        x, y = np.concatenate([x, noisy]), np.concatenate([y, y[extra]])
        group = np.concatenate([group, group[extra]])
    return x, y, group


def train_weighted(task, init, data, indices, weights, how: str, *, seed: int, steps: int, batch_size: int):
    """`train_subset` on the selection for about `steps` steps, its weights used `how`: 'loss' (each batch's
    loss self-normalised by them), 'unit' (weight 1) or 'sample' (epochs * k rows drawn with replacement,
    probability w_i / sum w, numpy default_rng(seed), then weight 1: the weights as sampling probabilities)."""
    if how not in ("loss", "unit", "sample"):
        raise ValueError(f"how must be 'loss', 'unit' or 'sample', got {how!r}")
    if how == "sample":
        w = np.asarray(weights, np.float64)
        k = len(indices)
        epochs = max(1, round(steps / max(1, k // batch_size)))
        rows = np.random.default_rng(seed).choice(np.asarray(indices), size=epochs * k, p=w / w.sum())
        return train(task, init, data, key=seed, epochs=1, batch_size=batch_size, optimizer=adam(LR),
                     indices=np.sort(rows)).params
    return train_subset(task, init, data, indices, None if how == "unit" else weights, seed=seed, steps=steps,
                        batch_size=batch_size, optimizer=adam(LR))


def duplicates(indices, group) -> tuple[int, int]:
    """(selected examples that are planted copies, redundant picks: sum over groups of max(0, picks - 1))."""
    g = np.asarray(group)[np.asarray(indices, np.int64)]
    g = g[g >= 0]
    return len(g), int(len(g) - len(np.unique(g)))


def run(pool: str, seed: int, fractions, methods, setup: Setup, log=print, train=None, test=None,
        cells: Cells | None = None) -> list[dict]:
    """Every method at every fraction on one pool draw; one record each (plus `full`). With `cells` (the
    --checkpoint-dir) each finished record is kept, and a re-run computes only the missing ones (the
    warm-up and the features only when one is missing)."""
    cells = Cells(None, {}) if cells is None else cells
    x, y, group = make_pool(setup, seed, pool == "dup", train)
    data = {"x": x, "y": y}
    fitted = {}

    def prepared():
        """The warm-up, the fitted selectors and the subset trainer, made on first use."""
        if not fitted:
            task, params = mlp(setup.hidden, seed)
            checkpoints, warmup_s = timed(warmup_checkpoints, task, params, data, epochs=setup.warmup_epochs,
                                          seed=seed, batch_size=WARMUP_BATCH_SIZE, optimizer=adam(LR))
            for name, normalize, init in (("gtp", False, False), ("gtp-norm", True, False), ("gtp-norm-init", True, True)):
                if any(SELECTORS[m][0] == name for m in methods):
                    fitted[name] = fit_selector("gtp", task, [params] * init + checkpoints, data, key=seed,
                                                fit_options={"d": setup.d, "grad_form": "factored",
                                                             "normalize": normalize})
            fitted["random"] = fit_selector("random", None, None, data, key=seed)
            log(f"[{pool} seed {seed}] warm-up and features in "
                f"{warmup_s + sum(f.fit_s for n, f in fitted.items() if n.startswith('gtp')):.0f}s")
            _, init = mlp(setup.hidden, seed + 1000)
            held_out = load("fashion_mnist", "test") if test is None else test
            held_out = {"x": np.asarray(held_out.x), "y": np.asarray(held_out.y)}

            def accuracy(indices, weights, how="loss"):
                params = train_weighted(task, init, data, indices, weights, how, seed=seed, steps=setup.steps,
                                        batch_size=setup.batch_size)
                return evaluate(task, params, held_out)["accuracy"]
            fitted["accuracy"] = accuracy
        return fitted

    copies = group[group >= 0]
    records = [cells.run(lambda: {"pool": pool, "seed": seed, "method": "full", "fraction": 1.0, "k": len(x),
                                  "count": len(x), "accuracy": prepared()["accuracy"](np.arange(len(x)), None),
                                  "copies": len(copies), "redundant": len(copies) - len(np.unique(copies)),
                                  "seconds": 0.0},
                         pool=pool, seed=seed, method="full")]
    log(records[-1])
    for fraction in fractions:
        k = int(np.ceil(fraction * len(x)))
        for method in methods:
            if method.startswith("gtp-cosamp") and k > setup.cosamp_max_k:
                continue

            def cell(method=method, k=k, fraction=fraction):
                name, options, how = SELECTORS[method]
                options = {**options, "groups": y} if options.get("groups") == "class" else options
                sel = prepared()[name].select(budget=k, key=seed, **options)
                n_copies, redundant = duplicates(sel.indices, group)
                return {"pool": pool, "seed": seed, "method": method, "fraction": fraction, "k": k,
                        "count": len(sel), "accuracy": prepared()["accuracy"](sel.indices, sel.weights, how),
                        "classes": np.bincount(y[sel.indices], minlength=10).tolist(),
                        "copies": n_copies, "redundant": redundant, "seconds": sel.info["select_s"],
                        "stop_reason": sel.info.get("stop_reason", "-"),
                        "relative_residual": sel.info.get("relative_residual")}
            records.append(cells.run(cell, pool=pool, seed=seed, method=method, fraction=fraction))
            log(records[-1])
    return records


def table(records, setup: Setup, command: str) -> str:
    """The report: accuracy per pool, method and fraction; duplicates picked on the dup pool."""
    seeds = sorted({r["seed"] for r in records})
    lines = ["# GTP experiment 2: in-domain coresets of Fashion-MNIST", "", f"Command: `{command}`  ",
             f"Seeds: {seeds} ({len(seeds)}); setup: {asdict(setup)}.", "",
             ("Test accuracy (%) of the MLP trained on each (weighted) subset, mean ± std over seeds "
             "(pursuit times per record in the .json)."), ""]
    for pool in ("clean", "dup"):
        rs = [r for r in records if r["pool"] == pool]
        if not rs:
            continue
        fractions = sorted({r["fraction"] for r in rs if r["method"] != "full"})
        methods = [m for m in METHODS if any(r["method"] == m for r in rs)]
        n = rs[0]["k"] if rs[0]["method"] == "full" else "?"
        title = "pool without duplicates" if pool == "clean" else (
            f"pool with planted near-duplicates ({setup.n_dup_groups} images x {setup.copies} copies)")
        lines += [f"## {title}, N = {n}", ""]
        full = [r["accuracy"] for r in rs if r["method"] == "full"]
        header = ["method"] + [f"{100 * f:g}%" for f in fractions]
        rows = [["full pool"] + [mean_std(full)] * len(fractions)]
        for m in methods:
            row = [m]
            for f in fractions:
                acc = [r["accuracy"] for r in rs if r["method"] == m and r["fraction"] == f]
                row.append(mean_std(acc) if acc else "not run")
            rows.append(row)
        lines += [markdown_table(header, rows), ""]
        stops = {}
        for r in rs:
            if r["method"].startswith(("gtp-omp", "gtp-cosamp", "gradmatch")) and "unit" not in r["method"] \
                    and "sample" not in r["method"]:
                stops.setdefault((r["method"], r["fraction"]), []).append(
                    f"{r['count']}/{r['k']} {r['stop_reason']}, |r|/|b| {r['relative_residual']:.3f}")
        lines += ["Atoms supported / budget and stop reason (first seed): " + "; ".join(
            f"{m} {100 * f:g}%: {v[0]}" for (m, f), v in stops.items()) + ".", ""]
        pairs = []
        for f in fractions:
            at = [r for r in rs if r["fraction"] == f]
            for m in methods:
                d = paired(at, m, "random", lambda r: 100 * r["accuracy"]) if m != "random" else None
                if d is not None:
                    pairs.append([m, f"{100 * f:g}%", " ".join(f"{x:+.1f}" for x in d),
                                  f"{np.mean(d):+.1f} ± {sample_std(d):.1f}",
                                  "yes" if np.mean(d) >= 0 else "no", beyond_spread(d, lower=False)])
        lines += [("Paired differences of the test accuracy (points), method minus random, seed by seed; 'beyond "
                   "the spread': the same sign on every seed and |mean| above the sample standard deviation of "
                   "the differences:"), "",
                  markdown_table(["method", "fraction", "per seed", "mean ± std", "at or above random",
                                  "above random beyond the spread"], pairs), ""]
        if pool == "dup":
            lines += [("Planted copies among the selected (mean over seeds): copies / redundant (a second or "
                      "later pick from the same group of near-duplicates)."), ""]
            rows = []
            for m in methods:
                row = [m]
                for f in fractions:
                    rr = [r for r in rs if r["method"] == m and r["fraction"] == f]
                    if not rr:
                        row.append("not run")
                        continue
                    row.append(f"{np.mean([r['copies'] for r in rr]):.1f} / {np.mean([r['redundant'] for r in rr]):.1f}"
                               f" of {rr[0]['k']}")
                rows.append(row)
            lines += [markdown_table(header, rows), ""]
    return "\n".join(lines)


def figure(records, path: Path, provenance: dict | None = None) -> None:
    """Test accuracy against the selected fraction, one panel per pool."""
    pools = [p for p in ("clean", "dup") if any(r["pool"] == p for r in records)]
    names = {"clean": "Fashion-MNIST pool", "dup": "pool with planted near-duplicates"}
    plot_by_fraction([(names[p], [r for r in records if r["pool"] == p], METHODS, lambda r: 100 * r["accuracy"])
                      for p in pools], path, "test accuracy (%)", provenance)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pools", nargs="+", default=["clean", "dup"], choices=["clean", "dup"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05, 0.1])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--n-pool", type=int, default=FULL.n_pool)
    parser.add_argument("--cosamp-max-k", type=int, default=FULL.cosamp_max_k,
                        help="run CoSaMP only for budgets up to this")
    parser.add_argument("--out", type=Path, default=OUT)
    add_checkpoint_dir(parser, "pool, seed, method, fraction")
    parser.add_argument("--report-from", type=Path, default=None,
                        help="write the report (.md, .png at --out) from this earlier run's .json, running nothing")
    args = parser.parse_args(argv)
    setup = replace(FULL, n_pool=args.n_pool, cosamp_max_k=args.cosamp_max_k)
    if args.report_from is not None:
        records = json.loads(args.report_from.read_text())["records"]
        with experiment_run("experiments.gtp_coreset", argv, args.out, setup=setup, seeds=args.seeds,
                            datasets=["fashion_mnist"]) as ex:
            write_report(args.out, table(records, setup, ex.command), {"setup": asdict(setup), "records": records},
                         ex.provenance)
            figure(records, args.out.parent / f"{args.out.name}.png", ex.provenance)
        return 0
    with experiment_run("experiments.gtp_coreset", argv, args.out, setup=setup, seeds=args.seeds,
                        datasets=["fashion_mnist"], checkpoint_dir=args.checkpoint_dir) as ex:
        def save(records):
            write_report(args.out, table(records, setup, ex.command), {"setup": asdict(setup), "records": records},
                         ex.provenance)
            figure(records, args.out.parent / f"{args.out.name}.png", ex.provenance)

        records = run_seeds(args.seeds, lambda seed: [
            r for pool in args.pools for r in run(pool, seed, args.fractions, args.methods, setup, cells=ex.cells)],
            save)
    print(table(records, setup, ex.command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
