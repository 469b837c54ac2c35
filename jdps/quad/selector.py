"""Quad: influence (quality) and clusters chosen by a bandit (diversity) as a selector.

    sel = jdps.selectors.make("quad", task, params)                # the contract (QuadSelector below)
    state = sel.fit(pool, reference, key=0, embeddings=e)         # clusters, preconditioned reference gradient
    selection = sel.select(state, key=1, fraction=0.1)            # a jdps.selection.Selection

or the functions `fit(task, params, pool, reference, key=, ...)` and `select(state, key=, ...)`.

`fit` (the cacheable part): the curvature (of the reference set unless `curvature_data` is given), the
reference set's preconditioned mean gradient v = (C + lambda I)^{-1} grad L(Q) (`jdps.influence`), and
k-means of the pool's embeddings (MiniLM's, or any features [N, F]; the flattened inputs by default).

`select`: each cluster is an arm of the UCB bandit of `jdps.quad.bandit`, its documents in a random order
from `key`. Each round pulls the `clusters_per_round` arms of highest UCB among those with documents
left; a pull takes the cluster's next block of documents, scores the first ones of it (a uniform sample
of the block), and compares the margin r = mean(sample scores) - tau with 0. The bandit's reward of the
pull (shared with the neighbouring clusters) is

    reward='standardised'  z = (mean(sample scores) - m) / s, m and s the running mean and standard
                           deviation of every score computed so far (this round's included)   [ours; default]
    reward='absolute'      r itself (the released code's)

Before the first pull every UCB is 0 and the order is random (the released code starts from clusters 0, 1,
...); an arm never pulled keeps mean reward 0, which for standardised rewards is the running mean. arms='random'
pulls available clusters uniformly instead of by UCB (the no-bandit ablation). What a pull accepts:

    acceptance='block'      r > 0: the whole block, scored or not (the paper's rule)
    acceptance='instance'   each scored document whose own score exceeds tau      [reconstructed]
    acceptance='top_share'  r > 0: the best ceil(share m) of its m scored documents  [reconstructed]
    acceptance='hybrid'     r > 0: the whole block; else its scored documents whose own score exceeds tau [ours]

Either way the block is used up, as in the released code, and the cluster's next pull takes its next block.
The score of a document is its influence on the reference set, against the one vector v:

    score='cosine'     g . v / (|g| |v|), exact in the full parameter space (one JVP, ghost norms); default
    score='dot'        g . v, the influence itself (tau and alpha are then in its units)
    score='projected'  the cosine of P^T g and P^T v, P [p, projection_dim] random, one P for both (the
                       released code's form, which averages cosines over the reference rows instead)
    score='none'       nothing scored, every block accepted, every reward 0: diversity alone (an ablation)

Every round scores one fixed-shape batch [clusters_per_round * samples_per_pull] with one compiled
function. Quad stops once the budget is filled (the last block cut to fit), after `max_rounds` rounds, or
when every cluster is used up. The selection lists the accepted documents in the order accepted (within a
block: scored ones by decreasing score, then the rest), weight 1 each; `scores` [N] holds the scores it
computed, NaN where it scored nothing; `info` holds the fraction of the pool scored, the clusters pulled
and covered (at least one document selected), the rounds, why it stopped, the settings and a per-round log.

The paper's values (the released code; reward='absolute') are absolute: K = 10,000 clusters, alpha =
1e-4, 50 clusters a round, 10 samples a pull, blocks of 20,000 documents, tau = 0.002 (in cosine units), a
neighbour radius of 0.2 (cosine distance between centroids), at most 200 rounds, block acceptance. K and
the block exceed a pool of our size, so for a pool of N documents and a budget of k they scale [ours]:

    n_clusters         = min(10,000, N, max(1, round(sqrt N)))
    clusters_per_round = max(1, round(K / 200))            the paper's 50 of 10,000
    block_size         = ceil(N / (4 K))                   a quarter of the mean cluster
    max_rounds         = max(200, ceil(4 k / (clusters_per_round block_size)))   room for a pull in four to accept

Defaults [ours] (reward='standardised'; experiments/results/quad_lm.md and quad_screen.md measure why).
With absolute rewards the bonus alpha sqrt(2 ln n / (n_c + 1)) is in the score's units: alpha = 1e-4
against cosine rewards of a few 1e-2 makes the bandit exploit one cluster at a time, and any fixed alpha
is right for one score scale only. Standardised rewards put the means in units of the scores' spread,
so alpha = 1 is the usual UCB constant for unit-scale rewards at any pool size and score scale (the
selection is invariant to scaling the scores). Blocks are a share of their cluster, not a count: a pull
of cluster c takes ceil(k |c| / (2 N)) documents (the budget fills after about two accepted pulls a
cluster) and scores half of them (at least one), so a bandit that spreads its pulls draws clusters in
proportion to their size, and a tiny cluster (k-means isolates planted duplicates) is not over-drawn.
A block whose sample margin is not positive still gives its own documents above tau ('hybrid'), which
lets a mediocre cluster contribute its good documents. clusters_per_round, tau (0.002 in cosine units:
acceptance means a positive influence) and the radius keep the paper's values; max_rounds =
max(200, ceil(8 K / clusters_per_round)). A fixed block_size or samples_per_pull, when given, replaces
the shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jdps import distributed as dist
from jdps import influence

from jdps.quad import bandit
from jdps.influence import ihvp as ih
from jdps.data.dataset import host_arrays
from jdps.errors import InputError
from jdps.quad.kmeans import KMeans, kmeans
from jdps.gradients.per_example import check_finite_rows, flatten, per_example_grads
from jdps.gradients.projection import project
from jdps.selection import Selection
from jdps.selectors import Selector
from jdps.validate import as_key, budget_from, positive_int

SCORES = ("cosine", "dot", "projected", "none")
ACCEPTANCE = ("block", "instance", "top_share", "hybrid")
REWARDS = ("standardised", "absolute")
ARMS = ("ucb", "random")
PAPER = {"n_clusters": 10_000, "alpha": 1e-4, "clusters_per_round": 50, "samples_per_pull": 10,
         "block_size": 20_000, "tau": 0.002, "radius": 0.2, "max_rounds": 200, "acceptance": "block"}


class QuadState(NamedTuple):
    """What `fit` returns: the task and parameters, v = (C + lambda I)^{-1} grad L(Q) {path: leaf}, the
    pool's numeric arrays [N, ...], its k-means clustering, and the mesh the scoring batches are split
    over (None: one device)."""

    task: Any
    params: Any
    v: dict[str, jax.Array]
    pool: dict[str, np.ndarray]
    clusters: KMeans
    mesh: Any = None


def default_clusters(n: int) -> int:
    """K = min(10,000, n, max(1, round(sqrt n))) clusters for a pool of n documents."""
    return int(min(PAPER["n_clusters"], n, max(1, round(math.sqrt(n)))))


STANDARDISED = {"alpha": 1.0, "acceptance": "hybrid"}


def scaled_defaults(n: int, budget: int, n_clusters: int, paper: bool = False) -> dict[str, int]:
    """clusters_per_round, block_size, samples_per_pull and max_rounds for n documents, a budget and K
    clusters (see above): the paper's scaled (paper=True) or the budget-relative ones."""
    per_round = max(1, round(n_clusters / 200))
    if not paper:
        return {"clusters_per_round": per_round, "block_share": budget / (2 * n), "sample_share": 0.5,
                "max_rounds": max(PAPER["max_rounds"], math.ceil(8 * n_clusters / per_round))}
    block = math.ceil(n / (4 * n_clusters))
    return {"clusters_per_round": per_round, "block_size": block, "samples_per_pull": PAPER["samples_per_pull"],
            "max_rounds": max(PAPER["max_rounds"], math.ceil(4 * budget / (per_round * block)))}


def fit(task, params, pool, reference, *, key, embeddings=None, n_clusters: int | None = None, ihvp=None,
        param_filter=None, curvature_data=None, kmeans_restarts: int = 4, batch_size: int = 256,
        damping: float = 1e-3, mesh=None) -> QuadState:
    """Precondition the reference gradient once and cluster the pool.

    key: a jax key or an integer seed (k-means, and the default ihvp's Fisher sampling); embeddings: [N, F]
    (default: the pool's inputs flattened); ihvp: an `IHVP`, or a name of `jdps.influence.ihvp.NAMES` made
    with `damping` and seeded from `key`; default 'ekfac' with damping 1e-3 (the paper's); the curvature is
    fitted on `curvature_data` (default: the reference set). mesh: a `jax.sharding.Mesh` with axis 'data'
    (`jdps.distributed.make_mesh`) that the curvature sums, the k-means rows and `select`'s scoring
    batches are split over.
    """
    key = as_key(key)
    arrays = host_arrays(pool, "pool")
    n = len(arrays["x"])
    host_arrays(reference, "reference set")  # raises, naming the fix, when it is empty
    features = arrays["x"].reshape(n, -1) if embeddings is None else np.asarray(embeddings)
    if features.ndim != 2 or len(features) != n:
        raise InputError(f"embeddings must be [N, F] with one row per pool document (N = {n}), got shape "
                         f"{features.shape}; embed the pool in its order, e.g. MiniLM.load().encode(texts)")
    k = default_clusters(n) if n_clusters is None else n_clusters
    if int(k) != k or not 1 <= k <= n:
        raise InputError(f"n_clusters must be an integer in [1, {n}] (the pool size), got {n_clusters}; "
                         f"pass fewer clusters (default for this pool: {default_clusters(n)})")
    k_cluster, k_fisher = jax.random.split(key)
    ihvp = "ekfac" if ihvp is None else ihvp
    ihvp = ih.by_name(ihvp, damping, key=k_fisher) if isinstance(ihvp, str) else ihvp
    fitted = influence.fit(task, params, reference if curvature_data is None else curvature_data, ihvp=ihvp,
                           param_filter=param_filter, batch_size=batch_size, mesh=mesh)
    v = influence.query_vector(fitted, reference, batch_size=batch_size)
    clusters = kmeans(k_cluster, features, int(k), restarts=kmeans_restarts, mesh=mesh)
    clusters = KMeans(*(np.asarray(a) for a in clusters))
    return QuadState(fitted.task, fitted.params, v, arrays, clusters, mesh)


@partial(jax.jit, static_argnums=(0, 1))
def _jvp_score(task, normalize: bool, params, v, batch):
    return influence.jvp_scores(task, params, v, batch, normalize=normalize)


@partial(jax.jit, static_argnums=(0, 1, 2))
def _projected_score(task, paths, d, params, batch, pv, key):
    """cos(P^T g_i, P^T v) [B], P^T v = pv [d]."""
    g = per_example_grads(task.loss_fn, params, batch, param_filter=paths)
    pg = project(flatten({p: g[p] for p in paths}), key, d)
    norms = jnp.linalg.norm(pg, axis=1) * jnp.linalg.norm(pv)
    return pg @ pv / jnp.maximum(norms, jnp.finfo(pg.dtype).tiny)


def _scorer(state: QuadState, score: str, key, projection_dim: int):
    """batch -> scores [B] of the chosen kind, compiled once per batch shape (split over the state's mesh)."""
    if score == "projected":
        paths = tuple(state.v)
        pv = project(flatten({p: state.v[p][None] for p in paths}), key, projection_dim)[0]
        return lambda batch: dist.score_rows(
            lambda b: _projected_score(state.task, paths, projection_dim, state.params, b, pv, key), batch, state.mesh)
    return lambda batch: dist.score_rows(
        lambda b: _jvp_score(state.task, score == "cosine", state.params, state.v, b), batch, state.mesh)


def _settings(state: QuadState, k: int, options: dict) -> dict:
    """The effective settings: the given options over the scaled defaults, checked."""
    n, n_clusters = len(state.clusters.labels), len(state.clusters.centroids)
    if options.get("reward") not in REWARDS:
        raise InputError(f"unknown reward {options.get('reward')!r}; pass one of {REWARDS}")
    if options.get("arms") not in ARMS:
        raise InputError(f"unknown arms {options.get('arms')!r}; pass one of {ARMS}")
    paper = options["reward"] == "absolute"
    s = {**PAPER, **scaled_defaults(n, k, n_clusters, paper=paper), "n_clusters": n_clusters,
         **({} if paper else STANDARDISED)}
    s.update({name: value for name, value in options.items() if value is not None})
    if not paper and (options.get("block_size") is not None or options.get("samples_per_pull") is not None):
        fixed = scaled_defaults(n, k, n_clusters, paper=True)   # a fixed block asked for: the rest as the paper's
        s["block_share"] = s["sample_share"] = None
        s["block_size"] = fixed["block_size"] if options.get("block_size") is None else options["block_size"]
        s["samples_per_pull"] = PAPER["samples_per_pull"] if options.get("samples_per_pull") is None \
            else options["samples_per_pull"]
    s.setdefault("block_share", None)
    s.setdefault("sample_share", None)
    if s["block_share"] is not None:
        if not 0 < s["block_share"] <= 1 or not 0 < s["sample_share"] <= 1:
            raise InputError(f"block_share and sample_share must lie in (0, 1], got {s['block_share']}, "
                             f"{s['sample_share']}")
        size = np.bincount(np.asarray(state.clusters.labels), minlength=n_clusters)
        blocks = np.maximum(1, np.ceil(s["block_share"] * size - 1e-9)).astype(int)
        s["block_size"] = int(blocks.max())
        s["samples_per_pull"] = int(np.maximum(1, np.ceil(s["sample_share"] * blocks - 1e-9)).max())
    for name in ("clusters_per_round", "samples_per_pull", "block_size", "max_rounds", "projection_dim"):
        s[name] = positive_int(name, s[name])
    s["clusters_per_round"] = min(s["clusters_per_round"], n_clusters)
    s["alpha"] = bandit.check_alpha(s["alpha"])
    if not np.isfinite(s["tau"]):
        raise InputError(f"tau must be a finite reward threshold, got {s['tau']}")
    if s["score"] not in SCORES:
        raise InputError(f"unknown score {s['score']!r}; pass one of {SCORES}")
    if s["acceptance"] not in ACCEPTANCE:
        raise InputError(f"unknown acceptance {s['acceptance']!r}; pass one of {ACCEPTANCE}")
    if not 0 < s["share"] <= 1:
        raise InputError(f"share must lie in (0, 1] (the part of a pull's scored documents to accept), "
                         f"got {s['share']}")
    return s


def _accept(mode: str, share: float, tau: float, margin: float, block, sample, scores) -> np.ndarray:
    """The documents one pull accepts (margin: the sample's mean score - tau): scored ones by decreasing
    score, then (block mode) the rest."""
    order = np.argsort(-scores, kind="stable")
    ranked = sample[order]
    if mode == "instance" or (mode == "hybrid" and margin <= 0):
        return ranked[scores[order] > tau]
    if margin <= 0:
        return ranked[:0]
    if mode == "top_share":
        return ranked[: math.ceil(share * len(sample))]
    return np.concatenate([ranked, block[len(sample):]])


STOPS = ("running", "max_rounds", "exhausted", "budget")


def _running(stats) -> tuple[float, float]:
    """(mean, standard deviation) of the scores seen from their (count, sum, sum of squares); (0, 1) while
    fewer than two, or all equal."""
    count, total, squares = (float(v) for v in stats)
    if count < 2:
        return 0.0, 1.0
    mean = total / count
    spread = math.sqrt(max(squares / count - mean * mean, 0.0))
    return mean, spread if spread > 1e-12 * max(1.0, abs(mean)) else 1.0


def _rounds_state(n: int, n_clusters: int, max_rounds: int) -> dict:
    """The host state of the rounds, of fixed shapes (so it can be saved and restored each round): the next
    round, why the rounds stopped (an index of STOPS), the bandit, the documents used up per cluster, the
    scores [N], the accepted documents in order [N] (-1 past `n_accepted`) and the log, flat: the valid
    arms and their rewards of every round one after another [N] (a valid pull uses up at least one
    document, so there are at most N), and per round [R] their count, the documents scored and accepted,
    and the selected total. R = min(max_rounds, N): every logged round uses up a document."""
    arms = bandit.init(n_clusters)
    rounds = min(max_rounds, n)
    return {"round": np.int64(0), "stop": np.int64(0), "reward_sum": arms.reward_sum, "count": arms.count,
            "stats": np.zeros(3),                                 # scores seen: count, sum, sum of squares
            "used": np.zeros(n_clusters, np.int64), "scores": np.full(n, np.nan),
            "accepted": np.full(n, -1, np.int64), "n_accepted": np.int64(0),
            "log_arms": np.full(n, -1, np.int64), "log_rewards": np.zeros(n, np.float64),
            "log_pulls": np.zeros(rounds, np.int64), "log_scored": np.zeros(rounds, np.int64),
            "log_accepted": np.zeros(rounds, np.int64), "log_selected": np.zeros(rounds, np.int64)}


def _log(h: dict) -> list[dict]:
    """The per-round log of `select`'s info from the flat arrays of the rounds' state."""
    log, at = [], 0
    for r in range(int(h["round"])):
        c = int(h["log_pulls"][r])
        log.append({"round": r, "arms": h["log_arms"][at:at + c].tolist(), "rewards": h["log_rewards"][at:at + c].tolist(),
                    "scored": int(h["log_scored"][r]), "accepted": int(h["log_accepted"][r]),
                    "selected": int(h["log_selected"][r])})
        at += c
    return log


def select(state: QuadState, *, key, budget: int | None = None, fraction: float | None = None,
           score: str = "cosine", alpha: float | None = None, tau: float | None = None,
           clusters_per_round: int | None = None, samples_per_pull: int | None = None,
           block_size: int | None = None, radius: float | None = None, metric: str = "cosine",
           acceptance: str | None = None, share: float = 0.5, max_rounds: int | None = None,
           projection_dim: int = 8192, reward: str = "standardised", arms: str = "ucb",
           checkpoints=None) -> Selection:
    """Select k = budget (or ceil(fraction N)) pool documents by the bandit (see the module docstring).

    key: a jax key or an integer seed (document order in the clusters, tie-breaks, the projection);
    options left None take the defaults of the module docstring. The same key gives the same selection.
    checkpoints: a `jdps.checkpoint.Checkpoints` that keeps the rounds' host state after every round (step
    = rounds done), so the same call after a kill goes on from the last saved round to the same selection.
    """
    n = len(state.clusters.labels)
    k = budget_from(n, budget=budget, fraction=fraction)
    s = _settings(state, k, {"score": score, "alpha": alpha, "tau": tau, "clusters_per_round": clusters_per_round,
                             "samples_per_pull": samples_per_pull, "block_size": block_size, "radius": radius,
                             "metric": metric, "acceptance": acceptance, "share": share, "max_rounds": max_rounds,
                             "projection_dim": projection_dim, "reward": reward, "arms": arms})
    k_order, k_choose, k_proj = jax.random.split(as_key(key), 3)
    labels, n_clusters = state.clusters.labels, s["n_clusters"]
    members = np.lexsort((np.asarray(jax.random.permutation(k_order, n)), labels))   # by cluster, then random
    size = np.bincount(labels, minlength=n_clusters)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    weights = bandit.closeness(state.clusters.centroids, s["radius"], s["metric"])
    scoring, standardised = s["score"] != "none", s["reward"] == "standardised"
    scorer = _scorer(state, s["score"], k_proj, s["projection_dim"]) if scoring else None
    p, m = s["clusters_per_round"], s["samples_per_pull"]
    if s["block_share"] is None:                                   # one block size for every cluster
        block_of, sample_of = np.full(n_clusters, s["block_size"]), np.full(n_clusters, m)
    else:                                                          # the same share of every cluster
        block_of = np.maximum(1, np.ceil(s["block_share"] * size - 1e-9)).astype(np.int64)
        sample_of = np.maximum(1, np.ceil(s["sample_share"] * block_of - 1e-9)).astype(np.int64)

    h = _rounds_state(n, n_clusters, s["max_rounds"])
    if checkpoints is not None:
        _, h = checkpoints.restore_latest(h)
        h = {name: np.array(v) if isinstance(v, np.ndarray) else v for name, v in h.items()}   # writable
    while int(h["round"]) < s["max_rounds"] and not h["stop"]:
        r = int(h["round"])
        used = h["used"]
        available = used < size
        if not available.any():
            h["stop"] = np.int64(STOPS.index("exhausted"))
            break
        arms_state = bandit.BanditState(h["reward_sum"], h["count"])
        priority = bandit.ucb(arms_state, s["alpha"]) if s["arms"] == "ucb" else jnp.zeros(n_clusters)
        arms, valid = bandit.choose(jax.random.fold_in(k_choose, r), priority, jnp.asarray(available), p)
        arms, valid = np.asarray(arms), np.asarray(valid)
        blocks = [members[start[c] + used[c]: start[c] + min(used[c] + block_of[c], size[c])] if ok
                  else members[:0] for c, ok in zip(arms, valid)]
        rows = np.full((p, m), n, np.int64)
        for i, (c, b) in enumerate(zip(arms, blocks)):
            take = min(int(sample_of[c]), len(b))
            rows[i, :take] = b[:take]
        batch = {name: a[np.minimum(rows.ravel(), n - 1)] for name, a in state.pool.items()}
        batch.update(index=rows.ravel().astype(np.int32), mask=rows.ravel() < n)
        scored = (rows < n) & scoring
        if scoring:
            values = np.asarray(scorer(batch), np.float64)
            check_finite_rows("Quad's influence scores", values, batch["index"], batch["mask"])
            values = values.reshape(p, m)
        else:
            values = np.zeros((p, m))
        means = (values * scored).sum(1) / np.maximum(scored.sum(1), 1)
        margins = np.where(valid & scoring, means - s["tau"], 0.0)       # what acceptance looks at
        if standardised:       # the bandit's rewards in units of the running spread of the scores seen so far
            seen = values[scored & valid[:, None]]
            h["stats"] = h["stats"] + np.array([len(seen), seen.sum(), np.square(seen).sum()])
            centre, spread = _running(h["stats"])
            rewards = np.where(valid & scoring, (means - centre) / spread, 0.0)
        else:
            rewards = margins
        arms_state = bandit.update(arms_state, jnp.asarray(arms), jnp.asarray(rewards), jnp.asarray(valid),
                                   weights)
        h["reward_sum"], h["count"] = arms_state
        taken, total = 0, int(h["n_accepted"])
        for i, (c, b) in enumerate(zip(arms, blocks)):
            if not valid[i]:
                continue
            sample = rows[i][scored[i]]
            h["scores"][sample] = values[i][scored[i]]
            if scoring:
                chosen = _accept(s["acceptance"], s["share"], s["tau"], margins[i], b, sample, values[i][scored[i]])
            else:                                                   # diversity only: every block accepted
                chosen = b
            h["accepted"][total + taken: total + taken + len(chosen)] = chosen
            taken += len(chosen)
            used[c] += len(b)
        total += taken
        at, pulls = int(h["log_pulls"][:r].sum()), int(valid.sum())
        h["log_arms"][at:at + pulls], h["log_rewards"][at:at + pulls] = arms[valid], rewards[valid]
        h["log_pulls"][r], h["log_scored"][r], h["log_accepted"][r] = pulls, int(scored[valid].sum()), taken
        h["log_selected"][r] = min(total, k)
        h["n_accepted"], h["round"] = np.int64(total), np.int64(r + 1)
        if total >= k:
            h["stop"] = np.int64(STOPS.index("budget"))
        if checkpoints is not None:
            checkpoints.save(r + 1, h)
    stop = STOPS[int(h["stop"])] if h["stop"] else "max_rounds"
    indices = h["accepted"][:int(h["n_accepted"])][:k]
    scores, used, log = h["scores"], h["used"], _log(h)
    n_scored = int(np.isfinite(scores).sum())
    info = {"method": "quad", "budget": k, "count": len(indices), "stop_reason": stop, "rounds": len(log),
            "scored": n_scored, "fraction_scored": n_scored / n,
            "clusters_pulled": int((used > 0).sum()), "clusters_covered": len(np.unique(labels[indices])),
            "settings": s, "log": log}
    return Selection(indices, np.ones(len(indices)), scores, info)


@dataclass(frozen=True)
class QuadOptions:
    """fit: the iHVP method by name (`jdps.influence.ihvp.NAMES`) and its damping (the paper's EK-FAC,
    1e-3), the number of k-means clusters (None: `default_clusters(N)`), the parameters that count,
    k-means restarts, and the scoring batch size."""

    ihvp: str = "ekfac"
    damping: float = 1e-3
    n_clusters: int | None = None
    param_filter: Any = None
    kmeans_restarts: int = 4
    batch_size: int = 256


class QuadSelector(Selector):
    """fit(pool, reference, key, embeddings=None, curvature_data=None) -> `QuadState`; select(state, key,
    budget | fraction, **Quad's round options: score, alpha, tau, clusters_per_round, ...)."""

    Options, state_type = QuadOptions, QuadState

    def fit(self, pool, reference=None, *, key, embeddings=None, curvature_data=None) -> QuadState:
        if reference is None:
            raise InputError("quad scores the pool by its influence on a reference set: pass reference=")
        o = self.options
        return fit(self.task, self.params, pool, reference, key=key, embeddings=embeddings,
                   n_clusters=o.n_clusters, ihvp=o.ihvp, damping=o.damping,
                   param_filter=o.param_filter, curvature_data=curvature_data, kmeans_restarts=o.kmeans_restarts,
                   batch_size=o.batch_size)

    def select(self, state: QuadState, *, budget=None, fraction=None, key=None, **round_options) -> Selection:
        if budget is None and fraction is None:
            raise InputError("quad needs a size: the bandit accepts documents until budget=k (or fraction=f)")
        if key is None:
            raise InputError("quad draws its cluster orders from a key: pass key=0 (an int seed) or a jax.random.key")
        return select(state, key=key, budget=budget, fraction=fraction, **round_options)

    def state_tree(self, state: QuadState) -> dict:
        return {"v": state.v, "pool": state.pool, "clusters": state.clusters._asdict()}

    def state_from_tree(self, tree: dict) -> QuadState:
        clusters = KMeans(**{k: np.asarray(v) for k, v in tree["clusters"].items()})
        pool = {k: np.asarray(v) for k, v in tree["pool"].items()}
        return QuadState(self.task, self.params, {k: jnp.asarray(v) for k, v in tree["v"].items()}, pool, clusters)
