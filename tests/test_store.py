"""The sharded feature store (jdps.store): written by 2 processes it equals one process's .npy; a killed writer
resumes to the same matrix; an incomplete store is refused; zarr-python reads what tensorstore wrote."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import zarr

from jdps import store as fs
from jdps.cli.main import main
from jdps.errors import InputError
from jdps.gradients import param_filter as pf
from jdps.gtp import pursuit
from jdps.models.mlp import mlp_task

ROOT = Path(__file__).resolve().parents[1]
P_IN, C, N = 6, 3, 300


def _files(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(N, P_IN)).astype(np.float32), rng.integers(0, C, N)
    np.savez(tmp_path / "pool.npz", x=x, y=y, id=np.arange(N) * 10 + 7)
    _, template = mlp_task(0, P_IN, (), C)
    for t in range(2):
        params = jax.tree.map(lambda v: jnp.asarray(rng.normal(size=v.shape), jnp.float32), template)
        np.savez(tmp_path / f"ckpt{t}.npz", **pf.flat(params))


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FEATURES = ["features", "--pool", "pool.npz", "--checkpoints", "ckpt0.npz", "ckpt1.npz", "--hidden", "", "--d", "16",
            "--batch-size", "64", "--quiet"]


def test_two_processes_write_a_store_equal_to_one_process_npy(tmp_path, monkeypatch):
    _files(tmp_path)
    # one process, the .npy path (no store)
    monkeypatch.chdir(tmp_path)
    assert main([*FEATURES, "--out", "A.npy", "--target-out", "b1.npy"]) == 0
    port = _port()
    argv = [sys.executable, "-m", "jdps.cli", *FEATURES, "--store", "S", "--target-out", "b.npy",
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id"]
    env = {**_env(), "JDPS_STORE_CHUNK_ROWS": "64"}       # 5 chunks of 64 rows: 3 and 2 per process
    procs = [subprocess.Popen(argv + [str(i)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = [p.communicate(timeout=150) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    summary = json.loads(outs[0][0].strip().splitlines()[-1])
    assert summary["chunk_rows"] == 64 and summary["columns"] == 2 * 16
    one = np.load(tmp_path / "A.npy")
    store = fs.FeatureStore(tmp_path / "S")
    np.testing.assert_allclose(store[:], one, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(store.ids, np.arange(N) * 10 + 7)
    np.testing.assert_array_equal(zarr.open(str(tmp_path / "S" / "array"), mode="r")[:], store[:])  # another reader
    assert store.attributes["key"] == 0 and store.attributes["d"] == 16 and store.attributes["checkpoints"] == 2
    assert store.verify() == []
    np.testing.assert_allclose(np.load(tmp_path / "b.npy"), one.astype(np.float64).mean(0), rtol=1e-5, atol=1e-6)
    # both processes wrote chunks: their markers name them all; the pursuit reads the store block by block
    assert sorted(int(p.stem) for p in (tmp_path / "S" / "chunks").glob("*.json")) == list(range(5))
    b = np.load(tmp_path / "b.npy")
    np.testing.assert_array_equal(pursuit.solve(store, b, 6).indices, pursuit.solve(one, b, 6).indices)
    assert main(["pursuit", "--store", str(tmp_path / "S"), "--target", str(tmp_path / "b.npy"), "--budget", "6",
                 "--max-memory-mb", "0", "--out", str(tmp_path / "sel.npz")]) == 0
    with np.load(tmp_path / "sel.npz") as f:
        np.testing.assert_array_equal(f["id"], store.ids[f["indices"]])


def _blocks(n=1000, c=24):
    return np.random.default_rng(3).standard_normal((n, c)).astype(np.float32)


def test_a_killed_writer_resumes_per_chunk(tmp_path):
    """A writer killed (SIGKILL) after some chunks: the store is refused; the same writer again writes only
    the missing chunks and any marked chunk whose bytes no longer match its sha256, and the matrix equals the
    uninterrupted one."""
    script = f"""
import sys, time, numpy as np
sys.path.insert(0, {str(ROOT)!r})
from jdps.store import StoreWriter
a = np.random.default_rng(3).standard_normal((1000, 24)).astype(np.float32)
w = StoreWriter({str(tmp_path / 'S')!r}, a.shape, ids=np.arange(1000), fingerprint={{'x': 1}}, chunk_rows=128)
for start, stop in w.pending:
    w.write(start, a[start:stop])
    print(start, flush=True)
    if start == 256:
        time.sleep(60)     # killed here
"""
    proc = subprocess.Popen([sys.executable, "-c", script], env=_env(), stdout=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.strip() == "256":
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with pytest.raises(fs.IncompleteStoreError, match=r"incomplete: 3 of 8 chunks .*run the same command again"):
        fs.FeatureStore(tmp_path / "S")
    a = _blocks()
    written = []
    (tmp_path / "S" / "array" / "c" / "1" / "0").write_bytes(b"lost")     # as if a crash lost chunk 1's bytes
    w = fs.StoreWriter(tmp_path / "S", a.shape, ids=np.arange(1000), fingerprint={"x": 1}, chunk_rows=128)
    assert w.resumed == 2 and [s for s, _ in w.pending] == [128, 384, 512, 640, 768, 896]
    w.fill(lambda s, e: written.append(s) or a[s:e])
    store = w.finish()
    assert written == [128, 384, 512, 640, 768, 896]
    np.testing.assert_array_equal(store[:], a)
    np.testing.assert_array_equal(store[[999, 0, 5, 5]], a[[999, 0, 5, 5]])
    store.to_npy(tmp_path / "A.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "A.npy"), a)
    # a run with other inputs on this store is refused; so is the store's lock while a writer holds it
    with pytest.raises(InputError, match="other inputs, options or layout"):
        fs.StoreWriter(tmp_path / "S", a.shape, ids=np.arange(1000), fingerprint={"x": 2}, chunk_rows=128)


def test_an_incomplete_store_is_refused_by_reader_and_commands(tmp_path, capsys):
    a = _blocks(300, 8)
    w = fs.StoreWriter(tmp_path / "S", a.shape, ids=np.arange(300), fingerprint={}, chunk_rows=128)
    w.write(0, a[:128])
    w.close()                                   # as if the other chunks' writers died
    np.save(tmp_path / "b.npy", a[0])
    with pytest.raises(fs.IncompleteStoreError, match="1 of 3 chunks"):
        fs.FeatureStore(tmp_path / "S")
    code = main(["pursuit", "--store", str(tmp_path / "S"), "--target", str(tmp_path / "b.npy"), "--budget", "2",
                 "--out", str(tmp_path / "sel.npz")])
    assert code == 2 and "is incomplete" in capsys.readouterr().err and not (tmp_path / "sel.npz").exists()
    with pytest.raises(InputError, match="not a jdps feature store"):
        fs.FeatureStore(tmp_path)
    with pytest.raises(InputError, match="whole chunk"):
        fs.StoreWriter(tmp_path / "S", a.shape, ids=np.arange(300), fingerprint={}, chunk_rows=128).write(10, a[:5])


def test_chunk_rows_rule():
    assert fs.chunk_rows_for(8192) == 512 and fs.chunk_rows_for(1024) == 4096
    assert fs.chunk_rows_for(10**6) == 128 and fs.chunk_rows_for(16, rows=300) == 384


def test_influence_scores_written_block_by_block_equal_the_npz(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in (("train", 300), ("query", 7)):
        np.savez(tmp_path / f"{name}.npz", x=rng.normal(size=(n, 5)).astype(np.float32), y=rng.integers(0, 3, n))
    base = ["influence", "--train", str(tmp_path / "train.npz"), "--query", str(tmp_path / "query.npz"),
            "--ihvp", "identity", "--steps", "1", "--hidden", "8", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "full.npz")]) == 0
    os.environ["JDPS_STORE_CHUNK_ROWS"] = "128"
    try:
        assert main([*base, "--out", str(tmp_path / "part.npz"), "--store", str(tmp_path / "S")]) == 0
    finally:
        del os.environ["JDPS_STORE_CHUNK_ROWS"]
    store = fs.FeatureStore(tmp_path / "S")
    with np.load(tmp_path / "full.npz") as full, np.load(tmp_path / "part.npz") as part:
        assert "scores" not in part.files and store.kind == "scores" and store.chunk_rows == 128
        np.testing.assert_allclose(store[:], full["scores"].T, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(store.ids, full["train_id"])
        np.testing.assert_array_equal(store.column_ids, full["query_id"])
        np.testing.assert_allclose(part["mean_scores"], full["mean_scores"], rtol=1e-6)
