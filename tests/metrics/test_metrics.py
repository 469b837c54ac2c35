"""jdps.metrics against independent references: scipy's Spearman and Pearson, sklearn's AUROC, a model
whose datamodel is exactly linear (LDS 1), closed-form margins, the unbatched training loop, and actual
leave-one-out retraining of a convex model."""

import jax
import numpy as np
import optax
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from jdps import metrics
from jdps.checkpoint import Checkpoints
from jdps.errors import InputError
from jdps.models.mlp import mlp_task
from jdps.train import train
from tests.synthetic import noisy_blobs


def test_spearman_and_pearson_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (30, 7)).astype(float)          # many ties
    b = a + rng.normal(size=a.shape)
    rho = metrics.spearman(a, b)
    r = metrics.pearson(a, b)
    for j in range(7):
        assert rho[j] == pytest.approx(stats.spearmanr(a[:, j], b[:, j]).statistic, abs=1e-12)
        assert r[j] == pytest.approx(stats.pearsonr(a[:, j], b[:, j]).statistic, abs=1e-12)
    assert np.array_equal(metrics.ranks(a)[:, 0], stats.rankdata(a[:, 0]))


def test_lds_is_one_for_an_exactly_linear_datamodel_and_minus_one_reversed():
    rng = np.random.default_rng(1)
    tau = rng.normal(size=(5, 40))                           # [Q, N]
    subsets = metrics.random_subsets(40, 30, 0.5, seed=0)
    outputs = metrics.masks(subsets, 40) @ tau.T + rng.normal(size=5)      # exactly linear (plus a bias per query)
    assert metrics.lds(tau, subsets, outputs).mean == pytest.approx(1.0)
    assert metrics.lds(tau, subsets, np.exp(outputs / 10)).mean == pytest.approx(1.0)   # any increasing map
    assert metrics.lds(-tau, subsets, outputs).mean == pytest.approx(-1.0)


def test_lds_mean_and_standard_error_by_hand():
    rng = np.random.default_rng(2)
    tau, outputs = rng.normal(size=(6, 20)), rng.normal(size=(15, 6))
    subsets = metrics.random_subsets(20, 15, 0.5, seed=3)
    mask = np.zeros((15, 20))
    for s, row in enumerate(subsets):
        mask[s, row] = 1.0
    per_query = [stats.spearmanr(mask @ tau[q], outputs[:, q]).statistic for q in range(6)]
    score = metrics.lds(tau, subsets, outputs)
    assert score.mean == pytest.approx(np.mean(per_query))
    assert score.se == pytest.approx(np.std(per_query, ddof=1) / np.sqrt(6))
    assert score.defined == 6 and len(subsets[0]) == 10 and all(len(set(r)) == 10 for r in subsets)
    mean, se = score
    assert (mean, se) == (score.mean, score.se) and float(score) == score.mean


def test_lds_leaves_out_a_query_with_constant_outputs_and_checks_shapes():
    rng = np.random.default_rng(3)
    tau, outputs = rng.normal(size=(3, 10)), rng.normal(size=(8, 3))
    outputs[:, 1] = 2.0
    subsets = metrics.random_subsets(10, 8, 0.5, seed=0)
    score = metrics.lds(tau, subsets, outputs)
    assert score.defined == 2 and np.isnan(score.per_query[1])
    with pytest.raises(InputError, match=r"outputs must be \[M, Q\]"):
        metrics.lds(tau, subsets, outputs.T)


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(4)
    s = rng.integers(0, 6, 200).astype(float)
    noisy = rng.random(200) < 0.2
    assert metrics.noisy_label_auroc(s, noisy) == pytest.approx(roc_auc_score(noisy, s))
    with pytest.raises(InputError, match="both classes"):
        metrics.auroc(s, np.zeros(200, bool))


def test_loo_correlation_is_scipy_pearson_and_needs_40_points():
    rng = np.random.default_rng(5)
    tau = rng.normal(size=(2, 100))
    removed = rng.choice(100, 45, replace=False)
    effects = tau[:, removed].T * [[1.0, -2.0]] + rng.normal(size=(45, 2))
    r = metrics.loo_correlation(tau, removed, effects)
    want = [stats.pearsonr(tau[q, removed], effects[:, q]).statistic for q in range(2)]
    assert r.per_query == pytest.approx(want)
    with pytest.raises(InputError, match="at least 40"):
        metrics.loo_correlation(tau, removed[:39], effects[:39])


def _blobs(n=64):
    train_set, query, _ = noisy_blobs(n, 12, seed=0, noise=0.0)
    return train_set, query


def test_margins_are_log_odds_of_the_correct_class():
    train_set, _ = _blobs()
    task, params = mlp_task(0, 2, (5,), 3)
    z = np.asarray(task.model.apply(params, train_set["x"]), np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p = (p / p.sum(1, keepdims=True))[np.arange(len(z)), train_set["y"]]
    assert metrics.margins(task, params, train_set, stacked=False) == pytest.approx(np.log(p / (1 - p)), abs=1e-4)


def test_train_many_is_the_training_loop_per_model_and_resumes(tmp_path):
    train_set, _ = _blobs()
    task, _ = mlp_task(0, 2, (5,), 3)
    inits = [mlp_task(s, 2, (5,), 3)[1] for s in range(5)]
    subsets = metrics.random_subsets(64, 5, 0.5, seed=0)
    opt = optax.adam(1e-2)
    stacked = metrics.train_many(task, inits, train_set, subsets, key=7, epochs=3, batch_size=10, optimizer=opt,
                                 models_per_batch=2)       # groups of 2, the last padded
    for m in (0, 4):
        ref = train(task, inits[m], train_set, key=jax.random.fold_in(jax.random.key(7), m), epochs=3, batch_size=10,
                    optimizer=opt, indices=subsets[m]).params
        got = metrics.unstack(stacked)[m]
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, atol=1e-5)
    ckpt = Checkpoints(tmp_path / "c")
    metrics.train_many(task, inits, train_set, subsets, key=7, epochs=2, batch_size=10, optimizer=opt,
                       models_per_batch=2, checkpoints=ckpt)
    resumed = metrics.train_many(task, inits, train_set, subsets, key=7, epochs=3, batch_size=10, optimizer=opt,
                                 models_per_batch=2, checkpoints=ckpt)
    assert ckpt.steps()[-1] == 3
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(stacked)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_exact_influence_predicts_actual_leave_one_out_retraining():
    """Koh & Liang on a convex model: exact influence (damping = the L2) against retraining without each point."""
    from jdps import influence
    from jdps.influence import ihvp as ih

    train_set, query = _blobs(80)
    task, params = mlp_task(0, 2, (), 3)
    l2 = 0.05
    opt = optax.chain(optax.add_decayed_weights(l2), optax.sgd(0.5, momentum=0.9, nesterov=True))
    theta = train(task, params, train_set, key=0, epochs=120, batch_size=80, optimizer=opt).params
    removed = np.arange(0, 80, 2)
    without = metrics.leave_one_out(task, theta, train_set, removed, key=0, epochs=60, optimizer=opt)
    effects = metrics.margins(task, theta, query, stacked=False)[None] - metrics.margins(task, without, query)
    fitted = influence.fit(task, theta, train_set, ihvp=ih.exact(l2))
    r = metrics.loo_correlation(influence.scores(fitted, query, train_set), removed, effects)
    assert r.mean > 0.95 and r.defined == 12
