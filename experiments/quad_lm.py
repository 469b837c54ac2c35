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
for `warmup_epochs` (3) epochs of Adam(1e-3), batch 32 (`experiments.common.warmup_checkpoints`); the
parameters after each epoch are the checkpoints (TracIn, GTP), the last ones the parameters of influence,
Quad and the perplexity filter.

Selectors (k = ceil(f N) for f in 10%, 25%; weight 1 unless said), each but the perplexity filter run
through `jdps.selectors` (`experiments.common.fit_selector`), with the jax keys k_fit = fold_in(key(s), 0)
and k_select = fold_in(key(s), 1):

    random      k windows uniformly (the selector `random`, key s)
    perplexity  the k windows of lowest per-window loss (nats per byte) under the proxy
    tracin      top-k of sum_t eta_t grad l(z; theta_t) . grad L(Q; theta_t) over the 3 checkpoints
                (`jdps.influence.tracin`, eta_t = 1e-3)
    influence   top-k of the EK-FAC influence cosine g_z . v / (|g_z| |v|), v = (C + 1e-3 I)^{-1} grad L(Q), C
                the EK-FAC curvature of the reference set (the selector `influence`, curvature_on
                'reference', normalize): Quad's own score on every window (fraction scored 1)
    quad        `jdps.quad` (curvature and v as for influence, the same EK-FAC key split(k_fit)[1]; k-means
                from split(k_fit)[0]; the bandit from k_select) on the MiniLM embeddings
                (`jdps.models.minilm`) of the windows decoded as text, with jdps.quad's defaults (K = round(sqrt N)
                = 57 clusters, 1 cluster a round, rewards standardised by the running spread of the scores,
                alpha 1, blocks a share k / (2N) of each cluster with half of each scored, tau 0.002, radius 0.2,
                hybrid acceptance)
    quad-paper  the same with the paper's absolute rewards and scaled values (reward='absolute': alpha 1e-4,
                blocks of ceil(N / 4K), 10 samples a pull, block acceptance): the earlier default
    quad-explore  quad-paper with alpha = 0.01 (EXPLORE_ALPHA)
    quad-random-arms  quad with the clusters pulled uniformly at random instead of by UCB (no bandit)
    quad-diversity  quad with nothing scored and every block accepted (no influence: diversity only)
    quad-no-share  quad with radius 0 (no reward shared with neighbouring clusters)
    quad-topk-in-clusters  as many windows from each cluster as quad's selection holds there, the ones of
                highest influence cosine (every window scored): top-k influence within Quad's clusters
    gtp         `jdps.gtp` (factored trajectory features of the 3 checkpoints, d = 256 each, rows not
                normalised (the earlier default), target = the
                reference set's mean trajectory), non-negative OMP with its weights; OMP stops at most at
                the rank Td = 768 or when no correlation is positive, so it may hold fewer than k windows
    gtp-fill    the same with fill='pursuit': further OMP passes over the windows not chosen, each fitting
                the target with the budget left, until k (the passes' weights mixed by their atom shares)
    full        the whole pool (a reference row)

Cluster coverage is the number of Quad's clusters (the same k-means of the same embeddings) holding at
least one selected window. The fraction scored is the share of pool windows whose selection score was
computed (Quad: `info['fraction_scored']`; random: 0; every other selector scores every window, TracIn
and GTP once per checkpoint).

Training (`experiments.common.train_subset`, repeat=True): a fresh LM (seed s + 1000) trains for `steps`
(600) Adam(1e-3) steps of batch 32 on each subset (the same 19,200 windows for every method, so a 10%
subset is seen about 6 times as often as the full pool; GTP's windows by their weights, self-normalised
per batch), then its mean next-token loss (nats per byte) on each domain's validation windows is
reported, mean ± std over seeds.

    python -m experiments.quad_lm                    # 3 seeds
    python -m experiments.quad_lm --seeds 0 --demo   # a small, quick run

writes `<out>.md`, `<out>.json` and `<out>.png` (reference-mix loss per method at 10% and 25%), each
with its provenance; `--out` defaults to experiments/results/quad_lm. With `--checkpoint-dir DIR` every
finished cell (seed, method, fraction) is kept in DIR and a re-run of the command skips it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np

from experiments.common import (
    RESULTS,
    Cells,
    adam,
    add_checkpoint_dir,
    corpus,
    experiment_run,
    fit_selector,
    lm_task,
    markdown_table,
    beyond_spread,
    mean_std,
    paired,
    sample_std,
    pyplot,
    run_seeds,
    save_figure,
    timed,
    train_subset,
    warmup_checkpoints,
    write_report,
)
from jdps.data.catalogue import load
from jdps.data.text import OFFSET, decode, windows
from jdps.errors import InputError
from jdps.losses import PAD_ID
from jdps.models.minilm import MiniLM
from jdps.selection import Selection, readout
from jdps.train import per_example_losses

METHODS = ("random", "perplexity", "tracin", "influence", "quad", "quad-paper", "quad-explore", "quad-random-arms",
           "quad-diversity", "quad-no-share", "quad-topk-in-clusters", "gtp", "gtp-fill")
EXPLORE_ALPHA = 0.01   # quad-explore's UCB constant: about the spread of the cosine rewards here
# Quad's rows: the select options of each (the library defaults for `quad`); quad-topk-in-clusters is built
# from quad's selection and the influence scores instead
QUAD_ROWS = {"quad": {}, "quad-paper": {"reward": "absolute"},
             "quad-explore": {"reward": "absolute", "alpha": EXPLORE_ALPHA},
             "quad-random-arms": {"arms": "random"}, "quad-diversity": {"score": "none"}, "quad-no-share": {"radius": 0.0}}
KINDS = ("clean", "header", "duplicate", "shuffled")
WARMUP_BATCH_SIZE = 32
OUT = RESULTS / "quad_lm"


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


FULL = Setup()
DEMO = Setup(pool_per_domain=60, ref_per_domain=16, val_per_domain=40, n_header=20, dup_sources=5,
             dup_copies=4, n_shuffled=20, warmup_epochs=2, gtp_d=64, steps=40, batch_size=16)


# --- pure helpers --------------------------------------------------------------------------------------

def shuffle_words(tokens, length: int, rng: np.random.Generator) -> np.ndarray:
    """A window's words in a random order: int32 [length], the bytes of the window's text (PAD, BOS, EOS
    dropped) split on whitespace, permuted by `rng`, joined by single spaces, re-encoded (byte + OFFSET)
    and cut or PAD-padded to `length`."""
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


def topk_in_clusters(scores, labels, reference_selection) -> Selection:
    """The ablation 'top-k influence within clusters': as many windows from each cluster as
    `reference_selection` (Quad's) holds there, the ones of highest score [N] in that cluster (ties to the
    lowest index), weight 1 each."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    counts = np.bincount(labels[np.asarray(reference_selection, np.int64)], minlength=labels.max() + 1)
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(order), np.int64)
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rank[members] = np.arange(len(members))
    picked = order[rank[order] < counts[labels[order]]]
    return Selection(picked, np.ones(len(picked)), scores, {"method": "topk-in-clusters"})


def other_loss(record, setup) -> float:
    """The mean validation loss over the domains outside the reference mix."""
    return float(np.mean([record["loss"][d] for d in setup.domains if d not in setup.target]))


def coverage(labels, indices) -> int:
    """The number of clusters (labels [N]) with at least one of the rows `indices`."""
    return len(np.unique(np.asarray(labels)[np.asarray(indices, np.int64)]))


# --- data ----------------------------------------------------------------------------------------------

def _sample(x: np.ndarray, k: int, rng: np.random.Generator, what: str) -> np.ndarray:
    if len(x) < k:
        raise InputError(f"only {len(x)} {what} windows, {k} asked; ask for fewer")
    return np.sort(rng.choice(len(x), k, replace=False))


def make_data(setup: Setup, seed: int) -> dict:
    """One seed's windows: pool x [N, L] with `domain` [N] (index into setup.domains) and `kind` [N] (index
    into KINDS), the reference set x [R, L], and the validation windows of every domain {name: x [V, L]}."""
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


# --- models and selection ------------------------------------------------------------------------------

def validation_losses(task, params, validation: dict, target) -> dict:
    """{domain: mean next-token loss} over every domain's validation windows, and 'reference mix': the
    mean over the target domains' windows (equal counts)."""
    losses = {d: per_example_losses(task, params, {"x": x}) for d, x in validation.items()}
    out = {d: float(v.mean()) for d, v in losses.items()}
    out["reference mix"] = float(np.concatenate([losses[d] for d in target]).mean())
    return out


# --- one seed ------------------------------------------------------------------------------------------

def select_all(data: dict, setup: Setup, seed: int, fractions, methods, log=print) -> tuple[dict, dict]:
    """Every selector at every fraction -> ({(method, fraction): (indices, weights, info)}, facts of the seed:
    the times of the fits, the clusters, the mean influence cosines by kind)."""
    pool, ref = {"x": data["x"]}, {"x": data["reference"]}
    n = len(pool["x"])
    task, params = lm_task(setup, seed)
    times = {}
    checkpoints, times["warmup"] = timed(warmup_checkpoints, task, params, pool, epochs=setup.warmup_epochs,
                                         seed=seed, batch_size=WARMUP_BATCH_SIZE, optimizer=adam(setup.lr))
    proxy = checkpoints[-1]
    log(f"[seed {seed}] proxy warm-up {times['warmup']:.0f}s")

    embeddings, times["minilm"] = timed(lambda: MiniLM.load().encode([decode(row) for row in pool["x"]]))
    key = jax.random.key(seed)
    k_fit, k_select = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    k_fisher = jax.random.split(k_fit)[1]  # the EK-FAC key quad's fit draws from k_fit: influence shares it
    fitted = {"quad": fit_selector("quad", task, proxy, pool, ref, key=k_fit, embeddings=embeddings)}
    times["quad_fit"] = fitted["quad"].fit_s
    clusters = fitted["quad"].state.clusters
    log(f"[seed {seed}] MiniLM {times['minilm']:.0f}s, quad.fit {times['quad_fit']:.0f}s, "
        f"K = {len(clusters.centroids)}")
    if "influence" in methods or "quad-topk-in-clusters" in methods:
        fitted["influence"] = fit_selector("influence", task, proxy, pool, ref, key=k_fisher,
                                           fit_options={"curvature_on": "reference", "normalize": True})
        times["influence"] = fitted["influence"].fit_s
    if "tracin" in methods:
        fitted["tracin"] = fit_selector("tracin", task, checkpoints, pool, ref, key=None,
                                        fit_options={"learning_rates": (setup.lr,) * len(checkpoints)})
        times["tracin"] = fitted["tracin"].fit_s
    if "gtp" in methods or "gtp-fill" in methods:
        fitted["gtp"] = fit_selector("gtp", task, checkpoints, pool, ref, key=seed,
                                     fit_options={"d": setup.gtp_d, "grad_form": "factored", "normalize": False})
        times["gtp_fit"] = fitted["gtp"].fit_s
    fitted["random"] = fit_selector("random", None, None, pool, key=seed)
    perplexity = -per_example_losses(task, proxy, pool) if "perplexity" in methods else None
    summary = {}
    if "influence" in methods:
        s, kind, dom = fitted["influence"].state.scores, data["kind"], data["domain"]
        summary = {"kinds": {kd: float(s[kind == i].mean()) for i, kd in enumerate(KINDS)},
                   "clean domains": {d: float(s[(kind == 0) & (dom == g)].mean()) for g, d in enumerate(setup.domains)}}
    log(f"[seed {seed}] scores: " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))

    out, quad_selection = {}, {}
    for f in fractions:
        k = math.ceil(f * n)
        for m in methods:
            if m == "perplexity":
                sel, seconds = timed(readout, perplexity, budget=k)
                info = {"fraction_scored": 1.0, "select_s": seconds}
            elif m in QUAD_ROWS:
                sel = fitted["quad"].select(key=k_select, fraction=f, **QUAD_ROWS[m])
                info = {key_: sel.info[key_] for key_ in ("fraction_scored", "clusters_pulled", "rounds", "stop_reason",
                                                          "settings", "select_s")}
                quad_selection[f] = sel.indices
            elif m == "quad-topk-in-clusters":
                if f not in quad_selection:
                    quad_selection[f] = fitted["quad"].select(key=k_select, fraction=f).indices
                sel = topk_in_clusters(fitted["influence"].state.scores, clusters.labels, quad_selection[f])
                info = {"fraction_scored": 1.0, "select_s": 0.0}
            else:
                options = {"gtp": {"solver": "omp"}, "gtp-fill": {"solver": "omp", "fill": "pursuit"}}.get(m, {})
                sel = fitted[m.split("-")[0]].select(budget=k, key=seed, **options)
                info = {"fraction_scored": 0.0 if m == "random" else 1.0, "select_s": sel.info["select_s"]}
                if m.startswith("gtp"):
                    info.update(stop_reason=sel.info["stop_reason"], pursuit_count=sel.info["pursuit_count"],
                                relative_residual=float(sel.info["relative_residual"]))
            out[(m, f)] = (sel.indices, sel.weights, info)
    return out, {"times": times, "n_clusters": len(clusters.centroids), "labels": clusters.labels,
                 "influence_cosine_means": summary}


def run(seed: int, fractions, methods, setup: Setup, log=print, cells: Cells | None = None,
        with_full: bool = True) -> list[dict]:
    """One record per method and fraction (and `full`) for one seed. With `cells` (the --checkpoint-dir)
    each finished record is kept, and a re-run computes only the missing ones (the data and the
    selections only when one is missing)."""
    cells = Cells(None, {}) if cells is None else cells
    ready = {}

    def prepared():
        """The data, every selection, the facts of the seed and the fresh LM, made on first use."""
        if not ready:
            data = make_data(setup, seed)
            log(f"[seed {seed}] pool {len(data['x'])} windows (kinds {np.bincount(data['kind'], minlength=4).tolist()}), "
                f"reference {len(data['reference'])}, validation {sum(len(v) for v in data['validation'].values())}")
            selections, meta = select_all(data, setup, seed, fractions, methods, log)
            task, init = lm_task(setup, seed + 1000)
            ready.update(data=data, selections=selections, meta=meta, task=task, init=init)
            cells.put({"times": meta["times"], "influence_cosine_means": meta["influence_cosine_means"]},
                      seed=seed, what="facts", methods=list(methods), fractions=list(fractions))
        return ready

    def cell(m, f):
        r = prepared()
        data, meta, n = r["data"], r["meta"], len(r["data"]["x"])
        idx, w, info = (np.arange(n), np.ones(n), {"fraction_scored": 0.0}) if m == "full" else r["selections"][(m, f)]
        params, train_s = timed(train_subset, r["task"], r["init"], {"x": data["x"]}, idx, w, seed=seed,
                                steps=setup.steps, batch_size=setup.batch_size, optimizer=adam(setup.lr), repeat=True)
        losses = validation_losses(r["task"], params, data["validation"], setup.target)
        kinds = np.bincount(data["kind"][idx], minlength=len(KINDS))
        doms = np.bincount(data["domain"][idx], minlength=len(setup.domains))
        rec = {"seed": seed, "method": m, "fraction": f, "k": math.ceil(f * n), "count": len(idx),
               "loss": losses, "fraction_scored": info["fraction_scored"],
               "clusters_covered": coverage(meta["labels"], idx), "n_clusters": meta["n_clusters"],
               "kinds": dict(zip(KINDS, kinds.tolist())), "domains": dict(zip(setup.domains, doms.tolist())),
               "target_share": float(np.isin(data["domain"][idx], [setup.domains.index(d) for d in setup.target])
                                     [data["kind"][idx] == 0].sum() / len(idx)),
               "info": info, "train_s": train_s}
        log(f"[seed {seed}] {m:10s} {100 * f:5.1f}%  count {len(idx):5d}  ref-mix {losses['reference mix']:.3f}  "
            f"scored {info['fraction_scored']:.3f}  clusters {rec['clusters_covered']}/{meta['n_clusters']}  "
            f"low-quality {kinds[1:].tolist()}  ({rec['train_s']:.0f}s)")
        return rec

    jobs = [("full", 1.0)] * with_full + [(m, f) for f in fractions for m in methods]
    records = [cells.run(lambda m=m, f=f: cell(m, f), seed=seed, method=m, fraction=f) for m, f in jobs]
    facts = cells.get(seed=seed, what="facts", methods=list(methods), fractions=list(fractions))
    if facts is None and not ready:          # every record kept from a run of other methods: no timings
        facts = {"times": {}, "influence_cosine_means": {}}
    if facts is None:
        meta = prepared()["meta"]
        facts = {"times": meta["times"], "influence_cosine_means": meta["influence_cosine_means"]}
    for r in records:
        r["times"] = facts["times"]
    records[0]["influence_cosine_means"] = facts["influence_cosine_means"]
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
                     mean_std([other_loss(r, setup) for r in rs], 1, 3),
                     mean_std([r["target_share"] for r in rs], 100, 1)]
                    + [mean_std([r["kinds"][kd] for r in rs], 1, 1) for kd in KINDS[1:]]
                    + [mean_std([sum(r["kinds"][kd] for kd in KINDS[1:]) for r in rs], 1, 1)])
    header = ["method", "fraction", "windows", "reference-mix loss", "% of pool scored",
              f"clusters covered (of {records[0]['n_clusters']})", "other-domain loss", "% clean target-domain",
              "header", "duplicate", "shuffled", "low quality"]
    pairs = []
    for f in fractions:
        for a in [m for m in methods if m.startswith("quad")]:
            for b in ("random", "influence"):
                d = paired([r for r in records if r["fraction"] == f], a, b, lambda r: r["loss"]["reference mix"])
                if d is not None:
                    pairs.append([a, b, f"{100 * f:g}%", " ".join(f"{x:+.3f}" for x in d),
                                  f"{np.mean(d):+.3f} ± {sample_std(d):.3f}", beyond_spread(d, lower=True)])
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
        ("Paired differences of the reference-mix loss (method a minus method b, seed by seed; negative: a "
         "is better); 'beyond the spread': the same sign on every seed and |mean| above one standard "
         "deviation (ddof 1) of the differences:"), "",
        markdown_table(["a", "b", "fraction", "per seed", "mean ± std", "a lower beyond the spread"], pairs), "",
        "Validation loss (nats per byte) per domain, mean ± std over seeds:", "",
        markdown_table(["method", "fraction"] + doms, per_domain), "",
        ("Seconds (mean ± std over seeds; 2 shared CPU cores) of the proxy warm-up, the MiniLM embeddings, "
         "quad.fit (EK-FAC on the reference set, v, k-means) and the full scoring passes:"), "",
        markdown_table(["step", "seconds"], time_row), ""])


def figure(records, path: Path, provenance: dict | None = None) -> None:
    """Bars: the reference-mix loss per method at each fraction (mean ± std), the full pool as a line."""
    fractions = sorted({r["fraction"] for r in records if r["method"] != "full"})
    methods = [m for m in METHODS if any(r["method"] == m for r in records)]
    fig, ax = pyplot().subplots(figsize=(7.5, 3.6))
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
    save_figure(fig, path, dpi=110, provenance=provenance)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--demo", action="store_true", help="a small pool and budget (a quick check)")
    parser.add_argument("--out", type=Path, default=OUT, help="path stem of the .md, .json and .png files")
    parser.add_argument("--merge", type=Path, default=None,
                        help="an earlier run's .json: its records of the seeds asked for, of the methods (and the full "
                             "pool) not run now, join the report (the same code, pools and training)")
    add_checkpoint_dir(parser, "seed, method, fraction")
    parser.add_argument("--report-from", type=Path, default=None,
                        help="write the report (.md, .png at --out) from this earlier run's .json, running nothing")
    args = parser.parse_args(argv)
    kept = []
    if args.merge is not None:
        kept = [r for r in json.loads(args.merge.read_text())["records"]
                if r["method"] not in args.methods and r["seed"] in args.seeds]
    setup = DEMO if args.demo else FULL
    if args.report_from is not None:
        records = json.loads(args.report_from.read_text())["records"]
        with experiment_run("experiments.quad_lm", argv, args.out, setup=setup, seeds=args.seeds,
                            datasets=["kjv", "brown", "spam_assassin", "minilm"]) as ex:
            write_report(args.out, table(records, setup, ex.command), {"setup": asdict(setup), "records": records},
                         ex.provenance)
            figure(records, args.out.parent / f"{args.out.name}.png", ex.provenance)
        return 0
    with experiment_run("experiments.quad_lm", argv, args.out, setup=setup, seeds=args.seeds,
                        datasets=["kjv", "brown", "spam_assassin", "minilm"], checkpoint_dir=args.checkpoint_dir) as ex:
        def save(records):
            write_report(args.out, table(records, setup, ex.command), {"setup": asdict(setup), "records": records},
                         ex.provenance)
            figure(records, args.out.parent / f"{args.out.name}.png", ex.provenance)

        has_full = {r["seed"] for r in kept if r["method"] == "full"}
        records = run_seeds(args.seeds, lambda seed: [r for r in kept if r["seed"] == seed] + run(
            seed, args.fractions, args.methods, setup, cells=ex.cells, with_full=seed not in has_full), save)
    print(table(records, setup, ex.command) if records else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
