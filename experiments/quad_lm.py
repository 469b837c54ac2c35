"""Quad experiment: pretraining-data selection for the small causal transformer LM.

From a pool of byte windows of several text domains, with planted low-quality windows, each method selects
10% and 25% of the pool; a fresh LM trains on each subset with one token budget; we report its validation
loss on a target mix and on every domain, the share of the pool each method had to score and how many of
Quad's k-means clusters each selection covers.

Data, per seed s (numpy Generator of seed s): the domains `kjv` (one document per chapter), the Brown
genres "press: reportage", "learned", "fiction: general", "fiction: romance" and SpamAssassin's "ham" and
"spam" (subject + body). Each domain's documents are shuffled; the first max(4, 5%) are validation
documents; in the target mix (kjv, "fiction: general", "fiction: romance") the next max(3, 3%) are
reference documents; the rest are pool documents, so pool, reference and validation share no document.
Documents are cut into windows of 64 byte tokens (`jdps.data.text.windows`). The pool holds
`pool_per_domain` (400) random windows of each domain's pool documents, kind "clean", and three kinds of
low-quality windows (the `kind` column, recorded for every window):

    header     `n_header` (150) windows of raw mail header blocks (SpamAssassin with headers=True; the
               domain is the mail's, ham or spam)
    duplicate  `dup_sources` (30) random clean pool windows copied `dup_copies` (5) times each; the copies
               are "duplicate", the originals stay "clean"
    shuffled   `n_shuffled` (150) further windows of the pool documents with their words put in a random
               order (`shuffle_words`; the domain is the source's)

N = 7 * 400 + 150 + 150 + 150 = 3,250 windows. The reference set is `ref_per_domain` (40) windows of the
reference documents of each target domain (120); validation is `val_per_domain` (200) windows of the
validation documents of every domain; the "reference-mix" loss is the mean over the three target domains'
validation windows (equal counts, the reference set's mix).

Proxy (seed s): the transformer LM (d_model 32, 2 layers, 2 heads, max_len 64) warmed up on the whole pool
for `warmup_epochs` (3) epochs of Adam(1e-3), batch 32; the parameters after each epoch are the checkpoints
(TracIn, GTP), the last ones the parameters of influence, Quad and the perplexity filter.

Selectors (k = ceil(f N) for f in 10%, 25%; weight 1 unless said):

    random      k windows uniformly (seed s)
    perplexity  the k windows of lowest per-window loss (nats per byte) under the proxy
    tracin      top-k of sum_t eta_t grad l(z; theta_t) . grad L(Q; theta_t) over the 3 checkpoints
                (`jdps.influence.tracin`, eta_t = 1e-3)
    influence   top-k of the EK-FAC influence cosine g_z . v / (|g_z| |v|), v = (C + 1e-3 I)^{-1} grad L(Q), C
                the EK-FAC curvature of the reference set (`jdps.influence.query_scores(normalize=True)`):
                Quad's own score on every window (fraction scored 1)
    quad        `jdps.quad` (curvature and v as for influence, the same EK-FAC key) on the MiniLM embeddings
                (`jdps.models.minilm`) of the windows decoded as text, the scaled defaults of jdps.quad
                (K = round(sqrt N) = 57 clusters, 1 cluster a round, 10 samples a pull, blocks of
                ceil(N / 4K), alpha 1e-4, tau 0.002, radius 0.2, block acceptance)
    quad-explore  the same with alpha = 0.01 (EXPLORE_ALPHA): an exploration bonus about the spread of the
                cosine rewards on this pool (pool cosines: std about 0.03), where the paper's 1e-4 makes the
                bandit keep pulling the first clusters with a positive reward (an ablation, not tuned further)
    gtp         `jdps.gtp` (factored trajectory features of the 3 checkpoints, d = 256 each, target = the
                reference set's mean trajectory), non-negative OMP with its weights; OMP stops at most at
                the rank Td = 768 or when no correlation is positive, so it may hold fewer than k windows
    full        the whole pool (a reference row)

Cluster coverage is the number of Quad's clusters (the same k-means of the same embeddings) holding at
least one selected window. The fraction scored is the share of pool windows whose selection score was
computed (Quad: `info['fraction_scored']`; random: 0; every other selector scores every window, TracIn
and GTP once per checkpoint).

Training: a fresh LM (seed s + 1000) trains for `steps` (600) Adam(1e-3) steps of batch 32 on each subset
(the same 19,200 windows for every method, so a 10% subset is seen about 6 times as often as the full
pool; GTP's windows by their weights, self-normalised per batch), then its mean next-token loss (nats
per byte) on each domain's validation windows is reported, mean ± std over seeds.

    python experiments/quad_lm.py                    # 3 seeds
    python experiments/quad_lm.py --seeds 0 --demo   # a small, quick run

writes `<out>.md`, `<out>.json` and `<out>.png` (reference-mix loss per method at 10% and 25%); `--out`
defaults to experiments/results/quad_lm.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.common import command_line, markdown_table, mean_std, write_report

METHODS = ("random", "perplexity", "tracin", "influence", "quad", "quad-explore", "gtp")
EXPLORE_ALPHA = 0.01   # quad-explore's UCB constant: about the spread of the cosine rewards here
KINDS = ("clean", "header", "duplicate", "shuffled")
OUT = Path(__file__).resolve().parent / "results" / "quad_lm"


@dataclass(frozen=True)
class Setup:
    """Domains, the target mix, window counts, the low-quality windows, the models and the budget."""

    domains: tuple[str, ...] = ("kjv", "press: reportage", "learned", "fiction: general", "fiction: romance",
                                "ham", "spam")
    target: tuple[str, ...] = ("kjv", "fiction: general", "fiction: romance")
    length: int = 64
    pool_per_domain: int = 400
    ref_per_domain: int = 40
    val_per_domain: int = 200
    n_header: int = 150
    dup_sources: int = 30
    dup_copies: int = 5
    n_shuffled: int = 150
    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 2
    warmup_epochs: int = 3
    gtp_d: int = 256
    steps: int = 600
    batch_size: int = 32
    lr: float = 1e-3


DEMO = Setup(pool_per_domain=60, ref_per_domain=16, val_per_domain=40, n_header=20, dup_sources=5,
             dup_copies=4, n_shuffled=20, warmup_epochs=2, gtp_d=64, steps=40, batch_size=16)


# --- pure helpers --------------------------------------------------------------------------------------

def shuffle_words(tokens, length: int, rng: np.random.Generator) -> np.ndarray:
    """A window's words in a random order: int32 [length], the bytes of the window's text (PAD, BOS, EOS
    dropped) split on whitespace, permuted by `rng`, joined by single spaces, re-encoded (byte + OFFSET)
    and cut or PAD-padded to `length`."""
    from jdps.data.text import OFFSET, decode
    from jdps.losses import PAD_ID

    words = decode(tokens).split()
    text = " ".join(words[i] for i in rng.permutation(len(words)))
    body = np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)[:length] + OFFSET
    out = np.full(length, PAD_ID, np.int32)
    out[:len(body)] = body
    return out


def header_block(raw: str) -> str:
    """The header block of a raw mail: everything before its first blank line."""
    return raw.partition("\n\n")[0]


def duplicate_rows(n: int, sources: int, copies: int, rng: np.random.Generator) -> np.ndarray:
    """Rows to copy: `sources` distinct rows of [0, n) drawn by `rng`, each repeated `copies` times ->
    int [sources * copies], sorted."""
    return np.repeat(np.sort(rng.choice(n, sources, replace=False)), copies)


def split_documents(n_docs: int, target: bool, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(validation, reference, pool) document positions of a domain of n_docs documents: a random order,
    the first max(4, 5%) to validation, then (target domains only) max(3, 3%) to reference, the rest to
    the pool."""
    order = rng.permutation(n_docs)
    n_val = max(4, math.ceil(0.05 * n_docs))
    n_ref = max(3, math.ceil(0.03 * n_docs)) if target else 0
    return order[:n_val], order[n_val:n_val + n_ref], order[n_val + n_ref:]


def repeat_to(indices, total: int, rng: np.random.Generator) -> np.ndarray:
    """`total` rows drawn from `indices` as evenly as possible: whole random permutations of them,
    concatenated and cut to `total` (each row appears floor or ceil of total / k times)."""
    idx = np.asarray(indices)
    reps = math.ceil(total / len(idx))
    return np.concatenate([rng.permutation(idx) for _ in range(reps)])[:total]


def coverage(labels, indices) -> int:
    """The number of clusters (labels [N]) with at least one of the rows `indices`."""
    return len(np.unique(np.asarray(labels)[np.asarray(indices, np.int64)]))


# --- data ----------------------------------------------------------------------------------------------

def _sample(x: np.ndarray, k: int, rng: np.random.Generator, what: str) -> np.ndarray:
    from jdps.errors import InputError

    if len(x) < k:
        raise InputError(f"only {len(x)} {what} windows, {k} asked; ask for fewer")
    return np.sort(rng.choice(len(x), k, replace=False))


def make_data(setup: Setup, seed: int) -> dict:
    """One seed's windows: pool x [N, L] with `domain` [N] (index into setup.domains) and `kind` [N] (index
    into KINDS), the reference set x [R, L], and the validation windows of every domain {name: x [V, L]}."""
    from experiments.bads_text import corpus
    from jdps.data.catalogue import load
    from jdps.data.text import windows

    rng = np.random.default_rng(seed)
    docs = corpus(setup.domains)
    by_domain = {d: [doc for doc in docs if doc.domain == d] for d in setup.domains}
    pool_x, val, ref = [], {}, []
    pool_docs = []
    for g, d in enumerate(setup.domains):
        v, r, p = split_documents(len(by_domain[d]), d in setup.target, rng)
        w = lambda pos, d=d: windows([by_domain[d][i] for i in pos], setup.length).x
        val[d] = (x := w(v))[_sample(x, setup.val_per_domain, rng, f"{d} validation")]
        if d in setup.target:
            ref.append((x := w(r))[_sample(x, setup.ref_per_domain, rng, f"{d} reference")])
        x = w(p)
        chosen = _sample(x, setup.pool_per_domain + setup.n_shuffled, rng, f"{d} pool")
        pool_x.append(x[chosen[rng.permutation(len(chosen))]])
        pool_docs.append({by_domain[d][i].doc_id for i in p})
    # clean windows, and the spare windows from which shuffled ones are made
    clean = np.concatenate([x[:setup.pool_per_domain] for x in pool_x])
    clean_dom = np.repeat(np.arange(len(setup.domains)), setup.pool_per_domain)
    spare = np.concatenate([x[setup.pool_per_domain:] for x in pool_x])
    spare_dom = np.repeat(np.arange(len(setup.domains)), setup.n_shuffled)
    pick = _sample(spare, setup.n_shuffled, rng, "spare")
    shuffled = np.stack([shuffle_words(t, setup.length, rng) for t in spare[pick]])
    dup = duplicate_rows(len(clean), setup.dup_sources, setup.dup_copies, rng)
    # mail headers of pool mails
    mail_pool = set().union(*(pool_docs[setup.domains.index(d)] for d in ("ham", "spam") if d in setup.domains))
    raw = [dataclasses.replace(m, text=header_block(m.text)) for m in load("spam_assassin", headers=True)
           if m.doc_id in mail_pool or not mail_pool]
    heads = windows(raw, setup.length, domain_names=["ham", "spam"])
    hpick = _sample(heads.x, setup.n_header, rng, "mail header")
    head_dom = np.array([setup.domains.index(n) if n in setup.domains else 0 for n in
                         np.array(heads.info.domain_names)[heads.columns["domain"][hpick]]])
    x = np.concatenate([clean, heads.x[hpick], clean[dup], shuffled]).astype(np.int32)
    domain = np.concatenate([clean_dom, head_dom, clean_dom[dup], spare_dom[pick]])
    kind = np.repeat(np.arange(4), [len(clean), setup.n_header, len(dup), setup.n_shuffled])
    return {"x": x, "domain": domain, "kind": kind, "reference": np.concatenate(ref).astype(np.int32),
            "validation": val, "source": np.concatenate([np.arange(len(clean)), np.full(setup.n_header, -1),
                                                         dup, np.full(setup.n_shuffled, -1)])}


# --- models --------------------------------------------------------------------------------------------

@functools.cache
def adam(lr: float):
    """One optax.adam per learning rate, so `jdps.train.train` compiles its epoch once."""
    import optax

    return optax.adam(lr)


def lm(setup: Setup, seed: int):
    from jdps.data.text import VOCAB_SIZE
    from jdps.models.transformer import transformer_lm_task

    return transformer_lm_task(seed, VOCAB_SIZE, d_model=setup.d_model, n_heads=setup.n_heads,
                               n_layers=setup.n_layers, max_len=setup.length)


def train_subset(task, init, pool_x, idx, w, setup: Setup, seed: int):
    """Parameters after `setup.steps` Adam steps of batch `setup.batch_size` on the rows idx of pool_x
    (each row floor or ceil of steps * batch / k times), weights w (self-normalised per batch)."""
    from jdps.train import train

    n = len(pool_x)
    weights = np.zeros(n, np.float32)
    weights[np.asarray(idx)] = w
    rows = repeat_to(idx, setup.steps * setup.batch_size, np.random.default_rng(seed))
    return train(task, init, {"x": pool_x}, key=seed, epochs=1, batch_size=setup.batch_size,
                 optimizer=adam(setup.lr), indices=rows, weights=weights, normalize="weights").params


def validation_losses(task, params, validation: dict, target) -> dict:
    """{domain: mean next-token loss} over every domain's validation windows, and 'reference mix': the
    mean over the target domains' windows (equal counts)."""
    from jdps.train import per_example_losses

    losses = {d: per_example_losses(task, params, {"x": x}) for d, x in validation.items()}
    out = {d: float(v.mean()) for d, v in losses.items()}
    out["reference mix"] = float(np.concatenate([losses[d] for d in target]).mean())
    return out


# --- one seed ------------------------------------------------------------------------------------------

def select_all(data: dict, setup: Setup, seed: int, fractions, methods, log=print) -> tuple[dict, dict]:
    """Every selector at every fraction -> ({(method, fraction): (indices, weights, info)}, timings)."""
    import jax

    from jdps import gtp, influence, quad
    from jdps.influence import ihvp as ih
    from jdps.data.text import decode
    from jdps.models.minilm import MiniLM
    from jdps.train import per_example_losses, train

    pool, ref = {"x": data["x"]}, {"x": data["reference"]}
    n = len(pool["x"])
    task, params = lm(setup, seed)
    times, t = {}, time.perf_counter()
    checkpoints, p = [], params
    for epoch in range(setup.warmup_epochs):
        p = train(task, p, pool, key=seed * 100 + epoch, epochs=1, batch_size=32,
                  optimizer=adam(setup.lr)).params
        checkpoints.append(p)
    proxy = checkpoints[-1]
    times["warmup"] = time.perf_counter() - t
    log(f"[seed {seed}] proxy warm-up {times['warmup']:.0f}s")

    t = time.perf_counter()
    embeddings = MiniLM.load().encode([decode(row) for row in pool["x"]])
    times["minilm"] = time.perf_counter() - t
    key = jax.random.key(seed)
    k_fit, k_select, k_fisher = (jax.random.fold_in(key, i) for i in range(3))
    t = time.perf_counter()
    state = quad.fit(task, proxy, pool, ref, key=k_fit, embeddings=embeddings, ihvp=ih.ekfac(1e-3, key=k_fisher))
    times["quad_fit"] = time.perf_counter() - t
    log(f"[seed {seed}] MiniLM {times['minilm']:.0f}s, quad.fit {times['quad_fit']:.0f}s, "
        f"K = {len(state.clusters.centroids)}")

    scores = {}
    if "influence" in methods:
        t = time.perf_counter()
        fitted = influence.fit(task, proxy, ref, ihvp=ih.ekfac(1e-3, key=k_fisher))
        scores["influence"] = influence.query_scores(fitted, ref, pool, normalize=True)
        times["influence"] = time.perf_counter() - t
    if "tracin" in methods:
        t = time.perf_counter()
        scores["tracin"] = influence.tracin(task, checkpoints, [setup.lr] * len(checkpoints), ref, pool)
        times["tracin"] = time.perf_counter() - t
    if "perplexity" in methods:
        scores["perplexity"] = -per_example_losses(task, proxy, pool)
    if "gtp" in methods:
        t = time.perf_counter()
        gtp_state = gtp.fit(task, checkpoints, pool, d=setup.gtp_d, key=seed, target_data=ref, method="factored")
        times["gtp_fit"] = time.perf_counter() - t
    summary = {}
    if "influence" in methods:
        s, kind, dom = scores["influence"], data["kind"], data["domain"]
        summary = {"kinds": {kd: float(s[kind == i].mean()) for i, kd in enumerate(KINDS)},
                   "clean domains": {d: float(s[(kind == 0) & (dom == g)].mean()) for g, d in enumerate(setup.domains)}}
    log(f"[seed {seed}] scores: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))

    out = {}
    for f in fractions:
        k = math.ceil(f * n)
        for m in methods:
            t = time.perf_counter()
            if m == "random":
                idx = np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
                w, info = np.ones(k), {"fraction_scored": 0.0}
            elif m in scores:
                idx = np.argsort(-scores[m], kind="stable")[:k]
                w, info = np.ones(k), {"fraction_scored": 1.0}
            elif m in ("quad", "quad-explore"):
                sel = quad.select(state, key=k_select, fraction=f, alpha=EXPLORE_ALPHA if m == "quad-explore" else None)
                idx, w = np.asarray(sel.indices), np.asarray(sel.weights)
                info = {key_: sel.info[key_] for key_ in ("fraction_scored", "clusters_pulled", "rounds",
                                                          "stop_reason")}
                info["settings"] = {key_: v for key_, v in sel.info["settings"].items()}
            else:
                sel = gtp.select(gtp_state, budget=k, method="omp")
                idx, w = np.asarray(sel.indices), np.asarray(sel.weights)
                info = {"fraction_scored": 1.0, "stop_reason": sel.info["stop_reason"],
                        "relative_residual": float(sel.info["relative_residual"])}
            info["select_s"] = time.perf_counter() - t
            info["clusters_covered"] = coverage(state.clusters.labels, idx)
            out[(m, f)] = (idx, w, info)
    return out, {"times": times, "n_clusters": len(state.clusters.centroids), "labels": state.clusters.labels,
                 "influence_cosine_means": summary}


def run(seed: int, fractions, methods, setup: Setup, log=print) -> list[dict]:
    """One record per method and fraction (and `full`) for one seed."""
    t0 = time.perf_counter()
    data = make_data(setup, seed)
    n = len(data["x"])
    log(f"[seed {seed}] pool {n} windows (kinds {np.bincount(data['kind'], minlength=4).tolist()}), "
        f"reference {len(data['reference'])}, validation {sum(len(v) for v in data['validation'].values())}")
    selections, meta = select_all(data, setup, seed, fractions, methods, log)
    task, init = lm(setup, seed + 1000)
    jobs = [("full", 1.0, np.arange(n), np.ones(n), {"fraction_scored": 0.0})]
    jobs += [(m, f, *selections[(m, f)]) for f in fractions for m in methods]
    records = []
    for m, f, idx, w, info in jobs:
        t = time.perf_counter()
        params = train_subset(task, init, data["x"], idx, w, setup, seed)
        losses = validation_losses(task, params, data["validation"], setup.target)
        kinds = np.bincount(data["kind"][idx], minlength=len(KINDS))
        doms = np.bincount(data["domain"][idx], minlength=len(setup.domains))
        rec = {"seed": seed, "method": m, "fraction": f, "k": math.ceil(f * n), "count": len(idx),
               "loss": losses, "fraction_scored": info["fraction_scored"],
               "clusters_covered": coverage(meta["labels"], idx), "n_clusters": meta["n_clusters"],
               "kinds": dict(zip(KINDS, kinds.tolist())), "domains": dict(zip(setup.domains, doms.tolist())),
               "target_share": float(np.isin(data["domain"][idx], [setup.domains.index(d) for d in setup.target])
                                     [data["kind"][idx] == 0].sum() / len(idx)),
               "info": {k: v for k, v in info.items() if k != "clusters_covered"}, "train_s": time.perf_counter() - t}
        records.append(rec)
        log(f"[seed {seed}] {m:10s} {100 * f:5.1f}%  count {len(idx):5d}  ref-mix {losses['reference mix']:.3f}  "
            f"scored {info['fraction_scored']:.3f}  clusters {rec['clusters_covered']}/{meta['n_clusters']}  "
            f"low-quality {kinds[1:].tolist()}  ({rec['train_s']:.0f}s)")
    for r in records:
        r["times"] = meta["times"]
    records[0]["influence_cosine_means"] = meta["influence_cosine_means"]
    log(f"[seed {seed}] done in {time.perf_counter() - t0:.0f}s")
    return records


# --- report --------------------------------------------------------------------------------------------

def table(records, setup: Setup, command: str) -> str:
    """The main table (reference-mix loss, fraction scored, coverage, low-quality picks), the per-domain
    losses and the timings."""
    seeds = sorted({r["seed"] for r in records})
    fractions = sorted({r["fraction"] for r in records if r["method"] != "full"})
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    rows_of = lambda m, f: [r for r in records if r["method"] == m and (m == "full" or r["fraction"] == f)]
    order = [("full", 1.0)] + [(m, f) for f in fractions for m in methods]
    n = records[0]["count"] if records[0]["method"] == "full" else "?"

    main = []
    for m, f in order:
        rs = rows_of(m, f)
        main.append([m, "100%" if m == "full" else f"{100 * f:g}%", mean_std([r["count"] for r in rs], 1, 0),
                     mean_std([r["loss"]["reference mix"] for r in rs], 1, 3),
                     mean_std([r["fraction_scored"] for r in rs], 100, 1),
                     mean_std([r["clusters_covered"] for r in rs], 1, 1),
                     mean_std([r["target_share"] for r in rs], 100, 1)]
                    + [mean_std([r["kinds"][kd] for r in rs], 1, 1) for kd in KINDS[1:]])
    header = ["method", "fraction", "windows", "reference-mix loss", "% of pool scored",
              f"clusters covered (of {records[0]['n_clusters']})", "% clean target-domain",
              "header", "duplicate", "shuffled"]
    doms = list(setup.domains)
    per_domain = [[m, "100%" if m == "full" else f"{100 * f:g}%"]
                  + [mean_std([r["loss"][d] for r in rows_of(m, f)], 1, 3) for d in doms] for m, f in order]
    times = {}
    for r in records:
        for k, v in r["times"].items():
            times.setdefault(k, {})[r["seed"]] = v
    time_row = [[k, mean_std(list(v.values()), 1, 0)] for k, v in times.items()]
    return "\n".join([
        "# Quad experiment: pretraining-data selection for the small LM", "",
        f"Command: `{command}`  ", f"Seeds: {seeds} ({len(seeds)}); pool N = {n} windows; setup: {asdict(setup)}.", "",
        ("Validation loss (nats per byte, lower is better) on the reference mix (KJV + Brown fiction: general + "
         "fiction: romance, held-out documents), mean ± std over seeds; the share of the pool each selector "
         "scored; the k-means clusters (Quad's) a selection covers; the share of clean target-domain windows "
         "in it; the low-quality windows it holds (the pool has "
         f"{setup.n_header} header, {setup.dup_sources * setup.dup_copies} duplicate and {setup.n_shuffled} "
         "shuffled windows):"), "",
        markdown_table(header, main), "",
        "Validation loss (nats per byte) per domain, mean ± std over seeds:", "",
        markdown_table(["method", "fraction"] + doms, per_domain), "",
        ("Seconds (mean ± std over seeds; 2 shared CPU cores) of the proxy warm-up, the MiniLM embeddings, "
         "quad.fit (EK-FAC on the reference set, v, k-means) and the full scoring passes:"), "",
        markdown_table(["step", "seconds"], time_row), ""])


def figure(records, path: Path) -> None:
    """Bars: the reference-mix loss per method at each fraction (mean ± std), the full pool as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fractions = sorted({r["fraction"] for r in records if r["method"] != "full"})
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / len(fractions)
    for j, f in enumerate(fractions):
        v = [np.array([r["loss"]["reference mix"] for r in records if r["method"] == m and r["fraction"] == f])
             for m in methods]
        ax.bar(np.arange(len(methods)) + (j - (len(fractions) - 1) / 2) * width, [a.mean() for a in v], width,
               yerr=[a.std() for a in v], capsize=3, label=f"{100 * f:g}% of the pool")
    full = [r["loss"]["reference mix"] for r in records if r["method"] == "full"]
    if full:
        ax.axhline(np.mean(full), color="k", ls="--", lw=1, label="full pool")
    lo = min(np.mean(full) if full else np.inf,
             min(r["loss"]["reference mix"] for r in records)) - 0.1
    ax.set_ylim(bottom=max(0.0, lo))
    ax.set_xticks(np.arange(len(methods)), methods)
    ax.set_ylabel("reference-mix validation loss\n(nats per byte)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--demo", action="store_true", help="a small pool and budget (a quick check)")
    parser.add_argument("--out", type=Path, default=OUT, help="path stem of the .md, .json and .png files")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    setup = DEMO if args.demo else Setup()
    records, report = [], ""
    for seed in args.seeds:
        records += run(seed, args.fractions, args.methods, setup)
        report = table(records, setup, command_line("experiments/quad_lm.py", argv))
        write_report(args.out, report, {"setup": asdict(setup), "records": records})
        figure(records, args.out.parent / f"{args.out.name}.png")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
