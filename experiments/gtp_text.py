"""GTP experiment 1: target-domain selection on text. From a pool mixing domains, pick the windows whose
gradient trajectory matches a few dozen target windows, train the small LM on them, measure target loss.

Data, per seed s (`experiments.bads_text.make_data`): domains KJV, the Brown genres "press: reportage",
"learned", "fiction: general", "fiction: romance" (the target) and SpamAssassin's "spam"; windows of 64 byte
tokens; the pool keeps `pool_per_domain` (400) random windows of each domain (2,400 in all); the target set
is `target_windows` (48) windows and the test set 500 windows, from held-out romance documents (3 and 6),
so target, test and pool share no document.

Features: the transformer LM (d_model 32, 2 layers, 2 heads; seed s) warms up on the whole pool for
`warmup_epochs` (2) epochs (Adam(1e-3), batch 32); the parameters after each epoch are the checkpoints.
`jdps.gtp.fit(..., target_data=target, method='factored', d=256)` gives the pool's trajectories A and the
target's mean trajectory b. Selectors at 0.5%, 1% and 5% of the pool: `gtp-omp` (non-negative OMP,
its weights), `gtp-omp-unit` (the same selection trained with weight 1), `gtp-cosamp` (k <= `cosamp_max_k`
= 120 only), `less` (top-k by cosine a_i . b / |a_i|, weight 1),
`random` (weight 1); and `full` (the whole pool). Two training protocols per subset, loss self-normalised
by the batch's weights, batch 16: `scratch`, a fresh LM (seed s + 1000) for about `steps` (300) steps at lr
1e-3; `finetune`, the warm-up model (the last checkpoint, itself trained on the whole pool) for about
`finetune_steps` (50) steps at lr 3e-4, the use GTP and LESS select data for; the warm-up model's own loss
is reported as the row `warm-up model`.

Reported: the mean next-token loss (nats per byte) on the target's test windows, mean ± std over seeds,
and the share of each selection drawn from the target domain.

    python experiments/gtp_text.py                   # 3 seeds
    python experiments/gtp_text.py --seeds 0

writes `<out>.md`, `<out>.json` and `<out>.png` (target loss against the fraction); `--out` defaults to
experiments/results/gtp_text.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import command_line, markdown_table, mean_std, plot_by_fraction, write_report  # noqa: E402

METHODS = ("gtp-omp", "gtp-omp-unit", "gtp-cosamp", "less", "random")
OUT = Path(__file__).resolve().parent / "results" / "gtp_text"


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


def make_data(setup: Setup, seed: int):
    """(pool, target, test) windows (Datasets with a `domain` column) for one seed."""
    from experiments import bads_text

    s = bads_text.Setup(domains=setup.domains, target=setup.target, length=setup.length,
                        train_per_domain=setup.pool_per_domain, meta_windows=setup.target_windows,
                        test_windows=setup.test_windows, meta_docs=setup.target_docs, test_docs=setup.test_docs)
    return bads_text.make_data(s, seed)


def lm(setup: Setup, seed: int):
    from jdps.data.text import VOCAB_SIZE
    from jdps.models.transformer import transformer_lm_task

    return transformer_lm_task(seed, VOCAB_SIZE, d_model=setup.d_model, n_heads=setup.n_heads,
                               n_layers=setup.n_layers, max_len=setup.length)


def train_subset(task, params, pool, test, idx, w, setup: Setup, seed: int, protocol: str = "scratch") -> float:
    """Target test loss of the LM trained on rows idx of pool with weights w (self-normalised per batch):
    about `steps` steps at lr 1e-3 (scratch), or `finetune_steps` at `finetune_lr` (finetune)."""
    import optax

    from jdps.train import evaluate, train

    steps, lr = (setup.steps, 1e-3) if protocol == "scratch" else (setup.finetune_steps, setup.finetune_lr)
    weights = np.zeros(len(pool["x"]), np.float32)
    weights[idx] = w
    epochs = max(1, round(steps / max(1, len(idx) // setup.batch_size)))
    out = train(task, params, pool, key=seed, epochs=epochs, batch_size=setup.batch_size,
                optimizer=optax.adam(lr), indices=np.sort(idx), weights=weights, normalize="weights")
    return evaluate(task, out.params, test)["loss"]


def run(seed: int, fractions, methods, setup: Setup, log=print, data=None) -> list[dict]:
    """Every method at every fraction on one seed's data; one record each (plus `full`)."""
    import optax

    from jdps import gtp
    from jdps.train import evaluate
    from jdps.train import train as fit_model

    pool_ds, target_ds, test_ds = make_data(setup, seed) if data is None else data
    pool, target, test = ({"x": np.asarray(d.x)} for d in (pool_ds, target_ds, test_ds))
    domain = np.asarray(pool_ds.columns["domain"])
    target_domain = list(pool_ds.info.domain_names).index(setup.target)
    task, params = lm(setup, seed)
    t = time.perf_counter()
    checkpoints, p = [], params
    for epoch in range(setup.warmup_epochs):
        p = fit_model(task, p, pool, key=seed * 100 + epoch, epochs=1, batch_size=32,
                      optimizer=optax.adam(1e-3)).params
        checkpoints.append(p)
    state = gtp.fit(task, checkpoints, pool, d=setup.d, key=seed, target_data=target, method="factored")
    log(f"[seed {seed}] features {state.features.shape} in {time.perf_counter() - t:.0f}s")
    _, fresh = lm(setup, seed + 1000)
    inits = {"scratch": fresh, "finetune": checkpoints[-1]}
    n = len(pool["x"])
    share = float((domain == target_domain).mean())
    records = [{"seed": seed, "protocol": "finetune", "method": "warm-up model", "fraction": 0.0, "k": 0,
                "count": 0, "loss": evaluate(task, checkpoints[-1], test)["loss"], "target_share": share}]
    for protocol, init in inits.items():
        records.append({"seed": seed, "protocol": protocol, "method": "full", "fraction": 1.0, "k": n, "count": n,
                        "loss": train_subset(task, init, pool, test, np.arange(n), np.ones(n), setup, seed, protocol),
                        "target_share": share})
        log(records[-1])
    for fraction in fractions:
        k = int(np.ceil(fraction * n))
        for method in methods:
            if method == "gtp-cosamp" and k > setup.cosamp_max_k:
                continue
            if method == "random":
                idx, w, info = np.sort(np.random.default_rng(seed).choice(n, k, replace=False)), np.ones(k), {}
            else:
                options = {"gtp-omp": {"method": "omp"}, "gtp-omp-unit": {"method": "omp"},
                           "gtp-cosamp": {"method": "cosamp"}, "less": {"method": "topk", "score": "cosine"}}[method]
                sel = gtp.select(state, budget=k, **options)
                idx, w, info = np.asarray(sel.indices), np.asarray(sel.weights), sel.info
                if method == "gtp-omp-unit":  # the same selection trained with weight 1: selection without weighting
                    w = np.ones_like(w)
            for protocol, init in inits.items():
                loss = train_subset(task, init, pool, test, idx, w, setup, seed, protocol)
                records.append({"seed": seed, "protocol": protocol, "method": method, "fraction": fraction, "k": k,
                                "count": len(idx), "loss": loss,
                                "target_share": float((domain[idx] == target_domain).mean()),
                                "stop_reason": info.get("stop_reason", "-")})
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
                  f"Target-domain ({setup.target}) test loss, nats per byte (lower is better), mean ± std over "
                  "seeds:", "", markdown_table(header, rows(protocol, "loss", 1, 3)), ""]
    lines += ["Share (%) of the selected windows drawn from the target domain:", "",
              markdown_table(header, rows("scratch", "target_share", 100, 1)), ""]
    return "\n".join(lines)


def figure(records, path: Path) -> None:
    """Target test loss against the selected fraction, one panel per protocol."""
    panels = [(name, [r for r in records if r.get("protocol", "scratch") == protocol], METHODS, lambda r: r["loss"])
              for protocol, name in (("scratch", "from scratch"), ("finetune", "fine-tuning the warm-up model"))]
    plot_by_fraction(panels, path, "target test loss (nats per byte)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.005, 0.01, 0.05])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    setup = Setup()
    records = []
    for seed in args.seeds:
        records += run(seed, args.fractions, args.methods, setup)
        report = table(records, setup, command_line("experiments/gtp_text.py", argv))
        write_report(args.out, report, {"setup": asdict(setup), "records": records})
        figure(records, args.out.parent / f"{args.out.name}.png")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
