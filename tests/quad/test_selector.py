"""Quad: the UCB bandit by hand, and the selector on a pool where one blob helps the reference set."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jdps import influence, quad

from jdps.quad import bandit
from jdps.influence import ihvp as ih
from jdps.errors import InputError
from jdps.models.functional import functional
from jdps.models.mlp import MLP
from jdps.task import Task
from tests.references import ce, softmax_ggn  # ce: kept in float64

DAMPING = 0.01
SMALL = {"clusters_per_round": 2, "samples_per_pull": 4, "block_size": 10}  # 5 clusters of 40


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


# ---- the bandit ---------------------------------------------------------------------------------

def test_ucb_scores_match_the_formula():
    state = bandit.BanditState(jnp.array([0.3, -0.2, 0.0, 0.5]), jnp.array([3.0, 2.0, 0.0, 1.0]))
    alpha, n = 0.1, 6
    want = [0.3 / 3 + alpha * math.sqrt(2 * math.log(n) / 4), -0.2 / 2 + alpha * math.sqrt(2 * math.log(n) / 3),
            0.0 + alpha * math.sqrt(2 * math.log(n) / 1), 0.5 / 1 + alpha * math.sqrt(2 * math.log(n) / 2)]
    np.testing.assert_allclose(bandit.ucb(state, alpha), want, rtol=1e-12)
    np.testing.assert_array_equal(bandit.ucb(bandit.init(3), alpha), [0.0, 0.0, 0.0])  # ln 1 = 0: no pull yet


def test_rewards_are_shared_with_neighbours_by_closeness():
    theta = math.acos(0.95)                                  # arms 0 and 1: cosine distance 0.05
    centroids = np.array([[2.0, 0.0], [math.cos(theta), math.sin(theta)], [0.0, 3.0]])
    w = np.asarray(bandit.closeness(centroids, 0.2, "cosine"))
    np.testing.assert_allclose(w, [[1, 0.75, 0], [0.75, 1, 0], [0, 0, 1]], atol=1e-12)
    state = bandit.init(3, jnp.float64)
    state = bandit.update(state, jnp.array([0, 2, 1]), jnp.array([0.4, -0.1, np.nan]), jnp.array([True, True, False]),
                          jnp.asarray(w))
    np.testing.assert_allclose(state.reward_sum, [0.4, 0.75 * 0.4, -0.1], atol=1e-12)
    np.testing.assert_array_equal(state.count, [1, 1, 1])    # the neighbour's share counts as a pull
    state = bandit.update(state, jnp.array([1]), jnp.array([0.2]), jnp.array([True]), jnp.asarray(w))
    np.testing.assert_allclose(state.reward_sum, [0.4 + 0.75 * 0.2, 0.3 + 0.2, -0.1], atol=1e-12)
    np.testing.assert_array_equal(state.count, [2, 2, 1])
    np.testing.assert_allclose(bandit.mean_reward(state), [0.55 / 2, 0.5 / 2, -0.1], atol=1e-12)
    l2 = np.asarray(bandit.closeness(np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 0.0]]), 2.0, "l2"))
    np.testing.assert_allclose(l2, [[1, 0.5, 0], [0.5, 1, 0], [0, 0, 1]], atol=1e-12)


def test_choose_takes_the_best_available_arms_with_random_ties():
    scores = jnp.array([0.5, 0.9, 0.5, 0.5, 2.0])
    available = jnp.array([True, True, True, True, False])
    arms, valid = bandit.choose(jax.random.key(0), scores, available, 3)
    assert int(arms[0]) == 1 and set(np.asarray(arms[1:]).tolist()) <= {0, 2, 3} and np.all(valid)
    again, _ = bandit.choose(jax.random.key(0), scores, available, 3)
    np.testing.assert_array_equal(arms, again)
    firsts = {int(bandit.choose(jax.random.key(s), jnp.zeros(4), jnp.ones(4, bool), 1)[0][0]) for s in range(40)}
    assert firsts == {0, 1, 2, 3}                           # equal scores: every arm can come first
    arms, valid = bandit.choose(jax.random.key(1), scores, jnp.array([False, True, False, False, False]), 3)
    assert int(arms[0]) == 1 and np.asarray(valid).tolist() == [True, False, False]


# ---- the selector -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def problem():
    """Five blobs of 40 in 8-d; blob 0 has label 1, the others label 0; the reference set is drawn from
    blob 0 with label 1, so blob 0's gradients align with the reference gradient and the others oppose it."""
    rng = np.random.default_rng(0)
    centres = 3.0 * np.eye(8)[:5] + 1.0
    x = np.concatenate([c + 0.3 * rng.normal(size=(40, 8)) for c in centres])
    y = np.array([1] * 40 + [0] * 160, np.int32)
    reference = {"x": centres[0] + 0.3 * rng.normal(size=(20, 8)), "y": np.ones(20, np.int32)}
    model, params = functional(MLP(8, [], 2, rngs=nnx.Rngs(0)))              # softmax regression
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    return Task.from_model(model, ce), params, {"x": x, "y": y}, reference, np.repeat(np.arange(5), 40)


@pytest.fixture(scope="module")
def state(problem):
    task, params, pool, reference, _ = problem
    return quad.fit(task, params, pool, reference, key=0, n_clusters=5, ihvp=ih.exact(DAMPING))


def numpy_influence(params, pool, reference):
    """g_i . (GGN + lambda I)^{-1} grad L(Q), its cosine, and g_i . grad L(Q), for softmax regression by hand."""
    g_ref, ggn = softmax_ggn(params, reference["x"], reference["y"])
    v = np.linalg.solve(ggn + DAMPING * np.eye(len(ggn)), g_ref.mean(0))
    g, _ = softmax_ggn(params, pool["x"], pool["y"])
    dots = g @ v
    return dots, dots / (np.linalg.norm(g, axis=1) * np.linalg.norm(v)), (g @ g_ref.mean(0))


def test_quad_selects_the_helpful_blob_while_scoring_a_fraction(problem, state):
    *_, group = problem
    sel = quad.select(state, key=1, budget=30, **SMALL)
    assert len(sel) == 30 and sel.info["stop_reason"] == "budget"
    assert np.mean(group[sel.indices] == 0) >= 0.9
    scored = np.isfinite(sel.scores)
    assert sel.info["scored"] == scored.sum() and sel.info["fraction_scored"] == scored.mean() <= 0.3
    assert sel.info["clusters_covered"] == len(np.unique(state.clusters.labels[sel.indices]))
    assert sel.info["rounds"] == len(sel.info["log"]) and np.all(sel.weights == 1)


def test_computed_scores_equal_the_hand_influence(problem, state):
    _, params, pool, reference, _ = problem
    dots, cosines, _ = numpy_influence(params, pool, reference)
    for score, want, rtol in (("dot", dots, 1e-8), ("cosine", cosines, 1e-5)):  # ghost norms run in float32
        sel = quad.select(state, key=2, budget=30, score=score, **SMALL)
        scored = np.isfinite(sel.scores)
        assert 0 < scored.sum() < len(scored)
        np.testing.assert_allclose(sel.scores[scored], want[scored], rtol=rtol)
    sel = quad.select(state, key=2, budget=30, score="projected", projection_dim=8192, **SMALL)
    scored = np.isfinite(sel.scores)
    np.testing.assert_allclose(sel.scores[scored], cosines[scored], atol=0.05)  # JL error ~ 1 / sqrt(8192)


def test_default_fit_scores_equal_influence_query_scores(problem):
    task, params, pool, reference, group = problem
    state = quad.fit(task, params, pool, reference, key=3, n_clusters=5)          # EK-FAC(1e-3), the default
    sel = quad.select(state, key=4, budget=30, **SMALL)
    fitted = influence.fit(task, params, reference, ihvp=ih.ekfac(1e-3, key=jax.random.split(jax.random.key(3))[1]))
    want = influence.query_scores(fitted, reference, pool, normalize=True)
    scored = np.isfinite(sel.scores)
    np.testing.assert_allclose(sel.scores[scored], want[scored], rtol=1e-5)
    assert np.mean(group[sel.indices] == 0) >= 0.9


def test_budget_round_limit_and_exhaustion_stop_it(state):
    sel = quad.select(state, key=5, budget=25, **SMALL)              # the third accepted block is cut to 5
    assert len(sel) == 25 and sel.info["stop_reason"] == "budget"
    sel = quad.select(state, key=5, budget=25, max_rounds=1, **SMALL)
    assert sel.info["rounds"] == 1 and sel.info["stop_reason"] == "max_rounds" and sel.info["scored"] == 8
    sel = quad.select(state, key=5, budget=25, tau=10.0, **SMALL)    # no reward is positive: every block rejected
    sizes = np.bincount(state.clusters.labels, minlength=5)
    blocks = [min(4, s - start) for s in sizes for start in range(0, s, 10)]
    assert sel.info["stop_reason"] == "exhausted" and len(sel) == 0
    assert sel.info["scored"] == sum(blocks) == sum(entry["scored"] for entry in sel.info["log"])
    assert sum(len(entry["arms"]) for entry in sel.info["log"]) == len(blocks)   # one pull a block


def test_instance_and_top_share_accept_scored_documents_only(problem, state):
    *_, group = problem
    sel = quad.select(state, key=6, budget=12, acceptance="instance", tau=0.5, **SMALL)
    assert np.all(sel.scores[sel.indices] > 0.5) and np.all(group[sel.indices] == 0)
    sel = quad.select(state, key=6, budget=12, acceptance="top_share", share=0.5, reward="absolute", **SMALL)
    for entry in sel.info["log"]:                               # absolute rewards: the sample mean - tau
        assert entry["accepted"] == 2 * sum(r > 0 for r in entry["rewards"])   # ceil(0.5 * 4) a positive pull
    assert np.all(np.isfinite(sel.scores[sel.indices]))


def test_reproducible_by_key(state):
    a, b = (quad.select(state, key=7, budget=30, **SMALL) for _ in range(2))
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)          # NaN in the same places
    c = quad.select(state, key=8, budget=30, **SMALL)
    assert not np.array_equal(np.isfinite(a.scores), np.isfinite(c.scores))


def test_paper_defaults_scale_with_the_pool(state):
    assert [quad.default_clusters(n) for n in (1, 200, 10**9)] == [1, 14, 10_000]
    sel = quad.select(state, key=9, budget=30, samples_per_pull=8, reward="absolute")   # 8: a shape compiled above
    s = sel.info["settings"]
    assert (s["clusters_per_round"], s["block_size"], s["max_rounds"]) == (1, math.ceil(200 / 20), 200)
    assert (s["alpha"], s["tau"], s["radius"]) == (1e-4, 0.002, 0.2)
    assert all(len(entry["arms"]) == 1 for entry in sel.info["log"])
    assert quad.scaled_defaults(10**9, 10**7, 10_000, paper=True)["clusters_per_round"] == 50


def test_default_blocks_are_a_share_of_each_cluster(state):
    """Default: a pull of cluster c takes ceil(k / (2 N) |c|) documents and scores half of them (ceil)."""
    sizes = np.bincount(state.clusters.labels, minlength=5)
    sel = quad.select(state, key=9, budget=40, score="dot", tau=-1e9)            # every block accepted
    s = sel.info["settings"]
    assert s["block_share"] == 40 / 400 and (s["alpha"], s["reward"]) == (1.0, "standardised")
    blocks = np.ceil(0.1 * sizes - 1e-9).astype(int)
    used = {c: 0 for c in range(5)}
    for entry in sel.info["log"]:
        (c,) = entry["arms"]
        want = min(blocks[c], sizes[c] - used[c])
        used[c] += want
        assert entry["scored"] == min(math.ceil(blocks[c] / 2), want)
        assert entry["accepted"] == want
    assert sel.info["count"] == 40


def test_standardised_rewards_make_the_bandit_scale_free(state):
    """Scores scaled by 1000 (v * 1000, score 'dot', tau 0) leave the standardised bandit's choices as they
    were: the same pulls, the same selection."""
    big = state._replace(v={p: 1000.0 * x for p, x in state.v.items()})
    a, b = (quad.select(st, key=12, budget=30, score="dot", tau=0.0, **SMALL) for st in (state, big))
    assert [e["arms"] for e in a.info["log"]] == [e["arms"] for e in b.info["log"]]
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(b.scores[np.isfinite(b.scores)], 1000 * a.scores[np.isfinite(a.scores)], rtol=1e-6)


def test_ablations_random_arms_no_influence_no_sharing(problem, state):
    *_, group = problem
    flipped = state._replace(v={p: -x for p, x in state.v.items()})               # every score negated
    arms = lambda st, **o: [e["arms"] for e in quad.select(st, key=13, budget=200, max_rounds=6, **SMALL, **o).info["log"]]
    assert arms(state, arms="random") == arms(flipped, arms="random")              # pulls ignore the rewards
    assert arms(state) != arms(flipped)
    sel = quad.select(state, key=14, budget=50, score="none", **SMALL)             # diversity only: no score
    assert sel.info["scored"] == 0 and len(sel) == 50
    assert np.bincount(group[sel.indices], minlength=5).tolist() == [10] * 5       # one block of 10 a cluster
    np.testing.assert_array_equal(bandit.closeness(np.eye(3) + 0.01, 0.0), np.eye(3))  # radius 0: no neighbour


def test_bad_input_is_named(problem, state):
    task, params, pool, reference, _ = problem
    with pytest.raises(InputError, match="larger than the pool of 200"):
        quad.select(state, key=0, budget=201)
    with pytest.raises(InputError, match="reference set is empty"):
        quad.fit(task, params, pool, {"x": np.zeros((0, 8)), "y": np.zeros(0, np.int32)}, key=0)
    with pytest.raises(InputError, match=r"n_clusters must be an integer in \[1, 200\]"):
        quad.fit(task, params, pool, reference, key=0, n_clusters=201)
    with pytest.raises(InputError, match="unknown score"):
        quad.select(state, key=0, budget=5, score="loss")
    with pytest.raises(InputError, match="embeddings must be"):
        quad.fit(task, params, pool, reference, key=0, embeddings=np.zeros((3, 2)))


class _Killed(Exception):
    pass


def test_rounds_resume_from_their_checkpoints_to_the_same_selection(state, tmp_path):
    """A selection killed after a few saved rounds, re-run with the same Checkpoints, equals an
    uninterrupted one: indices, scores and the info with its per-round log."""
    from jdps.checkpoint import Checkpoints

    whole = quad.select(state, key=11, budget=30, **SMALL)

    class KilledAfter(Checkpoints):
        def save(self, step, tree):
            super().save(step, tree)
            if step == 3:
                raise _Killed

    with pytest.raises(_Killed):
        quad.select(state, key=11, budget=30, checkpoints=KilledAfter(tmp_path / "rounds"), **SMALL)
    ckpt = Checkpoints(tmp_path / "rounds")
    assert ckpt.steps() == [1, 2, 3]
    resumed = quad.select(state, key=11, budget=30, checkpoints=ckpt, **SMALL)
    np.testing.assert_array_equal(resumed.indices, whole.indices)
    np.testing.assert_array_equal(resumed.scores, whole.scores)
    assert resumed.info == whole.info and whole.info["rounds"] > 3
    again = quad.select(state, key=11, budget=30, checkpoints=Checkpoints(tmp_path / "rounds"), **SMALL)
    assert again.info == whole.info                          # a finished run: read back, nothing redone
