"""`jdps demo`, the main job (what `bash scripts/demo.sh` runs): BADS against its baselines on noisy labels.

Data, per seed s: MNIST 5k (real MNIST digits; 1,000 fixed images are the test set no seed trains on),
a pool of `--n-train` images of the rest with `--noise` of their labels corrupted (symmetric: a label moves
to one of the other nine classes; pair: c -> c + 1), and a clean meta set of `--meta-per-class` images a
class, disjoint from the pool. Every method trains the MLP 784-256-128-10 from the same initial parameters
(seed s) for `--epochs` epochs of batch 128: BADS with `BADSConfig()` (the library default), `uniform`
(every pool example, weight 1), `meta_only` (the meta set alone), `l2rw` and `mwn` (bi-level reweighting:
one look-ahead step a batch; MWN learns a loss -> weight network).
Accuracy is that of the mean softmax over the last 4 epoch snapshots (BADS: its theta samples), on the
test set; for the methods that weight examples, the AUROC of the weights for clean vs corrupted labels.

Writes to `--out-dir` (printed): demo.md (the table, the margin of BADS over uniform, and the command that
reproduces it), demo.json (every run's figures) and demo.png (accuracy per method; BADS's weights of clean
and corrupted examples), each with its provenance.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from jdps.cli import flags

METHODS = ("bads", "uniform", "meta_only", "l2rw", "mwn")
NOISE_KINDS = ("symmetric", "pair")
BATCH, META_BATCH, SNAPSHOTS, HIDDEN, TEST_SIZE = 128, 100, 4, (256, 128), 1000


def _flat(d) -> dict:
    return {"x": np.asarray(d.x, np.float32).reshape(len(d.x), -1), "y": np.asarray(d.y)}


def make_data(n_train: int, noise: float, kind: str, meta_per_class: int, seed: int):
    """(pool with its `corrupted` column, clean meta set, test set, the pool's row ids in MNIST 5k) for one
    seed."""
    from jdps.data import corrupt_labels, load, meta_split
    from jdps.errors import InputError

    every = load("mnist_5k", "all")
    fixed = np.random.default_rng(12345).permutation(len(every))
    train, test = every.take(fixed[TEST_SIZE:]), every.take(fixed[:TEST_SIZE])
    order = np.random.default_rng(seed).permutation(len(train))
    need = n_train + 10 * meta_per_class
    if need > len(train):
        raise InputError(f"--n-train {n_train} and --meta-per-class {meta_per_class} need {need} of the "
                         f"{len(train)} MNIST 5k training images; lower them")
    pool, rest = train.take(order[:n_train]), train.take(order[n_train:])
    _, meta = meta_split(rest, meta_per_class, seed=seed)
    if noise > 0:
        pool = corrupt_labels(pool, noise, kind=kind, seed=seed)
    return pool, meta, test, fixed[TEST_SIZE:][order[:n_train]]


def _accuracy(task, snapshots, x, y) -> float:
    import jax

    apply = jax.jit(task.apply)
    probs = np.mean([np.asarray(jax.nn.softmax(apply(p, x))) for p in snapshots], 0)
    return float((probs.argmax(1) == y).mean())


def _auroc(corrupted, weights) -> float | None:
    if corrupted is None or not corrupted.any() or corrupted.all():
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(~corrupted, np.asarray(weights)))


def run_method(method: str, task, params, pool, meta, test, *, seed: int, epochs: int, corrupted, progress,
               optimizer):
    """One method's figures: test accuracy, weight AUROC (methods that weight), mean weight, seconds."""
    from jdps import bads
    from jdps.baselines import run_baseline
    from jdps.progress import bar

    start = time.perf_counter()
    label = f"{method:<9} seed {seed}"
    if method == "bads":
        state = bads.fit(task, params, pool, meta, key=seed, epochs=epochs, batch_size=BATCH,
                         meta_batch_size=min(META_BATCH, len(meta["x"])), progress=label if progress else None)
        probs = np.asarray(bads.predict(task, state, test["x"]))
        accuracy, weights = float((probs.argmax(1) == test["y"]).mean()), bads.posterior_mean_weights(state)
    else:
        snapshots = []
        passes = epochs                              # meta_only: as many steps, so more passes over the meta set
        if method == "meta_only":
            passes = -(-epochs * -(-len(pool["x"]) // BATCH) // -(-len(meta["x"]) // BATCH))
        shown = bar(label if progress else None, total=passes, desc=label, unit="epoch")

        def on_epoch(epoch, p):
            snapshots.append(p)
            shown.update(1)
        options = {"meta_batch_size": min(META_BATCH, len(meta["x"]))} if method in ("l2rw", "mwn") else {}
        result = run_baseline(method, task, params, pool, meta, key=seed, epochs=epochs, batch_size=BATCH,
                              optimizer=optimizer, on_epoch=on_epoch, **options)
        shown.close()
        accuracy, weights = _accuracy(task, snapshots[-SNAPSHOTS:], test["x"], test["y"]), result.weights
    weighs = method in ("bads", "l2rw", "mwn")
    return {"accuracy": accuracy, "auroc": _auroc(corrupted, weights) if weighs else None,
            "mean_weight": float(np.mean(weights)) if weighs else None,
            "weights": np.asarray(weights, np.float32) if method == "bads" else None,
            "seconds": round(time.perf_counter() - start, 2)}


def command(args) -> str:
    """The command line that reproduces this run, every setting spelled out (paste it in the repo root)."""
    argv = ["bash", "scripts/demo.sh", "--seed", str(args.seed), "--repeats", str(args.repeats),
            "--noise", f"{args.noise:g}", "--noise-kind", args.noise_kind, "--n-train", str(args.n_train),
            "--meta-per-class", str(args.meta_per_class), "--epochs", str(args.epochs),
            "--methods", *args.methods, "--out-dir", str(args.out_dir)]
    return shlex.join(argv)


def summarise(runs: list[dict], methods) -> dict:
    """Per method: mean and std of accuracy (%) and AUROC over the seeds."""
    out = {}
    for m in methods:
        acc = np.array([100 * r["methods"][m]["accuracy"] for r in runs])
        au = [r["methods"][m]["auroc"] for r in runs if r["methods"][m]["auroc"] is not None]
        out[m] = {"accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
                  "auroc_mean": float(np.mean(au)) if au else None,
                  "seconds_mean": float(np.mean([r["methods"][m]["seconds"] for r in runs]))}
    return out


def margin_line(summary: dict, runs: list[dict]) -> str:
    if "bads" not in summary or "uniform" not in summary:
        return "BADS over uniform: not measured (both methods are needed)"
    diffs = [100 * (r["methods"]["bads"]["accuracy"] - r["methods"]["uniform"]["accuracy"]) for r in runs]
    won = sum(d > 0 for d in diffs)
    return (f"BADS over uniform: {np.mean(diffs):+.1f} points of test accuracy (mean over {len(diffs)} seeds; "
            f"per seed {', '.join(f'{d:+.1f}' for d in diffs)}; BADS ahead on {won} of {len(diffs)})")


def report(args, runs: list[dict], summary: dict, seconds: float, cpu: float) -> str:
    rows = ["| method | test accuracy (%) | weight AUROC | seconds a run |", "|---|---|---|---|"]
    for m, s in summary.items():
        au = f"{s['auroc_mean']:.3f}" if s["auroc_mean"] is not None else "-"
        rows.append(f"| {m} | {s['accuracy_mean']:.1f} ± {s['accuracy_std']:.1f} | {au} | {s['seconds_mean']:.1f} |")
    return "\n".join([
        "# jdps demo: BADS against its baselines on noisy labels", "",
        f"Command: `{command(args)}`", "",
        f"MNIST 5k: a pool of {args.n_train} training images, {100 * args.noise:g}% {args.noise_kind} label noise, "
        f"a clean meta set of {args.meta_per_class} images a class, the fixed {TEST_SIZE}-image test set; the MLP "
        f"784-256-128-10, {args.epochs} epochs of batch {BATCH} for every method; seeds "
        f"{', '.join(str(r['seed']) for r in runs)} (mean ± std).", "",
        *rows, "",
        margin_line(summary, runs), "",
        f"Compute: {seconds:.0f} s wall, {cpu:.0f} s of CPU time, in all on this machine (the wall time grows "
        "when other work shares the cores; the CPU time much less).", ""])


def figure(args, runs: list[dict], summary: dict, path: Path, provenance: dict) -> bool:
    """demo.png: accuracy per method (mean ± std) and BADS's weights of clean vs corrupted examples."""
    try:
        import matplotlib
    except ImportError:
        print("jdps demo: note: matplotlib is not installed, so no demo.png (pip install matplotlib)", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jdps.outputs import atomic

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    names = list(summary)
    axes[0].bar(names, [summary[m]["accuracy_mean"] for m in names],
                yerr=[summary[m]["accuracy_std"] for m in names], color="#4c72b0")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].set_ylim(max(0, min(summary[m]["accuracy_mean"] for m in names) - 15), 100)
    axes[0].set_title(f"{100 * args.noise:g}% {args.noise_kind} noise, {len(runs)} seed(s)")
    first = runs[0]
    if "bads" in first["methods"] and first.get("corrupted") is not None:
        w, bad = np.asarray(first["methods"]["bads"]["weights"]), np.asarray(first["corrupted"], bool)
        bins = np.linspace(0, 1, 26)
        axes[1].hist(w[~bad], bins, alpha=0.7, label="clean label")
        axes[1].hist(w[bad], bins, alpha=0.7, label="corrupted label")
        axes[1].set_xlabel("BADS posterior-mean weight")
        axes[1].legend()
        axes[1].set_title(f"BADS weights, seed {first['seed']}")
    else:
        axes[1].axis("off")
    fig.tight_layout()
    with atomic(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", metadata={"Description": json.dumps(provenance, default=str)})
    plt.close(fig)
    return True


def cmd_demo(args) -> int:
    from jdps.errors import InputError

    if not 0 <= args.noise < 1:
        raise InputError(f"--noise is the fraction of corrupted labels, in [0, 1), got {args.noise}")
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        raise InputError(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir {out_dir} is a file; pass a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    from jdps.data.catalogue import CATALOGUE

    if not CATALOGUE["mnist_5k"].is_installed():
        raise InputError(f"the demo needs MNIST 5k, which is not installed: run `jdps install mnist_5k` "
                         f"({CATALOGUE['mnist_5k'].source})")
    from jdps.models.mlp import mlp_task
    from jdps.outputs import provenance, write_json, write_text

    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    say(f"jdps demo: BADS vs {', '.join(m for m in args.methods if m != 'bads')} on MNIST 5k, "
        f"{100 * args.noise:g}% {args.noise_kind} label noise, {args.repeats} seed(s); results go to "
        f"{out_dir.resolve()}/")
    import optax

    start, cpu_start = time.perf_counter(), time.process_time()
    runs = []
    # one task and one optimizer object for every seed, so each method's compiled steps are reused across seeds
    task, optimizer = mlp_task(0, 784, HIDDEN, 10)[0], optax.adam(1e-3)
    for seed in range(args.seed, args.seed + args.repeats):
        pool, meta, test, pool_id = make_data(args.n_train, args.noise, args.noise_kind, args.meta_per_class, seed)
        corrupted = np.asarray(pool.columns["corrupted"], bool) if "corrupted" in pool.columns else None
        p, m, t = _flat(pool), _flat(meta), _flat(test)
        params = mlp_task(seed, p["x"].shape[1], HIDDEN, 10)[1]
        run = {"seed": seed, "n_pool": len(p["x"]), "n_meta": len(m["x"]), "n_test": len(t["x"]),
               "corrupted": corrupted, "pool_id": pool_id, "methods": {}}
        for method in args.methods:
            run["methods"][method] = run_method(method, task, params, p, m, t, seed=seed, epochs=args.epochs,
                                                corrupted=corrupted, progress=not args.quiet, optimizer=optimizer)
            r = run["methods"][method]
            say(f"  seed {seed} {method:<9} test accuracy {100 * r['accuracy']:.1f}%"
                + (f", weight AUROC {r['auroc']:.3f}" if r["auroc"] is not None else "") + f" ({r['seconds']:.0f} s)")
        runs.append(run)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    summary = summarise(runs, args.methods)
    prov = provenance(command=command(args), options=flags.options(args, exclude=("debug", "quiet")),
                      seed=args.seed, inputs={"catalogue:mnist_5k": CATALOGUE["mnist_5k"].source})
    md = write_text(out_dir / "demo.md", report(args, runs, summary, seconds, cpu))
    record = {"command": command(args), "summary": summary, "margin": margin_line(summary, runs),
              "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
              "runs": [{**{k: v for k, v in r.items() if k not in ("corrupted", "pool_id", "methods")},
                        "methods": {name: {k: v for k, v in f.items() if k != "weights"}
                                    for name, f in r["methods"].items()},
                        # the BADS weight of every pool example, by its id in MNIST 5k
                        **({"bads_weights": {"id": r["pool_id"].tolist(),
                                             "weight": np.round(r["methods"]["bads"]["weights"], 4).tolist(),
                                             "corrupted": r["corrupted"].tolist()}}
                           if "bads" in r["methods"] and r["corrupted"] is not None else {})} for r in runs]}
    js = write_json(out_dir / "demo.json", record, provenance=prov)
    png = out_dir / "demo.png"
    drew = figure(args, runs, summary, png, prov)
    if not args.quiet:
        print()
        print(md.read_text())
    print(json.dumps({"command": "demo", "margin_points": _margin(runs), "seconds": round(seconds, 1),
                      "cpu_seconds": round(cpu, 1),
                      "out_dir": str(out_dir.resolve()), "table": str(md), "json": str(js),
                      **({"figure": str(png)} if drew else {})}))
    return 0


def _margin(runs) -> float | None:
    if not runs or "bads" not in runs[0]["methods"] or "uniform" not in runs[0]["methods"]:
        return None
    return round(float(np.mean([100 * (r["methods"]["bads"]["accuracy"] - r["methods"]["uniform"]["accuracy"])
                                for r in runs])), 2)


def add_demo_parser(subparsers) -> None:
    p = flags.command(subparsers, "demo", "the main job: BADS against its baselines on noisy labels (table, JSON, "
                      "figure)", cmd_demo, doc=__doc__)
    flags.seed(p, "the first seed: data draw, label noise, model init, training order")
    p.add_argument("--repeats", type=flags.positive_int, default=5, help="seeds SEED, SEED+1, ...: runs to average")
    p.add_argument("--noise", type=flags.nonneg_float, default=0.5, help="fraction of the pool's labels corrupted")
    p.add_argument("--noise-kind", choices=NOISE_KINDS, default="symmetric", help="how labels are corrupted")
    p.add_argument("--n-train", type=flags.positive_int, default=3000, help="pool size (MNIST 5k training images)")
    p.add_argument("--meta-per-class", type=flags.positive_int, default=15, help="clean meta images a class")
    p.add_argument("--epochs", type=flags.positive_int, default=20, help="epochs of batch 128, every method")
    p.add_argument("--methods", nargs="+", default=list(METHODS), metavar="NAME",
                   help=f"the methods to run, from {' '.join(METHODS)}")
    p.add_argument("--out-dir", default="demo_results", help="the folder for demo.md, demo.json and demo.png")
    flags.quiet(p)
