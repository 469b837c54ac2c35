"""The command lines as several cooperating processes (--coordinator, --num-processes, --process-id): the
flags are checked before jax starts, and process 0 alone writes the output, equal to one process's."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jdps.cli.main import main
from jdps.gtp import pursuit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("extra, says", [
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2"], "--process-id missing"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "[0, 2)"),
])
def test_incomplete_or_inconsistent_process_flags_are_refused(tmp_path, capsys, monkeypatch, extra, says):
    for name in ("JDPS_COORDINATOR", "JDPS_NUM_PROCESSES", "JDPS_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    np.save(tmp_path / "A.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "b.npy", np.ones(3, np.float32))
    code = main(["pursuit", "--features", tmp_path / "A.npy", "--target", tmp_path / "b.npy", "--budget", "2",
                 "--out", tmp_path / "sel.npz", *extra])
    assert code == 2 and says in capsys.readouterr().err
    assert not (tmp_path / "sel.npz").exists()


def test_two_processes_write_one_output_equal_to_one_process(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16)).astype(np.float32)
    b = a[[3, 150, 299]].sum(0)
    np.save(tmp_path / "A.npy", a)
    np.save(tmp_path / "b.npy", b)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    argv = [sys.executable, "-m", "jdps.cli", "pursuit", "--features", "A.npy", "--target", "b.npy", "--budget", "5",
            "--out", "sel.npz", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id"]
    procs = [subprocess.Popen(argv + [str(i)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    summary = json.loads(outs[0][0].strip().splitlines()[-1])
    assert [line for line in outs[1][0].splitlines() if not line.startswith("[Gloo]")] == []  # process 1: no summary
    one = pursuit.omp(a, b, 5)                                       # one process, one device
    assert summary["out"] == "sel.npz" and summary["count"] == len(one.indices) == 3   # b: three rows, fitted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.npy", "b.npy", "sel.npz"]   # no lock or temp left
    with np.load(tmp_path / "sel.npz") as f:
        np.testing.assert_array_equal(f["indices"], one.indices)
        np.testing.assert_allclose(f["weights"], one.weights, rtol=1e-5)
        assert "--process-id" in json.loads(str(f["provenance"]))["command"]
