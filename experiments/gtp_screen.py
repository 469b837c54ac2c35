"""Screening of GTP's settings for `gtp_coreset`, on a pool draw that is not reported (seed 10 by default)
and on validation images held out from the training split (never the test split).

The pool is drawn as in `experiments.gtp_coreset` (seed s); the validation set is `n_val` (5,000) further
training images outside the pool. Each variant names its features (checkpoints, row normalisation) and its
selection (solver, class-balanced pursuit, weights as loss weights / sampling probabilities / 1).

    python -m experiments.gtp_screen --variants omp omp-balanced --fractions 0.01 0.05 0.1

writes `<out>.md` and `<out>.json` (records appended; one per seed, pool, variant, fraction).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from experiments import gtp_coreset as gc
from experiments.common import (
    RESULTS,
    adam,
    fit_selector,
    markdown_table,
    mlp,
    timed,
    warmup_checkpoints,
)
from jdps.data.catalogue import load
from jdps.outputs import write_text
from jdps.train import evaluate

OUT = RESULTS / "gtp_screen"
# variant: (features, select options, how the weights train)
#   features: "last3" the 3 epoch checkpoints (the experiment's), "init4" the initial parameters too,
#             "half6" 6 checkpoints, every half epoch; a leading "norm" normalises each checkpoint's rows;
#             "-d<w>" a projection width w per checkpoint (default the experiment's 512)
#   weights:  "loss" (the weights in the loss), "unit", "sample" (rows drawn with probability w / sum w)
VARIANTS = {
    "random": (None, None, "unit"),
    "omp": ("last3", {"solver": "omp"}, "loss"),
    "omp-unit": ("last3", {"solver": "omp"}, "unit"),
    "omp-sample": ("last3", {"solver": "omp"}, "sample"),
    "omp-balanced": ("last3", {"solver": "omp", "balanced": True}, "loss"),
    "omp-balanced-unit": ("last3", {"solver": "omp", "balanced": True}, "unit"),
    "omp-balanced-sample": ("last3", {"solver": "omp", "balanced": True}, "sample"),
    "omp-norm": ("norm", {"solver": "omp"}, "loss"),
    "omp-norm-balanced": ("norm", {"solver": "omp", "balanced": True}, "loss"),
    "omp-init4": ("init4", {"solver": "omp"}, "loss"),
    "omp-init4-balanced": ("init4", {"solver": "omp", "balanced": True}, "loss"),
    "omp-half6-balanced": ("half6", {"solver": "omp", "balanced": True}, "loss"),
    "cosamp": ("last3", {"solver": "cosamp"}, "loss"),
    "cosamp-balanced": ("last3", {"solver": "cosamp", "balanced": True}, "loss"),
    "omp-norm-fill": ("norm", {"solver": "omp", "fill": "pursuit"}, "loss"),
    "omp-norm-unit": ("norm", {"solver": "omp"}, "unit"),
    "cosamp-norm": ("norm", {"solver": "cosamp"}, "loss"),
    "omp-norm-init4": ("norm-init4", {"solver": "omp"}, "loss"),
    "omp-norm-d128": ("norm-d128", {"solver": "omp"}, "loss"),
    "omp-norm-d2048": ("norm-d2048", {"solver": "omp"}, "loss"),
    "omp-d2048": ("last3-d2048", {"solver": "omp"}, "loss"),
    "gradmatch-balanced": ("last3", {"solver": "gradmatch", "balanced": True}, "loss"),
    "topk-balanced": ("last3", {"solver": "topk", "balanced": True}, "unit"),
}


def checkpoints_for(kind: str, task, params, data, seed: int) -> list:
    """The checkpoints of a feature kind (see VARIANTS)."""
    opt = adam(gc.LR)
    if kind == "half6":
        n = len(data["x"])
        half = np.random.default_rng(seed).permutation(n)
        out, p = [], params
        from jdps.train import train
        for e in range(3):
            for part in (half[: n // 2], half[n // 2:]):
                p = train(task, p, data, key=seed * 100 + len(out), epochs=1, batch_size=gc.WARMUP_BATCH_SIZE,
                          optimizer=opt, indices=np.sort(part)).params
                out.append(p)
        return out
    cps = warmup_checkpoints(task, params, data, epochs=3, seed=seed, batch_size=gc.WARMUP_BATCH_SIZE, optimizer=opt)
    return [params] + cps if kind == "init4" else cps


def evaluate_rows(task, params, data) -> np.ndarray:
    """The model's predicted class of every row [N]."""
    import jax
    logits = jax.jit(task.apply)(params, data["x"])
    return np.asarray(logits).argmax(-1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[10])
    parser.add_argument("--pools", nargs="+", default=["clean"], choices=["clean", "dup"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.05, 0.1])
    parser.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS),
                        help="variants to run (none: rewrite the report from the .json)")
    parser.add_argument("--n-val", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    setup = gc.FULL
    train_split = load("fashion_mnist", "train") if args.variants else None
    json_path = args.out.with_suffix(".json")
    records = json.loads(json_path.read_text())["records"] if json_path.exists() else []
    for seed in args.seeds if args.variants else []:
        for pool in args.pools:
            x, y, group = gc.make_pool(setup, seed, pool == "dup", train_split)
            rng = np.random.default_rng(seed)
            in_pool = np.sort(rng.permutation(len(train_split.x))[: setup.n_pool])   # make_pool's draw
            outside = np.setdiff1d(np.arange(len(train_split.x)), in_pool)
            val_rows = np.random.default_rng(seed + 1).choice(outside, args.n_val, replace=False)
            val = {"x": np.asarray(train_split.x)[val_rows], "y": np.asarray(train_split.y)[val_rows]}
            data = {"x": x, "y": y}
            task, params = mlp(setup.hidden, seed)
            _, init = mlp(setup.hidden, seed + 1000)
            states = {}
            cps = checkpoints_for("last3", task, params, data, seed)
            raw = fit_selector("gtp", task, cps, data, key=seed, fit_options={"d": setup.d, "grad_form": "factored"})
            norms = np.linalg.norm(raw.state.features, axis=1)
            percentile = np.argsort(np.argsort(norms)) / (len(norms) - 1)          # 0: smallest row, 1: largest
            wrong = np.asarray(evaluate_rows(task, cps[-1], data) != y)             # the proxy's mistakes
            for name in args.variants:
                feats, options, how = VARIANTS[name]
                if feats is not None and feats not in states:
                    parts = feats.split("-")          # [norm][-init4 | -half6][-d<width>]
                    kind = next((p for p in parts if p in ("init4", "half6")), "last3")
                    width = next((int(p[1:]) for p in parts if p.startswith("d")), setup.d)
                    cps = checkpoints_for(kind, task, params, data, seed)
                    states[feats] = fit_selector("gtp", task, cps, data, key=seed,
                                                 fit_options={"d": width, "grad_form": "factored",
                                                              "normalize": parts[0] == "norm"})
                for f in args.fractions:
                    k = int(np.ceil(f * len(x)))
                    if name == "random":
                        idx, w, info = np.sort(rng.choice(len(x), k, replace=False)), np.ones(k), {}
                    else:
                        opts = dict(options)
                        if opts.pop("balanced", False):
                            opts["groups"] = y
                        sel = states[feats].select(budget=k, key=seed, **opts)
                        idx, w, info = sel.indices, sel.weights, sel.info
                    params_t, secs = timed(gc.train_weighted, task, init, data, idx, w, how, seed=seed, steps=setup.steps,
                                           batch_size=setup.batch_size)
                    acc = evaluate(task, params_t, val)["accuracy"]
                    classes = np.bincount(y[idx], minlength=10)
                    rec = {"seed": seed, "pool": pool, "variant": name, "fraction": f, "k": k, "count": len(idx),
                           "accuracy": float(acc), "classes_covered": int((classes > 0).sum()),
                           "max_class_share": float(classes.max() / max(1, len(idx))),
                           "redundant": gc.duplicates(idx, group)[1], "stop_reason": info.get("stop_reason", "-"),
                           "norm_percentile": float(percentile[idx].mean()), "proxy_wrong": float(wrong[idx].mean())}
                    print(json.dumps(rec), f"{secs:.0f}s", flush=True)
                    records = [r for r in records if (r["seed"], r["pool"], r["variant"], r["fraction"])
                               != (seed, pool, name, f)] + [rec]
                    write_text(json_path, json.dumps({"records": records}, indent=1))
    rows = [[r["seed"], r["pool"], r["variant"], f"{100 * r['fraction']:g}%", f"{r['count']}/{r['k']}",
             f"{100 * r['accuracy']:.1f}", r["classes_covered"], f"{100 * r['max_class_share']:.0f}", r["redundant"],
             r["stop_reason"], f"{r['norm_percentile']:.2f}" if "norm_percentile" in r else "-",
             f"{100 * r['proxy_wrong']:.0f}" if "proxy_wrong" in r else "-"] for r in sorted(records, key=lambda r: (r["seed"], r["pool"], r["fraction"], r["variant"]))]
    write_text(args.out.with_suffix(".md"), "\n".join([
        "# GTP screening on an unreported pool draw, validation images held out from the training split", "",
        "Command: `python -m experiments.gtp_screen --variants ...`; variants in `experiments.gtp_screen.VARIANTS`.", "",
        markdown_table(["seed", "pool", "variant", "fraction", "atoms / k", "validation accuracy %", "classes",
                        "largest class %", "redundant copies", "stop", "mean gradient-norm percentile",
                        "% misclassified by the warm-up model"], rows), "",
        ("Gradient-norm percentile: the mean rank (0 smallest, 1 largest) among the pool of the selected rows' "
         "norms in the unnormalised 3-checkpoint features; misclassified: the share of the selection the last "
         "warm-up checkpoint gets wrong (the pool's rate is the random rows' value)."), ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
