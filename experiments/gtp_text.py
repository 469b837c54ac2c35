"""GTP experiment 1: target-domain selection on text. From a pool mixing domains, pick the windows whose
gradient trajectory matches a few dozen target windows, train the small LM on them, measure target loss.

Data, per seed s (`experiments.common.target_split`): domains KJV, the Brown genres "press: reportage",
"learned", "fiction: general", "fiction: romance" (the target) and SpamAssassin's "spam"; windows of 64 byte
tokens; the pool keeps `pool_per_domain` (400) random windows of each domain (2,400 in all); the target set
is `target_windows` (48) windows and the test set 500 windows, from held-out romance documents (3 and 6),
so target, test and pool share no document.

Features: the transformer LM (d_model 32, 2 layers, 2 heads; seed s) warms up on the whole pool for
`warmup_epochs` (2) epochs (Adam(1e-3), batch 32; `experiments.common.warmup_checkpoints`); the parameters
after each epoch are the checkpoints. The selector `gtp` (`jdps.selectors`, grad_form 'factored', d = 256,
the target set as its reference) gives the pool's trajectories A and the target's mean trajectory b.
Selectors at 0.5%, 1% and 5% of the pool: `gtp-omp` (non-negative OMP, its weights), `gtp-omp-unit` (the
same selection trained with weight 1), `gtp-cosamp` (k <= `cosamp_max_k` = 120 only), `less` (top-k by
cosine a_i . b / |a_i|, weight 1), `random` (the selector `random`, key s, weight 1); and `full` (the whole
pool). Two training protocols per subset (`experiments.common.train_subset`), loss self-normalised by the
batch's weights, batch 16: `scratch`, a fresh LM (seed s + 1000) for about `steps` (300) steps at lr 1e-3;
`finetune`, the warm-up model (the last checkpoint, itself trained on the whole pool) for about
`finetune_steps` (50) steps at lr 3e-4, the use GTP and LESS select data for; the warm-up model's own loss
is reported as the row `warm-up model`.

Reported: the mean next-token loss (nats per byte) on the target's test windows, mean ± std over seeds,
and the share of each selection drawn from the target domain.

    python -m experiments.gtp_text                   # 3 seeds
    python -m experiments.gtp_text --seeds 0

writes `<out>.md`, `<out>.json` and `<out>.png` (target loss against the fraction), each with its
provenance; `--out` defaults to experiments/results/gtp_text. With `--checkpoint-dir DIR` every finished
cell (seed, protocol, method, fraction) is kept in DIR and a re-run of the command skips it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
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
    lm_task,
    markdown_table,
    mean_std,
    paired,
    sample_std,
    plot_by_fraction,
    run_seeds,
    target_split,
    timed,
    train_subset,
    warmup_checkpoints,
    write_report,
)
from jdps.train import evaluate

# method: (selector of jdps.selectors, its select options, train with weight 1 instead of the selection's)
SELECTORS = {"gtp-omp": ("gtp", {"solver": "omp"}, False), "gtp-omp-unit": ("gtp", {"solver": "omp"}, True),
             "gtp-cosamp": ("gtp", {"solver": "cosamp"}, False),
             "less": ("gtp", {"solver": "topk", "score": "cosine"}, False), "random": ("random", {}, False),
             "gtp-omp-norm": ("gtp-norm", {"solver": "omp"}, False),
             "gtp-omp-norm-unit": ("gtp-norm", {"solver": "omp"}, True),
             "gtp-cosamp-norm": ("gtp-norm", {"solver": "cosamp"}, False)}
METHODS = tuple(SELECTORS)
LR = 1e-3                 # Adam's step in the warm-up and the scratch protocol (finetune: Setup.finetune_lr)
WARMUP_BATCH_SIZE = 32
OUT = RESULTS / "gtp_text"
PROTOCOLS = ("scratch", "finetune")


@dataclass(frozen=True)
class Setup:
    """Domains, target, sizes, model, warm-up, features and training budget."""

    domains: tuple[str, ...] = ("kjv", "press: reportage", "learned", "fiction: general", "fiction: romance",
                                "spam")
    target: str = "fiction: romance"
    length: int = 64
    pool_per_domain: int = 400
    target_windows: int = 48
    test_windows: int = 500
    target_docs: int = 3
    test_docs: int = 6
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    warmup_epochs: int = 2
    d: int = 256
    steps: int = 300
    batch_size: int = 16
    cosamp_max_k: int = 120
    finetune_steps: int = 50
    finetune_lr: float = 3e-4


FULL = Setup()


def make_data(setup: Setup, seed: int):
    """(pool, target, test) windows (Datasets with a `domain` column) for one seed."""
    return target_split(setup.domains, setup.target, length=setup.length, per_domain=setup.pool_per_domain,
                        meta_windows=setup.target_windows, test_windows=setup.test_windows,
                        meta_docs=setup.target_docs, test_docs=setup.test_docs, seed=seed)


def run(seed: int, fractions, methods, setup: Setup, log=print, data=None, cells: Cells | None = None,
        protocols=PROTOCOLS) -> list[dict]:
    """Every method at every fraction on one seed's data; one record each (plus `full`). With `cells` (the
    --checkpoint-dir) each finished record is kept, and a re-run computes only the missing ones (the data,
    the warm-up and the features only when one is missing)."""
    cells = Cells(None, {}) if cells is None else cells
    ready = {}

    def prepared():
        """The data, the warm-up, the fitted selectors and the two training protocols, made on first use."""
        if ready:
            return ready
        pool_ds, target_ds, test_ds = make_data(setup, seed) if data is None else data
        pool, target, test = ({"x": np.asarray(d.x)} for d in (pool_ds, target_ds, test_ds))
        domain = np.asarray(pool_ds.columns["domain"])
        target_domain = list(pool_ds.info.domain_names).index(setup.target)
        task, params = lm_task(setup, seed)
        checkpoints, warmup_s = timed(warmup_checkpoints, task, params, pool, epochs=setup.warmup_epochs, seed=seed,
                                      batch_size=WARMUP_BATCH_SIZE, optimizer=adam(LR))
        fitted = {"random": fit_selector("random", None, None, pool, key=seed)}
        for name, normalize in (("gtp", False), ("gtp-norm", True)):
            if any(SELECTORS[m][0] == name for m in methods):
                fitted[name] = fit_selector("gtp", task, checkpoints, pool, target, key=seed,
                                            fit_options={"d": setup.d, "grad_form": "factored", "normalize": normalize})
        log(f"[seed {seed}] warm-up and features in "
            f"{warmup_s + sum(f.fit_s for n, f in fitted.items() if n.startswith('gtp')):.0f}s")
        _, fresh = lm_task(setup, seed + 1000)
        protocols = {"scratch": (fresh, setup.steps, LR), "finetune": (checkpoints[-1], setup.finetune_steps,
                                                                         setup.finetune_lr)}

        def loss(protocol, indices, weights):
            init, steps, lr = protocols[protocol]
            params = train_subset(task, init, pool, indices, weights, seed=seed, steps=steps,
                                  batch_size=setup.batch_size, optimizer=adam(lr))
            return evaluate(task, params, test)["loss"]

        ready.update(pool=pool, domain=domain, target_domain=target_domain, task=task, checkpoints=checkpoints,
                     fitted=fitted, loss=loss, test=test, n=len(pool["x"]),
                     share=float((domain == target_domain).mean()))
        return ready

    def warm_up_record():
        r = prepared()
        return {"seed": seed, "protocol": "finetune", "method": "warm-up model", "fraction": 0.0, "k": 0,
                "count": 0, "loss": evaluate(r["task"], r["checkpoints"][-1], r["test"])["loss"],
                "target_share": r["share"]}

    records = [cells.run(warm_up_record, seed=seed, method="warm-up model")]
    n = cells.run(lambda: {"n": prepared()["n"]}, seed=seed, what="pool size")["n"]
    for protocol in protocols:
        records.append(cells.run(lambda protocol=protocol: {
            "seed": seed, "protocol": protocol, "method": "full", "fraction": 1.0, "k": n, "count": n,
            "loss": prepared()["loss"](protocol, np.arange(n), None), "target_share": prepared()["share"]},
            seed=seed, protocol=protocol, method="full"))
        log(records[-1])
    for fraction in fractions:
        k = int(np.ceil(fraction * n))
        for method in methods:
            if method.startswith("gtp-cosamp") and k > setup.cosamp_max_k:
                continue
            name, options, unit = SELECTORS[method]
            selection = {}

            def sel(name=name, options=options, k=k, selection=selection):
                if not selection:
                    selection["sel"] = prepared()["fitted"][name].select(budget=k, key=seed, **options)
                return selection["sel"]
            for protocol in protocols:
                def cell(protocol=protocol, method=method, fraction=fraction, k=k, unit=unit, sel=sel):
                    r, s = prepared(), sel()
                    return {"seed": seed, "protocol": protocol, "method": method, "fraction": fraction, "k": k,
                            "count": len(s), "loss": r["loss"](protocol, s.indices, None if unit else s.weights),
                            "target_share": float((r["domain"][s.indices] == r["target_domain"]).mean()),
                            "stop_reason": s.info.get("stop_reason", "-")}
                records.append(cells.run(cell, seed=seed, protocol=protocol, method=method, fraction=fraction))
                log(records[-1])
    return records


def table(records, setup: Setup, command: str) -> str:
    """Target test loss per method and fraction, and the target domain's share of each selection."""
    seeds = sorted({r["seed"] for r in records})
    fractions = sorted({r["fraction"] for r in records if r["method"] not in ("full", "warm-up model")})
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    header = ["method"] + [f"{100 * f:g}%" for f in fractions]
    titles = {"scratch": f"Scratch: a fresh LM trained on each subset for about {setup.steps} steps (lr 1e-3)",
              "finetune": f"Fine-tune: the warm-up model trained on each subset for about {setup.finetune_steps} "
                          f"more steps (lr {setup.finetune_lr:g})"}

    def rows(protocol, key, scale, digits):
        mine = [r for r in records if r.get("protocol", "scratch") == protocol]

        def cell(m, f):
            v = [r[key] for r in mine if r["method"] == m and r["fraction"] == f]
            return mean_std(v, scale, digits) if v else "not run"
        fixed = ("warm-up model", "full") if key == "loss" else ("full",)
        out = [[{"full": "full pool"}.get(m, m)] + [mean_std([r[key] for r in mine if r["method"] == m], scale,
                                                             digits)] * len(fractions)
               for m in fixed if any(r["method"] == m for r in mine)]
        return out + [[m] + [cell(m, f) for f in fractions] for m in methods if any(r["method"] == m for r in mine)]

    n = next((r["k"] for r in records if r["method"] == "full"), "?")
    lines = ["# GTP experiment 1: target-domain selection on text", "", f"Command: `{command}`  ",
             f"Seeds: {seeds} ({len(seeds)}); setup: {asdict(setup)}; pool N = {n}.", ""]
    for protocol in ("scratch", "finetune"):
        if not any(r.get("protocol", "scratch") == protocol for r in records):
            continue
        lines += [f"## {titles[protocol]}", "",
                  (f"Target-domain ({setup.target}) test loss, nats per byte (lower is better), mean ± std over "
                  "seeds:"), "", markdown_table(header, rows(protocol, "loss", 1, 3)), ""]
    lines += ["Share (%) of the selected windows drawn from the target domain:", "",
              markdown_table(header, rows("scratch", "target_share", 100, 1)), ""]
    pairs = []
    for protocol in ("scratch", "finetune"):
        mine = [r for r in records if r.get("protocol", "scratch") == protocol]
        full = [r["loss"] for r in mine if r["method"] == "full"]
        for f in fractions:
            at = [r for r in mine if r["fraction"] == f]
            for m in methods:
                d = paired(at, m, "random", lambda r: r["loss"]) if m != "random" else None
                if d is not None:
                    gap = np.mean([r["loss"] for r in at if r["method"] == m]) - np.mean(full)
                    pairs.append([protocol, f"{100 * f:g}%", m, " ".join(f"{x:+.3f}" for x in d),
                                  f"{np.mean(d):+.3f} ± {sample_std(d):.3f}", beyond_spread(d, lower=True),
                                  f"{gap:+.3f}"])
    lines += [("Paired differences of the target test loss, method minus random, seed by seed (negative: "
               "better than random); 'beyond the spread': the same sign on every seed and |mean| above the "
               "sample standard deviation of the differences; the last column is the method's mean loss minus "
               "the full pool's under the same protocol:"), "",
              markdown_table(["protocol", "fraction", "method", "per seed", "mean ± std", "below random beyond the spread",
                              "minus full pool"], pairs), ""]
    return "\n".join(lines)


def figure(records, path: Path, provenance: dict | None = None) -> None:
    """Target test loss against the selected fraction, one panel per protocol."""
    panels = [(name, [r for r in records if r.get("protocol", "scratch") == protocol], METHODS, lambda r: r["loss"])
              for protocol, name in (("scratch", "from scratch"), ("finetune", "fine-tuning the warm-up model"))]
    plot_by_fraction(panels, path, "target test loss (nats per byte)", provenance)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.005, 0.01, 0.05])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--merge", type=Path, default=None,
                        help="an earlier run's .json: its records of the methods not run now join the report")
    parser.add_argument("--report-from", type=Path, default=None,
                        help="write the report (.md, .png at --out) from this earlier run's .json, running nothing")
    add_checkpoint_dir(parser, "seed, protocol, method, fraction")
    args = parser.parse_args(argv)
    setup = FULL
    if args.report_from is not None:
        records = json.loads(args.report_from.read_text())["records"]
        with experiment_run("experiments.gtp_text", argv, args.out, setup=setup, seeds=args.seeds,
                            datasets=["kjv", "brown", "spam_assassin"]) as ex:
            write_report(args.out, table(records, setup, ex.command), {"setup": asdict(setup), "records": records},
                         ex.provenance)
            figure(records, args.out.parent / f"{args.out.name}.png", ex.provenance)
        return 0
    with experiment_run("experiments.gtp_text", argv, args.out, setup=setup, seeds=args.seeds,
                        datasets=["kjv", "brown", "spam_assassin"], checkpoint_dir=args.checkpoint_dir) as ex:
        def save(records):
            write_report(args.out, table(records, setup, ex.command), {"setup": asdict(setup), "records": records},
                         ex.provenance)
            figure(records, args.out.parent / f"{args.out.name}.png", ex.provenance)

        kept = [] if args.merge is None else [
            r for r in json.loads(args.merge.read_text())["records"] if r["method"] not in args.methods]
        records = run_seeds(args.seeds, lambda seed: [r for r in kept if r["seed"] == seed] + [
            r for r in run(seed, args.fractions, args.methods, setup, cells=ex.cells, protocols=args.protocols)
            if not (kept and r["method"] in ("full", "warm-up model"))], save)
    print(table(records, setup, ex.command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
