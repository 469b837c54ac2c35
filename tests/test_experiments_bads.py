"""Experiments 2-4 (experiments/bads_balance.py, bads_text.py, bads_mixture.py) and their shared helpers
(experiments/common.py): data draws, reports and readouts against hand counts, and smoke runs at tiny sizes."""

import json
from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from experiments import bads_balance, bads_mixture, bads_text, common
from jdps.data.dataset import Dataset, DatasetInfo, Document
from jdps.data.text import windows
from jdps.errors import InputError, MissingDatasetError

# --- experiments/common.py ---------------------------------------------------------------------------


def test_mean_std_and_markdown_table():
    assert common.mean_std([0.82, 0.84]) == "83.0 ± 1.0"  # population std
    assert common.mean_std([2.5], 1.0, 3) == "2.500"
    assert common.mean_std([]) == "-"
    assert common.markdown_table(["a", "b"], [[1, "x"], [2, "y"]]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2 | y |"


def test_overrides_and_kept_size():
    assert common.overrides(["rho=0.5", "log_z=contrastive", "avg_window=None", "theta_loss='weighted'"]) == {
        "rho": 0.5, "log_z": "contrastive", "avg_window": None, "theta_loss": "weighted"}
    with pytest.raises(InputError, match="name=value"):
        common.overrides(["rho"])
    assert common.kept_size([0.1, 0.5, 0.6, 0.2]) == 2  # mean 0.35: 0.5 and 0.6


def test_random_needs_the_kept_size():
    with pytest.raises(InputError, match="kept"):
        common.run_named_baseline("random", None, None, {"x": np.zeros((4, 2))}, {"x": np.zeros((2, 2))},
                                  seed=0, epochs=1, batch_size=2)


def test_write_report(tmp_path):
    common.write_report(tmp_path / "sub" / "r", "# hi\n", {"a": [1, 2]})
    assert (tmp_path / "sub" / "r.md").read_text() == "# hi\n"
    assert json.loads((tmp_path / "sub" / "r.json").read_text()) == {"a": [1, 2]}


# --- experiment 2: balancing ---------------------------------------------------------------------------


def _pool(y):
    y = np.asarray(y)
    return Dataset(x=np.arange(len(y), dtype=np.float32)[:, None], y=y, info=DatasetInfo("t", "test", "none"))


def test_meta_subset_takes_the_first_k_of_each_class():
    pool = _pool([0, 1, 0, 1, 2, 0, 2, 1, 2])
    meta = bads_balance.meta_subset(pool, 2)
    np.testing.assert_array_equal(meta.x[:, 0], [0, 1, 2, 3, 4, 6])  # class 0: rows 0, 2; 1: 1, 3; 2: 4, 6
    assert set(bads_balance.meta_subset(pool, 1).x[:, 0]) <= set(meta.x[:, 0])  # nested


def test_balanced_accuracy_matches_sklearn():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert bads_balance.balanced_accuracy(p, y) == pytest.approx(balanced_accuracy_score(y, p))


def test_long_tailed_draw():
    try:
        train, pool, test = bads_balance.make_data(bads_balance.FULL, seed=0)
    except MissingDatasetError as err:
        pytest.skip(str(err))
    counts = np.bincount(train.y, minlength=10)
    np.testing.assert_array_equal(counts, np.floor(5950 * 100.0 ** (-np.arange(10) / 9) + 1e-9))  # 6000 - 50
    assert counts[0] / counts[-1] == pytest.approx(100, rel=0.01)
    np.testing.assert_array_equal(np.bincount(pool.y), np.full(10, 50))
    assert not set(pool.ids.tolist()) & set(train.ids.tolist())
    np.testing.assert_array_equal(np.bincount(test.y), np.full(10, 1000))


def _balance_record(k, method, acc, seed=0, weights=None):
    extra = {} if weights is None else {"balanced_accuracy_final": acc, "class_weights": weights, "kept": 5}
    return {"meta_per_class": k, "seed": seed, "method": method, "balanced_accuracy": acc, "seconds": 1.0, **extra}


def test_balance_table_reports_seeds_target_and_weight_trend():
    w = list(np.linspace(0.3, 0.8, 10))  # rising as the classes get rarer
    records = [_balance_record(5, "bads", 0.80, 0, w), _balance_record(5, "bads", 0.82, 1, w),
               _balance_record(5, "uniform", 0.83, 0), _balance_record(5, "uniform", 0.83, 1),
               _balance_record(10, "bads", 0.85, 0, w), _balance_record(10, "uniform", 0.84, 0)]
    counts = {0: [100 - 10 * c for c in range(10)], 1: [100 - 10 * c for c in range(10)]}
    setup = replace(bads_balance.FULL, meta_sizes=(5, 10))
    report = bads_balance.table(records, counts, setup, "python experiments/bads_balance.py --seeds 0 1", {})
    assert "| bads | 81.0 ± 1.0 | 85.0 |" in report
    assert "| uniform | 83.0 ± 0.0 | 84.0 |" in report
    assert "5 / class: BADS - uniform = -2.0 points: not met" in report
    assert "10 / class: BADS - uniform = +1.0 points: met" in report
    assert "| 9 | Ankle boot | 10 | 0.0182 | 0.800 | 0.800 |" in report  # 10 of 550
    assert "Spearman ρ(weight, count) |  |  | -1.00 | -1.00 |" in report
    assert "`python experiments/bads_balance.py --seeds 0 1`" in report


def test_balance_smoke_run(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), [40, 30, 20, 10, 10, 8, 6, 6, 5, 5])  # 140 examples
    x = rng.normal(size=(140, 784)).astype(np.float32) + y[:, None] * 0.05
    info = DatasetInfo("t", "test", "none", tuple(map(str, range(10))))
    train = Dataset(x=x, y=y, info=info)
    pool = Dataset(x=x[::2][:40], y=np.tile(np.arange(10), 4), info=info)
    monkeypatch.setattr(bads_balance, "make_data", lambda setup, seed: (train, pool, train))
    setup = replace(bads_balance.FULL, meta_sizes=(2,), epochs=2, batch_size=35, meta_batch_size=10,
                    burn_in_epochs=1, hidden=(8,))
    lines = []
    records, counts = bads_balance.run_grid(["random", "bads"], [0], setup, log=lines.append)
    assert [r["method"] for r in records] == ["bads", "random"]
    assert len(records[0]["class_weights"]) == 10 and all(0 <= w <= 1 for w in records[0]["class_weights"])
    assert counts[0] == np.bincount(y).tolist() and len(lines) == 2
    bads_balance.save(records, counts, setup, "cmd", tmp_path / "b", {})
    for name in ("b.md", "b.json", "b_accuracy.png", "b_weights.png"):
        assert (tmp_path / name).stat().st_size > 0


# --- experiment 3: text ---------------------------------------------------------------------------------


def test_domain_means_by_hand():
    means = bads_text.domain_means(np.array([0.2, 0.4, 1.0, 0.0, 0.3]), np.array([0, 0, 2, 2, 1]), 3)
    np.testing.assert_allclose(means, [0.3, 0.3, 0.5])


def test_text_draw_keeps_meta_and_test_documents_apart():
    setup = bads_text.FULL
    try:
        train, meta, test = bads_text.make_data(setup, seed=1)
    except MissingDatasetError as err:
        pytest.skip(str(err))
    t = setup.domains.index(setup.target)
    np.testing.assert_array_equal(np.bincount(train.columns["domain"]), np.full(5, setup.train_per_domain))
    assert (meta.columns["domain"] == t).all() and len(meta) == setup.meta_windows
    assert (test.columns["domain"] == t).all() and len(test) == setup.test_windows

    def doc(d):  # ids are "doc_id@start"
        return {i.split("@")[0] for i in d.ids}

    assert not doc(meta) & doc(train) and not doc(test) & doc(train) and not doc(meta) & doc(test)
    assert len(doc(meta)) <= setup.meta_docs and len(doc(test)) <= setup.test_docs


TINY_TEXT = replace(bads_text.FULL, domains=("a", "b"), target="b", length=12, train_per_domain=16, meta_windows=8,
                    test_windows=8, d_model=8, n_layers=1, n_heads=1, epochs=2, batch_size=8, meta_batch_size=4,
                    burn_in_epochs=1)


def _tiny_text(seed):
    rng = np.random.default_rng(seed)
    docs = [Document("".join(rng.choice(list("abc" if d == "a" else "xyz"), 60)), d, f"{d}{i}")
            for d in ("a", "b") for i in range(4)]
    data = windows(docs, TINY_TEXT.length, domain_names=["a", "b"])
    b = np.flatnonzero(data.columns["domain"] == 1)
    train = data.take(np.sort(np.concatenate([np.flatnonzero(data.columns["domain"] == 0)[:16], b[:16]])))
    return train, data.take(b[16:24]), data.take(b[16:24])


def test_posterior_lm_loss_against_numpy():
    from jdps import bads
    task, params = bads_text.lm_task(TINY_TEXT, 0)
    state = bads.init(jax.random.key(0), params, 4, bads.BADSConfig(theta_samples=2))
    other = jax.tree.map(lambda p: p + 0.3 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), params)
    ring = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
    state = state._replace(theta_samples=ring, num_theta=jnp.asarray(2, jnp.int32))
    x = _tiny_text(0)[0].x[:5].copy()
    x[0, 7:] = 0  # a padded window
    probs = [np.exp(np.asarray(jax.nn.log_softmax(task.apply(p, jnp.asarray(x)), -1), np.float64))
             for p in (params, other)]
    p = (probs[0] + probs[1]) / 2
    want = []
    for i in range(len(x)):
        nll = [-np.log(p[i, t, x[i, t + 1]]) for t in range(x.shape[1] - 1) if x[i, t + 1] != 0]
        want.append(np.mean(nll))
    assert bads_text.posterior_lm_loss(task, state, x, batch_size=2) == pytest.approx(np.mean(want), rel=1e-5)


def test_text_smoke_run(tmp_path, monkeypatch):
    monkeypatch.setattr(bads_text, "make_data", lambda setup, seed: _tiny_text(seed))
    lines = []
    records = bads_text.run_grid(["oracle", "random", "bads"], [0], TINY_TEXT, bads_text.BADS, log=lines.append)
    assert [r["method"] for r in records] == ["bads", "oracle", "random"]
    for r in records:
        assert 0 < r["loss"] < np.log(259) + 1  # finite, about chance or better on bytes
    assert len(records[0]["domain_weights"]) == 2 and len(lines) == 3
    report = bads_text.save(records, TINY_TEXT, "cmd", tmp_path / "t", bads_text.BADS)
    assert "| b (target) |" in report and "| bads (final θ) |" in report
    assert (tmp_path / "t_weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- experiment 4: mixture ------------------------------------------------------------------------------


def _pool_windows(docs_per_source=(10, 10, 10), windows_per_doc=5):
    """Fake windows: document d holds windows_per_doc rows; the first 10 documents are source 0, and so on."""
    source = np.repeat(np.arange(len(docs_per_source)), docs_per_source)
    doc = np.repeat(np.arange(len(source)), windows_per_doc)
    n = len(doc)
    return Dataset(x=np.arange(n * 4, dtype=np.int32).reshape(n, 4), y=None, info=DatasetInfo("p", "test", "none"),
                   columns={"doc": doc, "domain": source[doc]})


def test_mixture_draw_holds_out_target_documents():
    pool = _pool_windows()
    setup = replace(bads_mixture.FULL, sources=("u", "v", "w"), per_source=20, meta_windows=8, held_out=0.2)
    train, meta = bads_mixture.make_data(pool, setup, "v", seed=3)
    np.testing.assert_array_equal(np.bincount(train.columns["domain"]), [20, 20, 20])
    assert (meta.columns["domain"] == 1).all() and len(meta) == 8
    assert len(set(meta.columns["doc"])) <= 2  # round(0.2 * 10) held-out documents
    assert not set(meta.columns["doc"]) & set(train.columns["doc"])
    with pytest.raises(InputError, match="too few windows"):
        bads_mixture.make_data(pool, replace(setup, per_source=60), "v", seed=3)


def test_mixture_table_marks_the_highest_source():
    setup = replace(bads_mixture.FULL, sources=("u", "v"))
    records = [{"target": "u", "seed": s, "seconds": 1.0, "source_weights": [0.6 + 0.02 * s, 0.4]} for s in (0, 1)]
    records += [{"target": "v", "seed": 0, "seconds": 1.0, "source_weights": [0.7, 0.5]}]
    report = bads_mixture.table(records, setup, "cmd", {})
    assert "| u | **0.610 ± 0.010** | 0.400 ± 0.000 | yes |" in report
    assert "| v | **0.700** | 0.500 | no (u) |" in report
    assert "1 of 2 targets" in report


def test_mixture_smoke_run(tmp_path):
    setup = replace(bads_mixture.FULL, sources=("a", "b"), length=TINY_TEXT.length, per_source=12, meta_windows=4,
                    held_out=0.25, d_model=8, n_layers=1, n_heads=1, epochs=2, batch_size=8, meta_batch_size=4,
                    burn_in_epochs=1)
    rng = np.random.default_rng(1)
    docs = [Document("".join(rng.choice(list("abc" if d == "a" else "xyz"), 60)), d, f"{d}{i}")
            for d in ("a", "b") for i in range(4)]
    pool = windows(docs, setup.length, domain_names=["a", "b"])
    r = bads_mixture.run_one(pool, setup, "b", 0, bads_text.BADS)
    assert len(r["source_weights"]) == 2 and all(0 <= w <= 1 for w in r["source_weights"])
    records = [{"target": "b", "seed": 0, "seconds": 1.0, **r}]
    bads_mixture.save(records, setup, "cmd", tmp_path / "m", bads_text.BADS)
    assert (tmp_path / "m_weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
