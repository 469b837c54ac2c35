"""jdps.progress: bars when asked (a rate and an ETA on stderr, one update an epoch or block), silence otherwise."""

import re

import numpy as np
import optax

from jdps import progress
from jdps.models import mlp_task
from jdps.train import train


def _data(n=96):
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(n, 4)).astype(np.float32), "y": rng.integers(0, 3, n)}


def test_train_progress_true_draws_one_bar_counting_every_epoch(monkeypatch, capsys):
    monkeypatch.setenv("JDPS_PROGRESS", "1")
    task, params = mlp_task(0, 4, (8,), 3)
    train(task, params, _data(), key=0, epochs=3, batch_size=32, optimizer=optax.sgd(0.1), progress=True)
    err = capsys.readouterr().err
    assert "train" in err and "3/3" in err                       # 3 epochs, counted by hand
    assert re.search(r"epoch/s|s/epoch", err)                   # a rate
    assert "loss" in err                                         # the epoch's mean loss


def test_silent_by_default_and_under_the_environment_switch(monkeypatch, capsys):
    task, params = mlp_task(0, 4, (8,), 3)
    train(task, params, _data(), key=0, epochs=2, batch_size=32, optimizer=optax.sgd(0.1))
    monkeypatch.setenv("JDPS_PROGRESS", "0")
    train(task, params, _data(), key=0, epochs=2, batch_size=32, optimizer=optax.sgd(0.1), progress=True)
    assert capsys.readouterr().err == ""


def test_batches_counts_each_pass_and_a_callable_passes_through(monkeypatch, capsys):
    monkeypatch.setenv("JDPS_PROGRESS", "1")
    b = progress.Batches([1, 2, 3, 4], True, "curvature")
    assert list(b) == [1, 2, 3, 4] and list(b) == [1, 2, 3, 4] and len(b) == 4     # re-iterable (EK-FAC: 2 passes)
    assert capsys.readouterr().err.count("4/4") >= 2
    seen = []
    hook = lambda *a: seen.append(a)
    assert progress.epochs(hook) is hook and progress.epochs(False) is None
