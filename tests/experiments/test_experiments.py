"""The experiments (experiments/*.py) and their shared helpers (experiments/common.py): data draws, reports and
readouts against hand counts, and one smoke run of each script's `main` at a tiny size that checks the
report files it writes (not its results)."""

import json
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

import jdps
from experiments import (
    bads_balance,
    bads_denoise,
    bads_mixture,
    bads_text,
    common,
    gtp_coreset,
    gtp_text,
    quad_lm,
)
from jdps import bads
from jdps.baselines import NAMES
from jdps.data.dataset import Dataset, DatasetInfo, Document
from jdps.data.text import OFFSET, VOCAB_SIZE, encode, windows
from jdps.errors import InputError, MissingDatasetError
from jdps.losses import PAD_ID
from jdps.selection import random_subset
from jdps.task import lm_task

PNG = b"\x89PNG\r\n\x1a\n"


def _wrote(stem, *suffixes):
    """Every report file <stem><suffix> exists and is non-empty; the PNGs are PNGs."""
    for suffix in suffixes:
        path = stem.parent / f"{stem.name}{suffix}"
        assert path.stat().st_size > 0, path
        if suffix.endswith(".png"):
            assert path.read_bytes()[:8] == PNG


def _bigram_lm(setup, seed):
    """A stand-in for the transformer LM in the smoke runs, logits = E[x_t] (a table [V, V]): BADS's kernel
    compiles in seconds on it, not in the ~15 s it takes on even the smallest transformer."""
    table = 0.01 * jax.random.normal(jax.random.key(seed), (VOCAB_SIZE, VOCAB_SIZE))
    return lm_task(SimpleNamespace(apply=lambda params, x: params["emb"][x])), {"emb": table}


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


def test_write_report_and_command_line(tmp_path):
    prov = common.provenance("python -m experiments.x --seeds 0", seeds=[0], datasets=["digits"])
    common.write_report(tmp_path / "sub" / "r", "# hi\n", {"a": [1, 2]}, prov)
    md = (tmp_path / "sub" / "r.md").read_text()
    assert md.startswith("# hi\n\nProvenance: `{") and md.count("\n") == 3            # the report, then one line
    payload = json.loads((tmp_path / "sub" / "r.json").read_text())
    assert payload["a"] == [1, 2] and payload["provenance"] == json.loads(md.split("`")[1])
    assert payload["provenance"]["jdps"] == jdps.__version__ and payload["provenance"]["seed"] == [0]
    assert "catalogue:digits" in payload["provenance"]["inputs"]
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["r.json", "r.md"]      # no temporary left
    assert common.command_line("experiments.bads_text", ["--set", "rho=0.1 x"]) == (
        "python -m experiments.bads_text --set 'rho=0.1 x'")


def test_cells_keep_finished_records_and_refuse_another_setup(tmp_path):
    cells = common.Cells(tmp_path / "cells", {"setup": {"n": 1}})
    calls = []
    record = cells.run(lambda: calls.append(1) or {"acc": np.float64(0.5), "k": np.int64(3)}, seed=0, method="m")
    assert record == {"acc": 0.5, "k": 3} and calls == [1]
    again = common.Cells(tmp_path / "cells", {"setup": {"n": 1}})
    assert again.run(lambda: pytest.fail("ran again"), seed=0, method="m") == record
    assert again.get(seed=1, method="m") is None and not again.done(seed=0, method="other")
    with pytest.raises(InputError, match=r"another setup \(they differ in \['setup'\]\)"):
        common.Cells(tmp_path / "cells", {"setup": {"n": 2}})
    off = common.Cells(None, {})                               # no --checkpoint-dir: every cell runs
    assert off.run(lambda: {"a": 1}, seed=0) == {"a": 1} and off.get(seed=0) is None


def test_two_runs_cannot_write_one_report(tmp_path):
    second = common.experiment_run("experiments.x", [], tmp_path / "r", setup=gtp_coreset.Setup(), seeds=[0])
    with common.experiment_run("experiments.x", [], tmp_path / "r", setup=gtp_coreset.Setup(), seeds=[0]) as ex:
        assert ex.command == "python -m experiments.x" and ex.provenance["seed"] == [0]
        with pytest.raises(InputError, match="another jdps run"):
            second.__enter__()
    assert not (tmp_path / "r.lock").exists()


def test_baselines_and_preset_changes():
    assert sorted(common.BASELINES) == sorted(NAMES) and common.BASELINES[-1] == "oracle"
    changes = common.preset_changes("text")
    assert changes["lr"] == 2.0 and changes["log_z"] == "contrastive" and "burn_in" not in changes
    assert bads.preset("text", **changes) == bads.PRESETS["text"]


def test_run_selector_fits_selects_and_times():
    pool = {"x": np.zeros((10, 2), np.float32)}
    sel = common.run_selector("random", None, None, pool, seed=3, budget=4)
    np.testing.assert_array_equal(sel.indices, random_subset(3, 10, budget=4))
    assert sel.info["fit_s"] >= 0 and sel.info["select_s"] >= 0
    fitted = common.fit_selector("random", None, None, pool, key=None)
    assert len(fitted.select(fraction=0.5, key=1)) == 5


def test_repeat_to_spreads_the_budget_evenly():
    idx = np.array([3, 7, 11, 20, 21])
    rows = common.repeat_to(idx, 23, np.random.default_rng(4))
    counts = Counter(rows.tolist())
    assert len(rows) == 23 and set(counts) == set(idx.tolist()) and set(counts.values()) <= {4, 5}


def test_domain_means_by_hand():
    means = common.domain_means(np.array([0.2, 0.4, 1.0, 0.0, 0.3]), np.array([0, 0, 2, 2, 1]), 3)
    np.testing.assert_allclose(means, [0.3, 0.3, 0.5])


# --- experiment 1: denoising ---------------------------------------------------------------------------


def test_snapshot_accuracy_averages_softmax_over_snapshots():
    """A linear model: the argmax of the mean of the snapshots' softmaxes (numpy), and the last snapshot's."""
    task = SimpleNamespace(apply=lambda p, x: x @ p)
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    snaps = [np.array([[3.0, 0.0], [0.0, 0.1]], np.float32), np.array([[0.0, 0.0], [0.0, 0.0]], np.float32),
             np.array([[-1.0, 0.0], [0.0, 2.0]], np.float32)]
    y = np.array([0, 1, 1])
    soft = lambda z: np.exp(z) / np.exp(z).sum(1, keepdims=True)  # noqa: E731
    mean = np.mean([soft(x @ p) for p in snaps], 0)
    expect = ((mean.argmax(1) == y).mean(), ((x @ snaps[-1]).argmax(1) == y).mean())
    assert common.snapshot_accuracy(task, snaps, x, y) == pytest.approx(expect)
    assert expect[0] != expect[1]

TINY = bads_denoise.Setup(n_train=600, meta_per_class=10, epochs=2, batch_size=50, meta_batch_size=20, hidden=(32,))


@pytest.fixture(scope="module")
def sym60():
    try:
        train, meta, test = bads_denoise.make_data("sym60", TINY, seed=3)
    except MissingDatasetError as err:
        pytest.skip(str(err))
    return train, meta, test


def test_denoise_data_draw(sym60):
    train, meta, test = sym60
    assert len(train) == 600 and len(test) == 10_000
    corrupted = train.columns["corrupted"]
    assert corrupted.sum() == 360  # round(0.6 * 600) labels changed
    np.testing.assert_array_equal(corrupted, train.y != train.columns["clean_y"])
    np.testing.assert_array_equal(np.bincount(meta.y, minlength=10), np.full(10, 10))
    assert not set(meta.ids.tolist()) & set(train.ids.tolist())  # the meta set is not in the training set


def _record(noise, method, accuracy, seed=0, **extra):
    return {"noise": noise, "seed": seed, "method": method, "accuracy": accuracy, "seconds": 1.0, **extra}


def test_denoise_table_reports_mean_and_std_and_the_targets():
    figures = {"accuracy_final": 0.80, "auroc": 0.96, "weight_clean": 0.5, "weight_corrupted": 0.1, "kept": 8000}
    records = [_record("sym60", "bads", 0.82, 0, **figures), _record("sym60", "bads", 0.84, 1, **figures),
               _record("sym60", "uniform", 0.77, 0, accuracy_final=0.70), _record("sym60", "uniform", 0.79, 1,
                                                                                  accuracy_final=0.74),
               _record("sym60", "l2rw", 0.84, 0), _record("sym60", "l2rw", 0.86, 1)]
    report = bads_denoise.table(records, bads_denoise.FULL, "python -m experiments.bads_denoise --noise sym60")
    snapshots, last = report.split("Last parameters alone")
    assert "| bads | 83.0 ± 1.0 |" in snapshots  # mean 83, population std 1
    assert "| uniform | 78.0 ± 1.0 |" in snapshots
    assert "| bads | 80.0 ± 0.0 |" in last and "| uniform | 72.0 ± 2.0 |" in last and "| l2rw | - |" in last
    assert "| AUROC, clean vs corrupted | 0.9600 ± 0.0000 |" in report
    assert "BADS - uniform: +5.0 points (target >= +3): met" in report
    assert "BADS - l2rw: -2.0 points (target >= +0): not met" in report
    assert "weight AUROC: 0.9600 (target >= 0.95): met" in report
    assert "`python -m experiments.bads_denoise --noise sym60`" in report


def test_denoise_smoke_run(sym60, tmp_path, monkeypatch, capsys):
    train, meta, test = sym60
    monkeypatch.setattr(bads_denoise, "FULL", TINY)
    monkeypatch.setattr(bads_denoise, "make_data", lambda noise, setup, seed: (train, meta, test.take(np.arange(500))))
    argv = ["--noise", "sym60", "--methods", "bads", "--seeds", "0", "--out", str(tmp_path / "run")]
    assert bads_denoise.main([*argv, "--checkpoint-dir", str(tmp_path / "cells")]) == 0
    _wrote(tmp_path / "run", ".md", ".json", "_weights.png")
    report = (tmp_path / "run.md").read_text()
    assert "`python -m experiments.bads_denoise --noise sym60 --methods bads --seeds 0 --out " in report
    assert "Last parameters alone" in report and "| AUROC, clean vs corrupted |" in report
    assert report.split("\n\nProvenance: ")[0] in capsys.readouterr().out     # the report, less its provenance
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["setup"]["n_train"] == 600 and [r["method"] for r in saved["runs"]] == ["bads"]
    # --checkpoint-dir: the finished run was kept; the same command again reads it instead of running BADS
    monkeypatch.setattr(bads_denoise, "run_bads", lambda *a, **k: pytest.fail("a kept run was computed again"))
    assert bads_denoise.main([*argv[:-1], str(tmp_path / "again"), "--checkpoint-dir", str(tmp_path / "cells")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert [(r["method"], r["accuracy"]) for r in again["runs"]] == [(r["method"], r["accuracy"]) for r in saved["runs"]]


def test_denoise_demo_and_tune_print_their_tables(sym60, monkeypatch):
    train, meta, test = sym60
    monkeypatch.setattr(bads_denoise, "make_data", lambda noise, setup, seed: (train, meta, test.take(np.arange(500))))
    report = bads_denoise.demo(0, TINY, ("uniform",), log=lambda line: None)
    assert report.startswith("# Experiment 1") and "| uniform |" in report
    assert "python -m experiments.bads_denoise --demo --seeds 0 --methods uniform" in report   # a runnable command
    configs = []

    def fake_bads(train, meta, test, setup, seed, config=None):  # the table and the configs are under test here
        configs.append(config)
        return {"accuracy": 0.5, "accuracy_final": 0.4, "auroc": 0.9, "weight_clean": 0.6, "weight_corrupted": 0.2}

    monkeypatch.setattr(bads_denoise, "run_bads", fake_bads)
    monkeypatch.setattr(bads_denoise, "TUNING", {"CONFIG, lr 0.1": ("denoise", {"lr": 0.1}), "library defaults": (None, {})})
    report = bads_denoise.tune(TINY, 0, "cmd", log=lambda line: None)
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and rows[1].startswith("| CONFIG, lr 0.1 | ") and rows[2].startswith("| library defaults | ")
    assert configs[-2:] == [replace(bads.PRESETS["denoise"], lr=0.1), bads.BADSConfig()]


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
    report = bads_balance.table(records, counts, setup, "python -m experiments.bads_balance --seeds 0 1", {})
    assert "| bads | 81.0 ± 1.0 | 85.0 |" in report
    assert "| uniform | 83.0 ± 0.0 | 84.0 |" in report
    assert "5 / class: BADS - uniform = -2.0 points: not met" in report
    assert "10 / class: BADS - uniform = +1.0 points: met" in report
    assert "| 9 | Ankle boot | 10 | 0.0182 | 0.800 | 0.800 |" in report  # 10 of 550
    assert "Spearman ρ(weight, count) |  |  | -1.00 | -1.00 |" in report
    assert "`python -m experiments.bads_balance --seeds 0 1`" in report


def test_balance_config_is_the_preset_with_the_variant():
    config = bads_balance.bads_config("bads_dropped", bads_balance.FULL, 10, {"rho": 0.1, "log_z": "contrastive"})
    assert config == replace(bads.PRESETS["balance"], rho=0.1, log_z="dropped", burn_in=20)  # the variant wins


def test_balance_smoke_run(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), [40, 30, 20, 10, 10, 8, 6, 6, 5, 5])  # 140 examples
    x = rng.normal(size=(140, 784)).astype(np.float32) + y[:, None] * 0.05
    info = DatasetInfo("t", "test", "none", tuple(map(str, range(10))))
    train = Dataset(x=x, y=y, info=info)
    pool = Dataset(x=x[::2][:40], y=np.tile(np.arange(10), 4), info=info)
    monkeypatch.setattr(bads_balance, "make_data", lambda setup, seed: (train, pool, train))
    monkeypatch.setattr(bads_balance, "FULL", replace(bads_balance.FULL, meta_sizes=(2,), epochs=2, batch_size=35,
                                                      meta_batch_size=10, burn_in_epochs=1, hidden=(8,)))
    argv = ["--methods", "bads", "--seeds", "0", "--set", "log_z=dropped", "--out", str(tmp_path / "b")]
    assert bads_balance.main(argv) == 0
    _wrote(tmp_path / "b", ".md", ".json", "_accuracy.png", "_weights.png")
    saved = json.loads((tmp_path / "b.json").read_text())
    assert [r["method"] for r in saved["runs"]] == ["bads"] and saved["class_counts"]["0"] == np.bincount(y).tolist()
    assert saved["bads_config"]["log_z"] == "dropped" and "`python -m experiments.bads_balance --methods" in (
        tmp_path / "b.md").read_text()


# --- experiment 3: text ---------------------------------------------------------------------------------


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


def _docs(seed, n=4):
    rng = np.random.default_rng(seed)
    return [Document("".join(rng.choice(list("abc" if d == "a" else "xyz"), 60)), d, f"{d}{i}")
            for d in ("a", "b") for i in range(n)]


def _tiny_text(seed):
    data = windows(_docs(seed), TINY_TEXT.length, domain_names=["a", "b"])
    b = np.flatnonzero(data.columns["domain"] == 1)
    train = data.take(np.sort(np.concatenate([np.flatnonzero(data.columns["domain"] == 0)[:16], b[:16]])))
    return train, data.take(b[16:24]), data.take(b[16:24])


def test_posterior_lm_loss_against_numpy():
    task, params = common.lm_task(TINY_TEXT, 0)
    state = bads.init(jax.random.key(0), params, 4, bads.BADSConfig(num_theta_samples=2))
    other = jax.tree.map(lambda p: p + 0.3 * np.sin(np.arange(p.size, dtype=np.float32)).reshape(p.shape), params)
    ring = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
    state = state._replace(theta_ring=ring, num_theta=jnp.asarray(2, jnp.int32))
    x = _tiny_text(0)[0].x[:4].copy()  # two batches of 2
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
    monkeypatch.setattr(bads_text, "FULL", TINY_TEXT)
    monkeypatch.setattr(bads_text, "make_data", lambda setup, seed: _tiny_text(seed))
    monkeypatch.setattr(bads_text, "lm_task", _bigram_lm)
    assert bads_text.main(["--methods", "random", "bads", "--seeds", "0", "--out", str(tmp_path / "t")]) == 0
    _wrote(tmp_path / "t", ".md", ".json", "_weights.png")
    report = (tmp_path / "t.md").read_text()
    assert "| b (target) |" in report and "| bads (final θ) |" in report and "| random |" in report
    assert json.loads((tmp_path / "t.json").read_text())["bads_config"] == common.preset_changes("text")


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


def test_mixture_smoke_run(tmp_path, monkeypatch):
    setup = replace(bads_mixture.FULL, sources=("a", "b"), targets=("a", "b"), length=TINY_TEXT.length, per_source=12,
                    meta_windows=4, held_out=0.25, d_model=8, n_layers=1, n_heads=1, epochs=2, batch_size=8,
                    meta_batch_size=4, burn_in_epochs=1)
    pool = windows(_docs(1), setup.length, domain_names=["a", "b"])
    monkeypatch.setattr(bads_mixture, "FULL", setup)
    monkeypatch.setattr(bads_mixture, "SOURCES", setup.sources)
    monkeypatch.setattr(bads_mixture, "source_windows", lambda setup: pool)
    monkeypatch.setattr(bads_mixture, "lm_task", _bigram_lm)
    assert bads_mixture.main(["--targets", "b", "--seeds", "0", "--out", str(tmp_path / "m")]) == 0
    _wrote(tmp_path / "m", ".md", ".json", "_weights.png")
    (run,) = json.loads((tmp_path / "m.json").read_text())["runs"]
    assert run["target"] == "b" and len(run["source_weights"]) == 2


# --- GTP experiment 2: coresets -------------------------------------------------------------------------


def _fashion_like(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = np.clip(rng.random((n, 28, 28, 1)) * 0.3 + (y[:, None, None, None] / 10.0), 0, 1).astype(np.float32)
    return Dataset(x=x, y=y, info=DatasetInfo(name="fake", provenance="test", licence="none"))


def test_dup_pool_holds_the_planted_copies():
    setup = gtp_coreset.Setup(n_pool=100, n_dup_groups=7, copies=5, dup_noise=0.01)
    x, y, group = gtp_coreset.make_pool(setup, 0, True, _fashion_like(300, 0))
    assert x.shape == (100 + 7 * 4, 28, 28, 1) and len(y) == len(group) == 128
    np.testing.assert_array_equal(np.bincount(group[group >= 0]), np.full(7, 5))  # 7 groups of 5 copies
    for g in range(7):
        members = np.flatnonzero(group == g)
        assert len(set(y[members])) == 1
        assert np.abs(x[members] - x[members[0]]).max() < 0.1  # near-identical: noise 0.01, clipped
    x0, _, g0 = gtp_coreset.make_pool(setup, 0, False, _fashion_like(300, 0))
    assert len(x0) == 100 and (g0 == -1).all()


def test_duplicate_counts_by_hand():
    group = np.array([-1, 0, 0, 0, 1, 1, -1, 2])
    assert gtp_coreset.duplicates([0, 1, 2, 3, 4, 6], group) == (4, 2)  # group 0 thrice, group 1 once
    assert gtp_coreset.duplicates([0, 6], group) == (0, 0)
    assert gtp_coreset.duplicates([1, 4, 7], group) == (3, 0)


def test_coreset_smoke_run(tmp_path, monkeypatch):
    fake = {"train": _fashion_like(200, 1), "test": _fashion_like(50, 2)}
    monkeypatch.setattr(gtp_coreset, "load", lambda name, split: fake[split])
    monkeypatch.setattr(gtp_coreset, "FULL", gtp_coreset.Setup(n_pool=120, n_dup_groups=5, warmup_epochs=1, d=32,
                                                              steps=10, batch_size=16, hidden=(8,)))
    argv = ["--seeds", "0", "--pools", "dup", "--fractions", "0.05", "--methods", "gtp-omp", "random",
            "--out", str(tmp_path / "c"), "--checkpoint-dir", str(tmp_path / "cells")]
    assert gtp_coreset.main(argv) == 0
    _wrote(tmp_path / "c", ".md", ".json", ".png")
    first = json.loads((tmp_path / "c.json").read_text())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.md", "c.png", "cells"]   # no lock, no temporary
    assert len(list((tmp_path / "cells").glob("*.cell.json"))) == 3
    # re-run with every cell done: nothing is trained again, and the report is the same
    monkeypatch.setattr(gtp_coreset, "warmup_checkpoints", lambda *a, **k: pytest.fail("a finished cell ran again"))
    assert gtp_coreset.main(argv) == 0
    assert json.loads((tmp_path / "c.json").read_text()) == first
    full, omp, rnd = first["records"]
    assert [full["method"], omp["method"], rnd["method"]] == ["full", "gtp-omp", "random"]
    assert full["k"] == 140 and full["copies"] == 25 and full["redundant"] == 20
    assert omp["k"] == rnd["k"] == 7 and omp["count"] <= 7 and rnd["count"] == 7  # ceil(0.05 * 140)
    report = (tmp_path / "c.md").read_text()
    assert "`python -m experiments.gtp_coreset --seeds 0" in report
    assert "| gtp-omp |" in report and "planted near-duplicates (5 images x 5 copies)" in report


# --- GTP experiment 1: text -----------------------------------------------------------------------------


def test_gtp_text_report_means_over_seeds():
    records = [{"seed": s, "method": "full", "fraction": 1.0, "k": 100, "count": 100, "loss": 2.0 + s,
                "target_share": 0.2} for s in (0, 1)]
    records += [{"seed": s, "method": "gtp-omp", "fraction": 0.05, "k": 5, "count": 5, "loss": 1.5 + 0.1 * s,
                 "target_share": 0.8 + 0.2 * s, "stop_reason": "budget"} for s in (0, 1)]
    text = gtp_text.table(records, gtp_text.Setup(), "python -m experiments.gtp_text")
    assert "| full pool | 2.500 ± 0.500 |" in text  # mean of 2 and 3, population std 0.5
    assert "| gtp-omp | 1.550 ± 0.050 |" in text
    assert "| gtp-omp | 90.0 ± 10.0 |" in text
    assert "| less | " not in text  # a method without records gets no row


# --- Quad experiment: pure helpers ----------------------------------------------------------------------


def test_shuffle_words_permutes_the_words_of_a_window():
    text = "in the beginning god created the heaven and the earth"
    tokens = encode(text)                                          # BOS ... EOS: both dropped
    out = quad_lm.shuffle_words(tokens, 80, np.random.default_rng(0))
    assert out.shape == (80,) and out.dtype == np.int32
    body = out[out != PAD_ID]
    words = bytes((body - OFFSET).astype(np.uint8).tolist()).decode().split(" ")
    assert Counter(words) == Counter(text.split()) and words != text.split()
    assert (out[len(body):] == PAD_ID).all()
    np.testing.assert_array_equal(out, quad_lm.shuffle_words(tokens, 80, np.random.default_rng(0)))


def test_shuffle_words_cuts_to_the_window_length():
    out = quad_lm.shuffle_words(encode("word " * 40), 16, np.random.default_rng(1))
    assert out.shape == (16,) and (out != PAD_ID).all()


def test_header_block_is_the_text_before_the_first_blank_line():
    raw = "From: a@b\nSubject: hi\n  folded\n\nbody line\n\nmore"
    assert quad_lm.header_block(raw) == "From: a@b\nSubject: hi\n  folded"
    assert quad_lm.header_block("no blank line") == "no blank line"


def test_duplicate_rows_repeat_distinct_sources():
    rows = quad_lm.duplicate_rows(50, 6, 4, np.random.default_rng(2))
    counts = Counter(rows.tolist())
    assert len(rows) == 24 and len(counts) == 6 and set(counts.values()) == {4}
    assert rows.min() >= 0 and rows.max() < 50 and (np.diff(rows) >= 0).all()


def test_split_documents_is_a_partition():
    rng = np.random.default_rng(3)
    val, ref, pool = quad_lm.split_documents(200, True, rng)
    assert (len(val), len(ref), len(pool)) == (10, 6, 184)            # 5%, 3% of 200
    assert sorted(np.concatenate([val, ref, pool]).tolist()) == list(range(200))
    val, ref, pool = quad_lm.split_documents(29, False, rng)
    assert (len(val), len(ref), len(pool)) == (4, 0, 25)              # at least 4; no reference


def test_coverage_counts_clusters_with_a_selected_row():
    labels = np.array([0, 0, 1, 2, 2, 3])
    assert quad_lm.coverage(labels, [0, 1]) == 1
    assert quad_lm.coverage(labels, [0, 2, 3, 4]) == 3


def test_paired_differences_and_the_seed_spread_rule():
    records = [{"seed": s, "method": m, "v": v} for s, m, v in
               [(0, "a", 1.0), (1, "a", 2.0), (2, "a", 3.5), (0, "b", 2.0), (1, "b", 2.5), (2, "b", 4.5), (3, "b", 9.0)]]
    d = common.paired(records, "a", "b", lambda r: r["v"])
    assert d == [-1.0, -0.5, -1.0]                                  # seed 3 has no 'a'
    assert common.sample_std(d) == pytest.approx(np.std(d, ddof=1))
    assert common.beyond_spread(d, lower=True) == "yes"              # |mean| 0.83 > std 0.29, all negative
    assert common.beyond_spread([-1.0, 0.1, -1.0], lower=True) == "no"
    assert common.beyond_spread([-1.0, -0.1, -3.0], lower=True) == "no"   # |mean| 1.37 < std 1.46
    assert common.beyond_spread([2.0, 1.0], lower=False) == "yes" and common.paired(records, "a", "c", len) is None


def test_topk_in_clusters_takes_quads_counts_by_score():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.3, -1.0, 0.2, 0.0])
    sel = quad_lm.topk_in_clusters(scores, labels, [0, 2, 3, 6])       # counts 2, 1, 1
    assert sorted(sel.indices.tolist()) == [1, 2, 3, 6]               # ties (rows 3, 4) to the lowest index
    assert np.all(sel.weights == 1)
