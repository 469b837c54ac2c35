"""Cost of influence scoring per iHVP method, and of Quad's scoring against top-k influence, in one run.

Models (real data, after a one-epoch Adam(1e-3) warm-up on the pool so the scores are those of a model that
has started learning): the MLP 784-512-256-10 on Fashion-MNIST (batch 512; pool: random training images;
reference set: test images) and the causal transformer LM (2 blocks, d_model 128, 4 heads, byte vocabulary
259) on KJV windows of 64 tokens (batch 32; reference set: windows of the first chapters, pool: windows of
the rest). Influence is taken w.r.t. the Dense layers (every MLP parameter; the transformer's q/k/v/o, fc1,
fc2 and head, not its embeddings and LayerNorms), damping lambda = 0.1, curvature (GGN) fitted on the
reference set, as Quad does.

Part 1, per iHVP method of `jdps.influence.ihvp` (exact: the MLP's output layer only, p = 2,570, since it holds a
[p, p] matrix; no transformer layer is small enough), each call timed once, wall seconds and the seconds
spent compiling (jaxpr tracing, lowering and XLA compilation, read from `jax.monitoring`), so that a rate
"excl. compile" is N / (wall - compile):

    fit            influence.fit on the reference set (factors, the operator, LiSSA's power iteration); the
                   host float64 eigendecompositions it runs (K-FAC/EK-FAC: every A and G; exact: C) are re-timed
                   alone right after it, with the default BLAS threads and with one (threadpoolctl)
    precondition   influence.query_vector: v = (C + lambda I)^{-1} grad L(Q), the mean reference gradient
    scores         influence.scores of one batch of pool examples on one query example: per-example
                   gradients by vmap(grad) (chunks of 64), the query's gradient and its solve
    JVP            influence.jvp_scores(task, params, v, batch) (jit): g_i . v for the batch by one forward-
                   mode JVP, and its cosine form (normalize=True: ghost norms |g_i|, Quad's default score),
                   each timed against the forward pass jit(task.loss_fn) on the same batch: median over
                   interleaved rounds of the per-round ratio (load drifting between rounds does not bias it)

Part 2, Quad against top-k influence on one pool per model (the same EK-FAC curvature, the same v and the
same cosine score): top-k scores every pool example (`influence.query_scores(..., normalize=True)`) and
keeps the k best; `quad.select` (scaled defaults, `fraction`) scores only the documents its bandit samples.
Times exclude compilation (reported apart); Quad is run with several keys (median time, mean scored).
Quad's embeddings: the MLP's flattened pixels (Quad's default) and, for the LM, each window's byte
histogram (MiniLM's embedding cost is left out: it is not a scoring cost).

    PYTHONPATH=. python scripts/bench_influence.py                 # the full run (about 10 minutes)
    PYTHONPATH=. python scripts/bench_influence.py --quick         # tiny sizes, a smoke run

writes experiments/results/bench_influence.md (the tables, the command, the machine) and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jdps.gradients import factored as fa
from jdps.influence import ihvp as ih
from jdps import influence, quad
from jdps.gradients import param_filter as pf
OUT = Path(__file__).resolve().parent.parent / "experiments" / "results" / "bench_influence"
COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")
DAMPING = 0.1  # about 1e-3 x the largest curvature eigenvalue; the paper's absolute 1e-3 is rejected as singular
_compile_seconds = [0.0]


def _on_event(name: str, seconds: float, **_) -> None:
    if name in COMPILE_EVENTS:
        _compile_seconds[0] += seconds


def timed(fn):
    """(wall seconds, of which compiling, fn()) of one call, its outputs ready."""
    compiled, start = _compile_seconds[0], time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, _compile_seconds[0] - compiled, out


@dataclass(frozen=True)
class Sizes:
    """Model widths, batch and set sizes, solver lengths, repeats."""

    mlp_hidden: tuple[int, ...] = (512, 256)
    mlp_batch: int = 512
    mlp_reference: int = 1024
    mlp_pool: int = 8192
    lm_d_model: int = 128
    lm_layers: int = 2
    lm_length: int = 64
    lm_batch: int = 32
    lm_reference: int = 64
    lm_pool: int = 2048
    cg_maxiter: int = 10
    lissa_depth: int = 20
    jvp_rounds: int = 11
    quad_keys: int = 3
    fraction: float = 0.1


QUICK = Sizes(mlp_hidden=(32, 16), mlp_batch=64, mlp_reference=128, mlp_pool=512, lm_d_model=32, lm_layers=1,
              lm_length=16, lm_batch=8, lm_reference=16, lm_pool=128, cg_maxiter=2, lissa_depth=2, jvp_rounds=3,
              quad_keys=1)


SYNTHETIC = False   # --synthetic
METHODS = None      # --methods: the iHVP methods to time (None: all)
MODELS = ("mlp", "lm")  # --models


def mlp_case(sizes: Sizes, seed: int):
    """(title, task, params, pool, reference, embeddings): Fashion-MNIST, pool from train, reference from test."""
    from jdps.data import catalogue
    from jdps.models.mlp import mlp_task

    if SYNTHETIC:   # random images and labels of Fashion-MNIST's shape: the cost does not depend on the values
        rng = np.random.default_rng(seed + 1)
        fake = lambda n: {"x": rng.random((n, 28, 28, 1), np.float32), "y": rng.integers(0, 10, n).astype(np.int32)}
        train, test = fake(sizes.mlp_pool), fake(sizes.mlp_reference)
    else:
        train = catalogue.load("fashion_mnist", "train").arrays()
        test = catalogue.load("fashion_mnist", "test").arrays()
    rows = np.random.default_rng(seed).choice(len(train["x"]), sizes.mlp_pool, replace=False)
    pool = {"x": train["x"][rows], "y": train["y"][rows]}
    reference = {"x": test["x"][:sizes.mlp_reference], "y": test["y"][:sizes.mlp_reference]}
    task, params = mlp_task(seed, 784, list(sizes.mlp_hidden), 10)
    title = f"MLP 784-{'-'.join(map(str, sizes.mlp_hidden))}-10 on Fashion-MNIST, batch {sizes.mlp_batch}"
    return title, task, params, pool, reference, pool["x"].reshape(len(rows), -1)


def lm_case(sizes: Sizes, seed: int):
    """(title, ...): KJV windows; the reference set from the first chapters, the pool from the others."""
    from jdps.data import catalogue, text
    from jdps.models.transformer import transformer_lm_task

    if SYNTHETIC:   # random byte tokens in windows of the same length
        rng = np.random.default_rng(seed + 1)
        reference = rng.integers(3, text.VOCAB_SIZE, (sizes.lm_reference, sizes.lm_length)).astype(np.int32)
        rest = rng.integers(3, text.VOCAB_SIZE, (sizes.lm_pool, sizes.lm_length)).astype(np.int32)
    else:
        chapters = catalogue.load("kjv")
        reference = text.windows(chapters[:20], sizes.lm_length).arrays()["x"][:sizes.lm_reference]
        rest = text.windows(chapters[20:], sizes.lm_length).arrays()["x"]
    pool = rest[np.sort(np.random.default_rng(seed).choice(len(rest), sizes.lm_pool, replace=False))]
    histograms = np.stack([np.bincount(w, minlength=text.VOCAB_SIZE) for w in pool]).astype(np.float32)
    histograms /= histograms.sum(1, keepdims=True)
    task, params = transformer_lm_task(seed, vocab_size=text.VOCAB_SIZE, d_model=sizes.lm_d_model, n_heads=4,
                                       n_layers=sizes.lm_layers, max_len=sizes.lm_length)
    title = (f"transformer LM ({sizes.lm_layers} blocks, d_model {sizes.lm_d_model}, 4 heads, vocab "
             f"{text.VOCAB_SIZE}) on KJV, batch {sizes.lm_batch} x {sizes.lm_length} tokens")
    return title, task, params, {"x": pool}, {"x": reference}, histograms


def methods(sizes: Sizes, batch_size: int, mlp: bool, seed: int) -> dict[str, tuple[ih.IHVP, str]]:
    """name -> (iHVP method, its settings in words); exact only for the MLP (its output layer)."""
    out = {}
    if mlp:
        out["exact (output layer only)"] = (ih.exact(DAMPING), "eigh of the [p, p] GGN")
    out["cg"] = (ih.cg(DAMPING, maxiter=sizes.cg_maxiter), f"{sizes.cg_maxiter} iterations, full fit set each")
    out["lissa"] = (ih.lissa(DAMPING, seed, depth=sizes.lissa_depth, batch_size=batch_size),
                    f"depth {sizes.lissa_depth}, batch {batch_size}; scale by 20 power iterations")
    out["kfac"] = (ih.kfac(DAMPING, key=seed), "true Fisher, 1 sample")
    out["ekfac"] = (ih.ekfac(DAMPING, key=seed), "true Fisher, 1 sample; reads the data twice")
    out["identity (TracIn)"] = (ih.identity(), "no curvature")
    return {name: m for name, m in out.items() if METHODS is None or name.split()[0] in METHODS}


def batch_of(arrays: dict, rows) -> dict:
    """The rows `rows` of every array, with 'index', on the device."""
    out = {k: jnp.asarray(v[rows]) for k, v in arrays.items()}
    out["index"] = jnp.asarray(rows, jnp.int32)
    return out


def setup_and_scores(task, params, reference, pool, sizes: Sizes, batch_size: int, mlp: bool, seed: int):
    """Part 1: per method, fit / precondition / scores() rows and v (for the JVP rows)."""
    rows, vectors = [], {}
    first = batch_of(pool, np.arange(batch_size))
    dense = fa.dense_selection(task, params, first, None, "bench")[0]
    train = {k: v[:batch_size] for k, v in pool.items()}
    query = {k: v[:1] for k, v in reference.items()}
    n_fit = len(reference["x"])
    for name, (method, settings) in methods(sizes, batch_size, mlp, seed).items():
        filt = pf.last_layers(1) if name.startswith("exact") else dense
        fit_s, fit_c, fitted = timed(lambda m=method, f=filt: influence.fit(task, params, reference, ihvp=m,
                                                                            param_filter=f, batch_size=batch_size))
        pre_s, pre_c, v = timed(lambda f=fitted: influence.query_vector(f, reference, batch_size=batch_size))
        sc_s, sc_c, _ = timed(lambda f=fitted: influence.scores(f, query, train, batch_size=batch_size, chunk_size=64))
        eigh_s, eigh_one_s = eigh_seconds(fitted)
        p = sum(int(np.prod(leaf.shape)) for leaf in v.values())
        vectors[name] = v
        rows.append({"method": name, "settings": settings, "parameters": p, "fit_examples": n_fit,
                     "fit_reads_data": not name.startswith(("cg", "identity")),
                     "fit_s": fit_s, "fit_compile_s": fit_c, "eigh_s": eigh_s, "eigh_one_thread_s": eigh_one_s,
                     "precondition_s": pre_s, "precondition_compile_s": pre_c,
                     "scores_examples": batch_size, "scores_s": sc_s, "scores_compile_s": sc_c})
        print(f"  {name}: fit {fit_s:.2f} s ({fit_c:.2f} compile), precondition {pre_s:.2f} s ({pre_c:.2f}), "
              f"scores {sc_s:.2f} s ({sc_c:.2f})", flush=True)
    return rows, vectors, first


def eigh_seconds(fitted) -> tuple[float, float]:
    """The host float64 eigendecompositions of the fit (K-FAC/EK-FAC: every A and G; exact: C [p, p]) re-timed
    right after it, (with the default BLAS threads, with one BLAS thread); (nan, nan) for the other methods."""
    from threadpoolctl import threadpool_limits

    state = fitted.state
    if isinstance(state, dict) and state and all(isinstance(f, dict) and "qa" in f for f in state.values()):
        mats = [np.asarray(f[name], np.float64) for f in state.values() for name in ("a", "g")]
    elif isinstance(state, dict) and "q" in state:
        q = np.asarray(state["q"], np.float64)
        mats = [(q * np.asarray(state["s"], np.float64)) @ q.T]
    else:
        return float("nan"), float("nan")

    def clock():
        start = time.perf_counter()
        for m in mats:
            np.linalg.eigh(m)
        return time.perf_counter() - start

    default = clock()
    with threadpool_limits(1):
        return default, clock()


def jvp_ratios(task, params, vectors: dict, batch, rounds: int):
    """Part 1, JVP rows: median seconds and median per-round ratio to the forward pass, interleaved."""
    forward = jax.jit(task.loss_fn)
    jvp = jax.jit(influence.jvp_scores, static_argnums=0, static_argnames="normalize")
    thunks = {"forward": lambda: forward(params, batch)}
    for name, v in vectors.items():
        thunks[(name, False)] = lambda v=v: jvp(task, params, v, batch)
        thunks[(name, True)] = lambda v=v: jvp(task, params, v, batch, normalize=True)
    for thunk in thunks.values():  # compile and warm up
        jax.block_until_ready(thunk())
    times = {name: [] for name in thunks}
    for _ in range(rounds):
        for name, thunk in thunks.items():
            start = time.perf_counter()
            jax.block_until_ready(thunk())
            times[name].append(time.perf_counter() - start)
    base = times["forward"]
    out = {"forward_s": statistics.median(base), "rows": []}
    for name in vectors:
        row = {"method": name}
        for normalize, label in ((False, "jvp"), (True, "cosine")):
            t = times[(name, normalize)]
            row[f"{label}_s"] = statistics.median(t)
            row[f"{label}_x_forward"] = statistics.median([a / b for a, b in zip(t, base)])
        out["rows"].append(row)
    return out


def quad_vs_topk(task, params, pool, reference, embeddings, sizes: Sizes, batch_size: int, seed: int):
    """Part 2: top-k influence (every pool example scored) against quad.select, same curvature, v and score."""
    n = len(pool["x"])
    k = int(np.ceil(sizes.fraction * n))
    fit_s, fit_c, fitted = timed(lambda: influence.fit(task, params, reference, ihvp=ih.ekfac(DAMPING, key=seed),
                                                       batch_size=batch_size))
    pre_s, pre_c, _ = timed(lambda: influence.query_vector(fitted, reference, batch_size=batch_size))
    qs_s, qs_c, full = timed(lambda: influence.query_scores(fitted, reference, pool, normalize=True,
                                                            batch_size=batch_size))
    top = np.argsort(-full, kind="stable")[:k]
    qfit_s, qfit_c, state = timed(lambda: quad.fit(task, params, pool, reference, key=seed, embeddings=embeddings,
                                                   ihvp=ih.ekfac(DAMPING, key=seed), batch_size=batch_size))
    runs = []
    for key in range(sizes.quad_keys):
        s, c, sel = timed(lambda key=key: quad.select(state, key=key, fraction=sizes.fraction))
        info = sel.info
        runs.append({"key": key, "seconds": s, "compile_s": c, "scored": info["scored"], "rounds": info["rounds"],
                     "stop_reason": info["stop_reason"], "count": info["count"],
                     "clusters_covered": info["clusters_covered"], "mean_full_score": float(full[sel.indices].mean())})
        print(f"  quad key {key}: {s:.2f} s ({c:.2f} compile), scored {info['scored']} of {n}, "
              f"{info['rounds']} rounds, {info['stop_reason']}", flush=True)
    settings = {name: state_value for name, state_value in sel.info["settings"].items()}
    topk_scoring = qs_s - qs_c - (pre_s - pre_c)          # scoring every pool example, excl. v and compiles
    quad_scoring = statistics.median(r["seconds"] - r["compile_s"] for r in runs)
    scored = float(np.mean([r["scored"] for r in runs]))
    return {"pool": n, "budget": k, "n_clusters": len(state.clusters.centroids), "settings": settings,
            "ekfac_fit_s": fit_s, "ekfac_fit_compile_s": fit_c, "precondition_s": pre_s,
            "precondition_compile_s": pre_c, "query_scores_s": qs_s, "query_scores_compile_s": qs_c,
            "topk_scoring_s": topk_scoring, "quad_fit_s": qfit_s, "quad_fit_compile_s": qfit_c, "quad_runs": runs,
            "quad_select_s": quad_scoring, "quad_scored": scored, "fraction_scored": scored / n,
            "time_ratio": quad_scoring / topk_scoring, "topk_mean_full_score": float(full[top].mean()),
            "pool_mean_full_score": float(full.mean())}


def warm_up(task, params, pool, batch_size: int, seed: int):
    """One epoch of Adam(1e-3) on the pool (jdps.train), batch `batch_size`: the parameters scored."""
    from jdps.train import train

    return train(task, params, pool, key=seed, epochs=1, batch_size=batch_size).params


def run(sizes: Sizes, seed: int = 0) -> dict:
    results = {"load_start": os.getloadavg()[0], "models": []}
    cases = [(mlp_case(sizes, seed), sizes.mlp_batch, True)] if "mlp" in MODELS else []
    cases += [(lm_case(sizes, seed), sizes.lm_batch, False)] if "lm" in MODELS else []
    for (title, task, params, pool, reference, embeddings), batch_size, mlp in cases:
        print(title, flush=True)
        params = warm_up(task, params, pool, batch_size, seed)
        rows, vectors, batch = setup_and_scores(task, params, reference, pool, sizes, batch_size, mlp, seed)
        jvp = jvp_ratios(task, params, vectors, batch, sizes.jvp_rounds)
        print(f"  forward {jvp['forward_s'] * 1e3:.1f} ms; JVP x forward "
              f"{[round(r['jvp_x_forward'], 2) for r in jvp['rows']]}", flush=True)
        q = quad_vs_topk(task, params, pool, reference, embeddings, sizes, batch_size, seed)
        head = pf.select(pf.last_layers(1), params, loss_fn=task.loss_fn, batch=batch)
        results["models"].append({"title": title, "mlp": mlp, "batch": batch_size, "setup": rows, "jvp": jvp,
                                  "quad": q, "head_parameters": sum(pf.take(params, head)[p].size for p in head)})
    results["load_end"] = os.getloadavg()[0]
    return results


def _rate(n: int, wall: float, compile_s: float) -> str:
    """n / (wall - compile) as examples/s; '-' when nothing is left after the compilation."""
    net = wall - compile_s
    return f"{n / net:,.0f}" if net > 1e-3 else "-"


def _pair(a: float, b: float) -> str:
    """'a, b' in seconds; '-' when not measured."""
    return "-" if np.isnan(a) else f"{a:.2f}, {b:.2f}"


def report(results: dict, command: str, machine: str, sizes: Sizes) -> str:
    lines = ["# Cost of influence scoring per iHVP method, and of Quad against top-k influence", "",
             f"Command: `{command}`  ",
             (f"Machine: {machine}; 1-minute load average {results['load_start']:.1f} at the start and "
             f"{results['load_end']:.1f} at the end (the machine is shared); all figures from this one run."), "",
             (f"Influence w.r.t. the Dense layers, damping {DAMPING} (about 1e-3 x the largest curvature "
              "eigenvalue: the paper's absolute 1e-3 is rejected as singular by the EK-FAC and exact checks on "
              "the trained MLP's output layer; cost does not depend on it), GGN curvature fitted on the reference set; each "
              "model first trains one epoch on its pool. Setup rows are one call each: wall seconds, and the "
              "seconds of it spent tracing and compiling (the library compiles some steps afresh on every "
              "call, so a user pays them too); rates exclude compilation. Host eigh: the fit's float64 "
              "eigendecompositions re-timed alone right after it, with the default OpenBLAS threads and with one "
              "thread. JVP rows: median over interleaved rounds of the per-round ratio to the forward pass `jit(task.loss_fn)` on the same batch."), ""]
    verdicts = []
    for m in results["models"]:
        lines += [f"## {m['title']}", "", "### Setup: fit, precondition, per-example-gradient scores", "",
                  f"Fit set: the {m['setup'][0]['fit_examples']} reference examples. `scores`: one query example "
                  f"against one batch of {m['batch']} pool examples (per-example gradients by vmap(grad), the "
                  "query's gradient and its solve). cg and identity do no work at fit time (cg's is in its "
                  "solve); exact on the MLP covers its output layer only"
                  + ("" if m["mlp"] else f"; no transformer layer is small enough for it (the head alone has "
                     f"{m['head_parameters']:,} parameters; exact takes at most {ih.MAX_EXACT:,}), so it is left "
                     "out") + ".", "",
                  ("| method | settings | p | fit s (compile) | fit examples/s | host eigh s: BLAS threads, 1 thread | "
                   "precondition s (compile) | scores s (compile) | scores examples/s |"),
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in m["setup"]:
            lines.append(
                f"| {r['method']} | {r['settings']} | {r['parameters']:,} | {r['fit_s']:.2f} ({r['fit_compile_s']:.2f}) | "
                f"{_rate(r['fit_examples'], r['fit_s'], r['fit_compile_s']) if r['fit_reads_data'] else '-'} | "
                f"{_pair(r['eigh_s'], r['eigh_one_thread_s'])} | {r['precondition_s']:.2f} "
                f"({r['precondition_compile_s']:.2f}) | {r['scores_s']:.2f} ({r['scores_compile_s']:.2f}) | "
                f"{_rate(r['scores_examples'], r['scores_s'], r['scores_compile_s'])} |")
        j = m["jvp"]
        fwd = j["forward_s"]
        lines += ["", "### Scoring by one JVP along the preconditioned vector", "",
                  f"Forward pass over the batch: {fwd * 1e3:.1f} ms ({m['batch'] / fwd:,.0f} examples/s).", "",
                  "| method | JVP ms | JVP examples/s | JVP x forward | cosine (JVP + ghost norms) ms | cosine x forward |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in j["rows"]:
            lines.append(f"| {r['method']} | {r['jvp_s'] * 1e3:.1f} | {m['batch'] / r['jvp_s']:,.0f} | "
                         f"{r['jvp_x_forward']:.2f} | {r['cosine_s'] * 1e3:.1f} | {r['cosine_x_forward']:.2f} |")
        worst = max(r["jvp_x_forward"] for r in j["rows"])
        worst_cos = max(r["cosine_x_forward"] for r in j["rows"])
        verdicts.append((m["title"].split(" on ")[0], worst, worst_cos))
        q = m["quad"]
        lines += ["", (f"### Quad against top-k influence: pool {q['pool']:,}, budget {q['budget']:,} "
                  f"({sizes.fraction:.0%})"), "",
                  (f"Shared: EK-FAC fit on the reference set {q['ekfac_fit_s']:.2f} s ({q['ekfac_fit_compile_s']:.2f} "
                   f"compile), v {q['precondition_s']:.2f} s ({q['precondition_compile_s']:.2f}). Quad's fit (the same "
                   f"curvature and v, plus k-means into {q['n_clusters']} clusters) {q['quad_fit_s']:.2f} s "
                   f"({q['quad_fit_compile_s']:.2f} compile). Quad settings (scaled defaults): "
                   f"{q['settings']['clusters_per_round']} cluster(s) a round, {q['settings']['samples_per_pull']} "
                   f"samples a pull, blocks of {q['settings']['block_size']}, tau {q['settings']['tau']}, at most "
                   f"{q['settings']['max_rounds']} rounds. Score: the cosine (one JVP + ghost norms) for both. "
                   "Mean score: the mean cosine of the selection under top-k's full scoring."), "",
                  ("| selector | scoring s (excl. compile) | compile s | examples scored | fraction of pool | "
                  "rounds | mean score of selection |"), "|---|---:|---:|---:|---:|---:|---:|",
                  (f"| top-k influence (query_scores) | {q['topk_scoring_s']:.2f} | {q['query_scores_compile_s']:.2f} | "
                  f"{q['pool']:,} | 1.000 | - | {q['topk_mean_full_score']:.4f} |")]
        for r in q["quad_runs"]:
            lines.append(f"| quad.select, key {r['key']} ({r['stop_reason']}) | {r['seconds'] - r['compile_s']:.2f} | "
                         f"{r['compile_s']:.2f} | {r['scored']:,} | {r['scored'] / q['pool']:.3f} | {r['rounds']} | "
                         f"{r['mean_full_score']:.4f} |")
        lines += ["", (f"Quad's scoring cost as a fraction of top-k's: **{q['time_ratio']:.2f}** in wall time "
                       f"(median over keys), **{q['fraction_scored']:.3f}** in examples scored; the pool's mean "
                       f"score is {q['pool_mean_full_score']:.4f}."), ""]
    lines += ["## Goal: JVP scoring within 3x of a forward pass", "",
              "| model | worst JVP x forward over methods | goal <= 3 | worst cosine x forward |", "|---|---:|---|---:|"]
    lines += [f"| {t} | {w:.2f} | {'met' if w <= 3 else 'not met'} | {c:.2f} |" for t, w, c in verdicts]
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny models and sets: a smoke run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT), help="output path without suffix (.md and .json)")
    ap.add_argument("--synthetic", action="store_true", help="random inputs of the datasets' shapes instead of "
                    "Fashion-MNIST and KJV (a machine without the data: the costs do not depend on the values)")
    ap.add_argument("--methods", help="comma-separated iHVP methods to time (exact, cg, lissa, kfac, ekfac, "
                    "identity; default: all)")
    ap.add_argument("--models", default="mlp,lm", help="comma-separated: mlp, lm")
    args = ap.parse_args(argv)
    global SYNTHETIC, METHODS, MODELS
    SYNTHETIC = args.synthetic
    METHODS = None if args.methods is None else tuple(args.methods.split(","))
    MODELS = tuple(args.models.split(","))
    argv = sys.argv[1:] if argv is None else argv
    sizes = QUICK if args.quick else Sizes()
    jax.monitoring.register_event_duration_secs_listener(_on_event)
    results = run(sizes, args.seed)
    command = "PYTHONPATH=. python " + shlex.join(["scripts/bench_influence.py", *argv])
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__} "
               f"on {jax.devices()[0].platform}")
    text = report(results, command, machine, sizes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    payload = {"command": command, "machine": machine, "sizes": sizes.__dict__, **results}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=str) + "\n")
    print(text)
    return results


if __name__ == "__main__":
    main()
