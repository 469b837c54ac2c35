"""Attribution benchmark: the LDS (with its standard error) of every attribution method of jdps against
models retrained on random halves of the training set, with each method's cost; the leave-one-out
Pearson and the noisy-label AUROC on softmax regression.

Mirrors dattri's MNIST benchmark as far as the offline data allow: MNIST is the 5,000-digit mnist_5k (so
4,500 training / 500 query examples, not 5,000 / 500), Fashion-MNIST 5,000 random examples of its training
split cut the same way; logistic (softmax) regression and an MLP 784-128-10; 100 random 50% subsets, one
model each (its own init and order), scored by the query examples' correct-class margins.

    per (dataset, model)
      full model     trained on the 4,500 (Adam, cosine decay, `epochs`; logreg with L2 `l2`, the influence
                     damping then being l2: the exact iHVP of the regularised objective)
      ground truth   train_many on the 100 subsets (vmapped, resumable), margins [100, 500]
      methods        exact (logreg), cg, lissa, kfac, ekfac (influence), tracin (5 checkpoints of the full run),
                     grad_dot, trak-1/10/50 (independently trained models), trak-sgld (one SGLD chain from
                     the full model: a tenth of trak-50's optimizer steps, the full model's included)
    logreg only      leave-one-out: `loo_removed` points, full-batch training (Nesterov), each retraining warm
                     started at theta*; noisy labels: `noise` of the labels flipped, self-influence AUROC

Costs: seconds of scoring on 2 shared CPU cores (plus the training of the extra models for TRAK), and
optimizer steps of all the training a method needs. cg and lissa score the first `cheap_queries` queries
only, their curvature on `curvature_examples` training examples.

    python -m experiments.attribution_benchmark [--datasets mnist_5k fashion_mnist] [--models logreg mlp]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import jax
import numpy as np
import optax

from experiments.common import (
    RESULTS,
    add_checkpoint_dir,
    experiment_run,
    markdown_table,
    pyplot,
    save_figure,
    write_report,
)
from jdps import influence, metrics, selectors
from jdps.checkpoint import Checkpoints
from jdps.data.catalogue import load
from jdps.influence import ihvp as ih
from jdps.influence import trak
from jdps.models.mlp import mlp_task
from jdps.train import train

OUT = RESULTS / "attribution_benchmark"
MODELS = ("logreg", "mlp")
DATASETS = ("mnist_5k", "fashion_mnist")


@dataclass(frozen=True)
class Setup:
    n_train: int = 4500
    n_query: int = 500
    subsets: int = 100
    fraction: float = 0.5
    epochs: int = 20
    batch_size: int = 128
    lr: float = 3e-3
    l2: float = 1e-2                 # logreg: L2 on the mean loss, and the influence damping
    mlp_damping: float = 1e-2
    hidden: tuple = (128,)
    tracin_checkpoints: int = 5
    trak_models: tuple = (1, 10, 50)
    trak_d: int = 1024
    trak_damping: float = 1e-3
    sgld_samples: int = 10
    sgld_lr: float = 0.05
    sgld_temperature: float = 1.0
    cheap_queries: int = 100         # cg and lissa: queries scored
    curvature_examples: int = 1000   # cg and lissa: examples their curvature is taken on
    cg_maxiter: int = 30
    lissa_depth: int = 100
    lissa_batch: int = 128
    loo_removed: int = 50
    loo_steps: int = 300
    loo_retrain_steps: int = 200
    loo_lr: float = 0.05
    noise: float = 0.1
    seed: int = 0


SMOKE = Setup(n_train=60, n_query=8, subsets=6, epochs=2, batch_size=16, hidden=(8,), tracin_checkpoints=2,
              trak_models=(1, 2), trak_d=16, sgld_samples=2, cheap_queries=4, curvature_examples=30, cg_maxiter=3,
              lissa_depth=3, lissa_batch=8, loo_removed=40, loo_steps=5, loo_retrain_steps=3)


# --- data, models, training ------------------------------------------------------------------------------

def split(dataset: str, setup: Setup):
    """(train, query) dicts of x float [n, 784] and y int32: a seeded random split of the dataset's examples."""
    data = load(dataset, "all" if dataset == "mnist_5k" else "train")
    order = np.random.default_rng(setup.seed).permutation(len(data))[: setup.n_train + setup.n_query]
    x = np.asarray(data.x, np.float32).reshape(len(data), -1)[order]
    y = np.asarray(data.y, np.int32)[order]
    n = setup.n_train
    return {"x": x[:n], "y": y[:n]}, {"x": x[n:], "y": y[n:]}


def build(model: str, setup: Setup, seed: int):
    return mlp_task(seed, 784, () if model == "logreg" else tuple(setup.hidden), 10)


def steps_per_epoch(n: int, setup: Setup) -> int:
    return -(-n // min(setup.batch_size, n))


def optimizer(model: str, setup: Setup, n: int):
    """Adam with cosine decay to 0 over the run (so each run ends near its optimum); logreg adds L2 l2."""
    schedule = optax.cosine_decay_schedule(setup.lr, setup.epochs * steps_per_epoch(n, setup))
    adam = optax.adam(schedule)
    return optax.chain(optax.add_decayed_weights(setup.l2), adam) if model == "logreg" else adam


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def full_optimizer(setup):
    """logreg's full-batch optimizer: Nesterov momentum on the mean loss plus L2 l2 (converges to the optimum)."""
    return optax.chain(optax.add_decayed_weights(setup.l2), optax.sgd(setup.loo_lr, momentum=0.9, nesterov=True))


def full_model(model, setup, train_set):
    """The model trained on the whole training set (init seed `seed`) and its TracIn checkpoints with their
    learning rates: logreg full-batch to its optimum (`loo_steps` Nesterov steps), the MLP by the Adam recipe."""
    task, params = build(model, setup, setup.seed)
    n = len(train_set["x"])
    if model == "logreg":
        epochs, batch, opt = setup.loo_steps, n, full_optimizer(setup)
        lr_at = lambda e: setup.loo_lr
    else:
        epochs, batch, opt = setup.epochs, setup.batch_size, optimizer(model, setup, n)
        schedule = optax.cosine_decay_schedule(setup.lr, setup.epochs * steps_per_epoch(n, setup))
        lr_at = lambda e: float(schedule((e - 1) * steps_per_epoch(n, setup)))
    every = max(1, epochs // setup.tracin_checkpoints)
    kept, rates = [], []

    def keep(e, p):
        if e % every == 0:
            kept.append(p)
            rates.append(lr_at(e))
    result = train(task, params, train_set, key=setup.seed, epochs=epochs, batch_size=batch, optimizer=opt,
                   on_epoch=keep)
    return task, result.params, kept, rates, epochs * steps_per_epoch(n, replace(setup, batch_size=batch))


def inits(model, setup, m: int, offset: int) -> list:
    return [build(model, setup, setup.seed + offset + i)[1] for i in range(m)]


def trained_models(task, model, setup, train_set, subsets, offset, checkpoint_dir, name):
    """train_many on `subsets` with one init per model (seeds seed + offset + m), resumable in checkpoint_dir/name."""
    ckpt = None
    if checkpoint_dir is not None:
        ckpt = Checkpoints(Path(checkpoint_dir) / name, max_to_keep=1,
                           fingerprint={"setup": asdict(setup), "name": name})
    try:
        return metrics.train_many(task, inits(model, setup, len(subsets), offset), train_set, subsets,
                                  key=setup.seed + offset, epochs=setup.epochs, batch_size=setup.batch_size,
                                  optimizer=optimizer(model, setup, subsets.shape[1]), models_per_batch=25,
                                  checkpoints=ckpt)
    finally:
        if ckpt is not None:
            ckpt.close()


# --- the methods -----------------------------------------------------------------------------------------

def influence_scores(name, task, params, train_set, query, damping, setup):
    """scores [Q, N] of an influence method through the selector contract (exact, kfac, ekfac, identity), or
    the library (cg, lissa: capped, on a curvature subset, the first cheap_queries queries)."""
    if name in ("cg", "lissa"):
        rows = np.random.default_rng(setup.seed).choice(len(train_set["x"]), setup.curvature_examples, replace=False)
        curvature = {k: v[rows] for k, v in train_set.items()}
        method = (ih.cg(damping, maxiter=setup.cg_maxiter) if name == "cg" else
                  ih.lissa(damping, setup.seed, depth=setup.lissa_depth, batch_size=setup.lissa_batch))
        fitted = influence.fit(task, params, curvature, ihvp=method, batch_size=256)
        q = {k: v[: setup.cheap_queries] for k, v in query.items()}
        return influence.scores(fitted, q, train_set, batch_size=256)
    sel = selectors.make("influence", task, params, ihvp=name, damping=damping)
    state = sel.fit(train_set, query, key=setup.seed)
    return sel.scores(state, query)


def lds_record(scores, subsets, outputs, seconds, steps, **extra):
    q = scores.shape[0]
    score = metrics.lds(scores, subsets, outputs[:, :q])
    return {"lds": score.mean, "se": score.se, "defined": score.defined, "queries": q, "seconds": seconds,
            "steps": steps, **extra}


METHODS = ("exact", "cg", "lissa", "kfac", "ekfac", "tracin", "grad_dot", "trak", "trak-sgld", "loo", "noisy")


def run_cell(dataset, model, setup, cells, checkpoint_dir, methods=METHODS):
    """Every record of one (dataset, model): LDS of each method, and for logreg LOO and noisy-label AUROC
    (`methods`: those to run; 'trak' stands for trak-1/10/50)."""
    train_set, query = split(dataset, setup)
    n = setup.n_train
    spe = steps_per_epoch(n, setup)
    cell = f"{dataset}-{model}"
    with Timer() as t:
        task, theta, checkpoints, rates, full_steps = full_model(model, setup, train_set)
    full_s = t.seconds
    subsets = metrics.random_subsets(n, setup.subsets, setup.fraction, seed=setup.seed)
    with Timer() as t:
        stacked = trained_models(task, model, setup, train_set, subsets, 1000, checkpoint_dir, f"{cell}-subsets")
        outputs = metrics.margins(task, stacked, query)
    print(f"{cell}: ground truth {t.seconds:.0f} s", flush=True)
    del stacked
    damping = setup.l2 if model == "logreg" else setup.mlp_damping
    records = []

    def add(method, fn):
        if ("trak" if method.removeprefix("trak-").isdigit() else method) not in methods:
            return
        rec = cells.run(fn, dataset=dataset, model=model, method=method)
        records.append({"dataset": dataset, "model": model, "method": method, **rec})
        print(f"{cell} {method}: {rec}", flush=True)

    exact = {}

    def exact_fitted():
        if "fitted" not in exact:
            exact["fitted"] = influence.fit(task, theta, train_set, ihvp=ih.exact(damping), batch_size=512)
        return exact["fitted"]

    names = (["exact"] if model == "logreg" else []) + ["cg", "lissa", "kfac", "ekfac"]
    for name in names:
        def one(name=name):
            with Timer() as t:
                if name == "exact":
                    s = influence.scores(exact_fitted(), query, train_set, batch_size=512)
                else:
                    s = influence_scores(name, task, theta, train_set, query, damping, setup)
            return lds_record(s, subsets, outputs, t.seconds, full_steps)
        add(name, one)

    def tracin_record():
        with Timer() as t:
            sel = selectors.make("tracin", task, checkpoints, learning_rates=tuple(rates))
            s = sel.scores(sel.fit(train_set, query, key=setup.seed), query)
        return lds_record(s, subsets, outputs, t.seconds, full_steps)
    add("tracin", tracin_record)

    def grad_dot():
        with Timer() as t:
            s = influence_scores("identity", task, theta, train_set, query, 0.0, setup)
        return lds_record(s, subsets, outputs, t.seconds, full_steps)
    add("grad_dot", grad_dot)

    largest = max(setup.trak_models)
    model_steps = setup.epochs * spe               # each independently trained model of TRAK
    if all(cells.done(dataset=dataset, model=model, method=f"trak-{m}") for m in setup.trak_models):
        for m in setup.trak_models:                  # every record stored: read back, nothing trained
            add(f"trak-{m}", lambda: None)
    elif "trak" in methods:
        full = np.tile(np.arange(n, dtype=np.int32), (largest, 1))
        with Timer() as t:
            ensemble = metrics.unstack(trained_models(task, model, setup, train_set, full, 2000, checkpoint_dir,
                                                      f"{cell}-trak"))
        train_s = t.seconds
        key = jax.random.key(setup.seed)
        total, weight, score_s = 0.0, 0.0, 0.0
        for m, params in enumerate(ensemble, 1):
            with Timer() as t:
                s, w = trak.model_terms(task, params, train_set, query, key=jax.random.fold_in(key, m - 1),
                                        d=setup.trak_d, damping=setup.trak_damping)
            total, weight, score_s = total + s, weight + w, score_s + t.seconds
            if m in setup.trak_models:
                tau = (total / m) * (weight / m)[None]
                seconds = score_s + train_s * m / largest
                add(f"trak-{m}", lambda tau=tau, seconds=seconds, m=m: lds_record(
                    tau, subsets, outputs, seconds, m * model_steps, train_seconds=train_s * m / largest))

    def sgld():
        chain_epochs = max(1, (largest * model_steps // 10 - full_steps) // spe)
        samples = min(setup.sgld_samples, chain_epochs)
        thin = chain_epochs // samples
        with Timer() as t:
            sel = selectors.make("trak", task, theta, d=setup.trak_d, damping=setup.trak_damping,
                                 sgld_samples=samples, sgld_burn_in=chain_epochs - thin * samples, sgld_thin=thin,
                                 sgld_lr=setup.sgld_lr, sgld_temperature=setup.sgld_temperature,
                                 sgld_batch_size=setup.batch_size)
            state = sel.fit(train_set, {k: v[:1] for k, v in query.items()}, key=setup.seed)
            s = sel.scores(state, query)
        return lds_record(s, subsets, outputs, t.seconds + full_s, full_steps + chain_epochs * spe,
                          chain_epochs=chain_epochs, samples=samples)
    add("trak-sgld", sgld)

    if model == "logreg":
        add("loo", lambda: loo_record(task, theta, exact_fitted, setup, train_set, query))
        add("noisy", lambda: noisy_record(model, setup, train_set, query))
    return records


def loo_record(task, theta, exact_fitted, setup, train_set, query):
    """Leave-one-out Pearson of exact and cg influence at the full-batch optimum theta."""
    n = len(train_set["x"])
    removed = np.random.default_rng(setup.seed + 1).choice(n, setup.loo_removed, replace=False)
    with Timer() as t:
        without = metrics.leave_one_out(task, theta, train_set, removed, key=setup.seed,
                                        epochs=setup.loo_retrain_steps, optimizer=full_optimizer(setup),
                                        models_per_batch=25)
        effects = metrics.margins(task, theta, query, stacked=False)[None] - metrics.margins(task, without, query)
    out = {"retrain_seconds": t.seconds, "removed": len(removed)}
    for name in ("exact", "cg"):
        fitted = exact_fitted() if name == "exact" else influence.fit(task, theta, train_set, ihvp=ih.cg(setup.l2),
                                                                      batch_size=512)
        q = query if name == "exact" else {k: v[: setup.cheap_queries] for k, v in query.items()}
        s = influence.scores(fitted, q, train_set, batch_size=512)
        r = metrics.loo_correlation(s, removed, effects[:, : len(q["x"])])
        out[name] = {"pearson": r.mean, "se": r.se, "defined": r.defined, "queries": len(q["x"])}
    return out


def noisy_record(model, setup, train_set, query):
    """AUROC of self-influence (kfac, ekfac, grad_dot, trak-1) for the `noise` share of flipped labels, on the
    full-batch optimum of the noisy training set."""
    rng = np.random.default_rng(setup.seed + 2)
    n = len(train_set["x"])
    noisy = rng.random(n) < setup.noise
    y = np.where(noisy, (train_set["y"] + rng.integers(1, 10, n)) % 10, train_set["y"]).astype(np.int32)
    data = {"x": train_set["x"], "y": y}
    task, theta, *_ = full_model(model, setup, data)
    out = {"noisy": int(noisy.sum())}
    for name, options in (("kfac", {"ihvp": "kfac", "damping": setup.l2}),
                          ("ekfac", {"ihvp": "ekfac", "damping": setup.l2}),
                          ("grad_dot", {"ihvp": "identity", "damping": 0.0}),
                          ("trak-1", {"d": setup.trak_d, "damping": setup.trak_damping})):
        sel = selectors.make("trak" if name.startswith("trak") else "influence", task, theta, **options)
        with Timer() as t:
            state = sel.fit(data, {k: v[:1] for k, v in query.items()}, key=setup.seed)
            s = metrics.self_scores(sel, state, data, chunk=n if name.startswith("trak") else 512)
        out[name] = {"auroc": metrics.noisy_label_auroc(s, noisy), "seconds": t.seconds}
    return out


# --- the report ------------------------------------------------------------------------------------------

def fmt(x, digits=2):
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def report(records, setup, command) -> str:
    lines = ["# Attribution benchmark: LDS against retrained models, and its cost", "",
             f"Command: `{command}`", "",
             (f"{setup.n_train} training / {setup.n_query} query examples, {setup.subsets} random "
             f"{int(setup.fraction * 100)}% subsets (one model each, its own init), {setup.epochs} epochs of Adam "
             f"(batch {setup.batch_size}, lr {setup.lr}, cosine decay); logreg with L2 {setup.l2}. LDS: mean Spearman "
             "over the query examples ± its standard error. Seconds: scoring on 2 shared CPU cores (TRAK: plus "
             "training its extra models). Steps: optimizer steps of all the training the method needs. cg and "
             f"lissa: the first {setup.cheap_queries} queries only, curvature on {setup.curvature_examples} training "
             f"examples, cg at most {setup.cg_maxiter} iterations, lissa depth {setup.lissa_depth} "
             f"(batch {setup.lissa_batch}). TRAK's seconds include the training of its models only when this run "
             "trained them (models restored from --checkpoint-dir add none); the steps column always counts them."),
             "",
             (f"Against dattri's MNIST setting (5,000 training / 500 test examples, 100 subsets): mnist_5k holds 5,000 "
              f"digits, so {setup.n_train} / {setup.n_query}; {setup.subsets} subsets; {setup.epochs} epochs; TRAK "
              f"{setup.trak_d} projected features per layer. Fashion-MNIST runs with --datasets fashion_mnist."), ""]
    cells = sorted({(r["dataset"], r["model"]) for r in records})
    for dataset, model in cells:
        rows = [r for r in records if (r["dataset"], r["model"]) == (dataset, model) and "lds" in r]
        lines += [f"## {dataset}, {model}", "",
                  markdown_table(["method", "LDS", "± se", "queries", "seconds", "optimizer steps"],
                                 [[r["method"], fmt(r["lds"], 3), fmt(r["se"], 3), r["queries"], f"{r['seconds']:.1f}",
                                   r["steps"]] for r in rows]), ""]
        for r in records:
            if (r["dataset"], r["model"], r["method"]) == (dataset, model, "loo"):
                lines += [f"Leave-one-out ({r['removed']} removed points, full-batch retraining warm-started at "
                          f"the optimum, {r['retrain_seconds']:.0f} s): Pearson, mean over queries ± se: " +
                          ", ".join(f"{k} {fmt(r[k]['pearson'], 3)} ± {fmt(r[k]['se'], 3)}" for k in ("exact", "cg")),
                          ""]
            if (r["dataset"], r["model"], r["method"]) == (dataset, model, "noisy"):
                lines += [f"Noisy labels ({r['noisy']} of {setup.n_train} flipped): self-influence AUROC " +
                          ", ".join(f"{k} {fmt(v['auroc'], 3)}" for k, v in r.items() if isinstance(v, dict)), ""]
    return "\n".join(lines) + "\n"


def figure(records, path, provenance):
    cells = sorted({(r["dataset"], r["model"]) for r in records})
    if not cells:
        return
    fig, axes = pyplot().subplots(1, len(cells), figsize=(4.2 * len(cells), 3.6), squeeze=False)
    for ax, (dataset, model) in zip(axes[0], cells):
        for r in records:
            if (r["dataset"], r["model"]) == (dataset, model) and "lds" in r:
                ax.errorbar(r["seconds"], r["lds"], yerr=r["se"], marker="o", ms=4, capsize=2)
                ax.annotate(r["method"], (r["seconds"], r["lds"]), fontsize=6, xytext=(3, 2),
                            textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("seconds (2 CPU cores)")
        ax.set_title(f"{dataset}, {model}", fontsize=9)
    axes[0][0].set_ylabel("LDS")
    save_figure(fig, path, dpi=100, provenance=provenance)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="'trak': trak-1/10/50; loo and noisy: logreg only")
    parser.add_argument("--smoke", action="store_true", help="a tiny run (tests)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="change Setup fields")
    parser.add_argument("--out", type=Path, default=OUT)
    add_checkpoint_dir(parser, "dataset, model, method; the retrained models per epoch")
    args = parser.parse_args(argv)
    setup = SMOKE if args.smoke else Setup()
    fields = {f.name: f.type for f in dataclasses.fields(Setup)}
    for pair in args.set:
        name, _, value = pair.partition("=")
        if name not in fields:
            parser.error(f"unknown Setup field {name!r}")
        setup = replace(setup, **{name: type(getattr(setup, name))(eval(value, {}))})
    with experiment_run("experiments.attribution_benchmark", argv, args.out, setup=setup, seeds=[setup.seed],
                        datasets=args.datasets, checkpoint_dir=args.checkpoint_dir) as ex:
        records = []
        for dataset in args.datasets:
            for model in args.models:
                records += run_cell(dataset, model, setup, ex.cells, args.checkpoint_dir, args.methods)
                write_report(args.out, report(records, setup, ex.command), {"setup": asdict(setup), "records": records},
                             ex.provenance)
                figure(records, args.out.parent / f"{args.out.name}.png", ex.provenance)
    print(report(records, setup, ex.command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
