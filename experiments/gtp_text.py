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
its weights), `gtp-cosamp` (k <= `cosamp_max_k` only), `less` (top-k by cosine a_i . b / |a_i|, weight 1),
`random` (weight 1); and `full` (the whole pool). A fresh LM (seed s + 1000) trains on each subset for
about `steps` (300) steps of batch 16, loss self-normalised by the batch's weights.

Reported: the mean next-token loss (nats per byte) on the target's test windows, mean ± std over seeds,
and the share of each selection drawn from the target domain.

    python experiments/gtp_text.py                   # 3 seeds
    python experiments/gtp_text.py --seeds 0

writes `<out>.md` and `<out>.json`; `--out` defaults to experiments/results/gtp_text.
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

from experiments.common import command_line, markdown_table, mean_std, write_report  # noqa: E402

METHODS = ("gtp-omp", "gtp-cosamp", "less", "random")
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
    cosamp_max_k: int = 64


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


def train_subset(task, params, pool, test, idx, w, setup: Setup, seed: int) -> float:
    """Target test loss of the LM trained on rows idx of pool with weights w (self-normalised per batch)."""
    import optax

    from jdps.train import evaluate, train

    weights = np.zeros(len(pool["x"]), np.float32)
    weights[idx] = w
    epochs = max(1, round(setup.steps / max(1, len(idx) // setup.batch_size)))
    out = train(task, params, pool, key=seed, epochs=epochs, batch_size=setup.batch_size,
                optimizer=optax.adam(1e-3), indices=np.sort(idx), weights=weights, normalize="weights")
    return evaluate(task, out.params, test)["loss"]


def run(seed: int, fractions, methods, setup: Setup, log=print, data=None) -> list[dict]:
    """Every method at every fraction on one seed's data; one record each (plus `full`)."""
    import optax

    from jdps import gtp
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
    _, init = lm(setup, seed + 1000)
    n = len(pool["x"])
    records = [{"seed": seed, "method": "full", "fraction": 1.0, "k": n, "count": n,
                "loss": train_subset(task, init, pool, test, np.arange(n), np.ones(n), setup, seed),
                "target_share": float((domain == target_domain).mean())}]
    log(records[-1])
    for fraction in fractions:
        k = int(np.ceil(fraction * n))
        for method in methods:
            if method == "gtp-cosamp" and k > setup.cosamp_max_k:
                continue
            if method == "random":
                idx, w, info = np.sort(np.random.default_rng(seed).choice(n, k, replace=False)), np.ones(k), {}
            else:
                options = {"gtp-omp": {"method": "omp"}, "gtp-cosamp": {"method": "cosamp"},
                           "less": {"method": "topk", "score": "cosine"}}[method]
                sel = gtp.select(state, budget=k, **options)
                idx, w, info = np.asarray(sel.indices), np.asarray(sel.weights), sel.info
            loss = train_subset(task, init, pool, test, idx, w, setup, seed)
            records.append({"seed": seed, "method": method, "fraction": fraction, "k": k, "count": len(idx),
                            "loss": loss, "target_share": float((domain[idx] == target_domain).mean()),
                            "stop_reason": info.get("stop_reason", "-")})
            log(records[-1])
    return records


def table(records, setup: Setup, command: str) -> str:
    """Target test loss per method and fraction, and the target domain's share of each selection."""
    seeds = sorted({r["seed"] for r in records})
    fractions = sorted({r["fraction"] for r in records if r["method"] != "full"})
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    full = [r for r in records if r["method"] == "full"]
    header = ["method"] + [f"{100 * f:g}%" for f in fractions]

    def cell(m, f, key, scale, digits):
        v = [r[key] for r in records if r["method"] == m and r["fraction"] == f]
        return mean_std(v, scale, digits) if v else "not run"

    loss_rows = [["full pool"] + [mean_std([r["loss"] for r in full], 1, 3)] * len(fractions)]
    loss_rows += [[m] + [cell(m, f, "loss", 1, 3) for f in fractions] for m in methods]
    share_rows = [["full pool"] + [mean_std([r["target_share"] for r in full], 100, 1)] * len(fractions)]
    share_rows += [[m] + [cell(m, f, "target_share", 100, 1) for f in fractions] for m in methods]
    return "\n".join([
        "# GTP experiment 1: target-domain selection on text", "", f"Command: `{command}`  ",
        f"Seeds: {seeds} ({len(seeds)}); setup: {asdict(setup)}; pool N = {full[0]['k'] if full else '?'}.", "",
        f"Target-domain ({setup.target}) test loss, nats per byte (lower is better), mean ± std over seeds:", "",
        markdown_table(header, loss_rows), "",
        "Share (%) of the selected windows drawn from the target domain:", "",
        markdown_table(header, share_rows), ""])


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
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
