"""Nothing lost, nothing clobbered: the command line checks every input and output before any compute,
writes atomically with provenance, lets one run at a time write an output, and resumes a killed run.

The bad-input table is scripts/bad_input_sweep.py's (`CASES`), run in this process through
`jdps.cli.main.main`: every case must be a clear one-line error (exit status 2) that changes no input and
leaves no file behind."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jdps.cli.main import main
from jdps.errors import InputError
from jdps.outputs import OutputLock
from scripts import bad_input_sweep as sweep

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    return root, sweep.fixtures(root)


@pytest.mark.parametrize("case", sweep.CASES, ids=lambda c: f"{c.command}: {c.name}")
def test_a_bad_input_is_one_clear_line_and_harms_nothing(files, case):
    root, paths = files
    r = sweep.run_case(case, paths, root)
    assert r.outcome == "clear", (r.argv, r.status, r.stderr)
    assert not r.clobbered and not r.partial, (r.clobbered, r.partial)


def test_the_table_covers_every_command_with_sixty_cases():
    assert len(sweep.CASES) >= 60
    assert {c.command for c in sweep.CASES} >= {"data", "install", "demo", "train", "bads", "baseline", "features",
                                                 "pursuit", "influence", "quad"}


def test_a_second_run_on_one_output_stops_naming_the_first(files, capsys):
    root, paths = files
    out = root / "out" / "held.npz"
    with OutputLock([out]):
        assert main(["bads", "--train", paths["train"], "--meta", paths["meta"], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"another jdps run (pid {os.getpid()}) is writing the output {out}" in err
    assert not out.exists() and not Path(f"{out}.lock").exists()


def test_debug_shows_the_traceback(files):
    _, paths = files
    for argv in (["--debug", "train", "--train", paths["missing"]], ["train", "--train", paths["missing"], "--debug"]):
        with pytest.raises(InputError, match="no file"):
            main(argv)


def test_inputs_and_outputs_are_checked_before_jax_is_imported(files):
    """Bad outputs, labels, dtypes and flags of the npz commands are refused with jax never loaded."""
    _, p = files
    cases = [["train", "--train", p["train"], "--out", p["nofolder"] + "/m.json"],
             ["bads", "--train", p["train"], "--meta", p["meta"], "--out", p["meta"]],
             ["bads", "--train", p["train"], "--meta", p["label3"], "--out", p["out"]],
             ["train", "--train", p["hugelabel"]], ["train", "--train", p["f128"]],
             ["pursuit", "--features", p["train"], "--target", p["b"], "--budget", "3", "--out", p["out"]],
             ["quad", "--pool", p["pool"], "--reference", p["reference"], "--budget", "1000", "--out", p["out"]]]
    code = ("import sys; from jdps.cli.main import main\n"
            f"for argv in {cases!r}:\n    assert main(argv) == 2, argv\n"
            "assert 'jax' not in sys.modules, 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)


def test_outputs_carry_their_provenance_and_nothing_else_is_left(files, tmp_path, capsys):
    _, p = files
    (tmp_path / ".sel.npz.0123abcd.tmp").write_bytes(b"half an npz")       # a write killed mid-way
    argv = ["pursuit", "--features", p["A"], "--target", p["b"], "--budget", "3", "--out", str(tmp_path / "sel")]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(tmp_path / "sel.npz")                     # the path actually written
    with np.load(tmp_path / "sel.npz") as f:
        prov = json.loads(str(f["provenance"]))
    assert prov["command"] == "jdps " + " ".join(argv) and prov["jdps"] and prov["options"]["budget"] == 3
    assert list(prov["inputs"]) == [str(Path(p["A"]).resolve()), str(Path(p["b"]).resolve())]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["sel.npz"]         # no temporary (its or a killed run's), no lock


# --- resume ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(d / "train.npz", x=x, y=y)
    np.savez(d / "meta.npz", x=x[:16], y=y[:16])
    return d


def test_a_killed_bads_run_resumes_to_the_uninterrupted_weights(tiny, tmp_path):
    """SIGKILL a real `jdps bads` once its first epoch is saved; the same command then ends with the weights
    of an uninterrupted run, bit for bit. (The three processes share jax's compilation cache, so only the
    first compiles.)"""
    jdps = [sys.executable, "-m", "jdps.cli", "bads", "--train", str(tiny / "train.npz"), "--meta",
            str(tiny / "meta.npz"), "--hidden", "", "--epochs", "12", "--batch-size", "16", "--meta-batch-size", "8",
            "--seed", "3", "--quiet"]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    subprocess.run([*jdps, "--out", str(tmp_path / "whole")], cwd=ROOT, env=env, check=True, capture_output=True)
    ckpt = tmp_path / "ckpt"
    command = [*jdps, "--out", str(tmp_path / "resumed"), "--checkpoint-dir", str(ckpt)]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(ckpt.glob("*.sha256.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]           # still running: killed mid-way
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(int(s.name) for s in ckpt.iterdir() if s.name.isdigit())
    assert saved and max(saved) < 12 and not (tmp_path / "resumed.npz").exists()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["resumed_from_epoch"] >= 1
    with np.load(tmp_path / "resumed.npz") as a, np.load(tmp_path / "whole.npz") as b:
        np.testing.assert_array_equal(a["weights"], b["weights"])
        np.testing.assert_array_equal(a["id"], b["id"])


def test_a_checkpoint_dir_of_other_options_is_refused(tiny, tmp_path, capsys):
    argv = ["train", "--train", str(tiny / "train.npz"), "--hidden", "", "--batch-size", "16", "--quiet",
            "--checkpoint-dir", str(tmp_path / "ck")]
    assert main([*argv, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*argv, "--epochs", "2"]) == 2
    assert "belongs to a run with other inputs or options (they differ in options.epochs)" in capsys.readouterr().err
    assert main([*argv, "--epochs", "1", "--out", str(tmp_path / "m.json")]) == 0     # another --out: resumes
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["resumed_from_epoch"] == 1 and report["epochs"] == 1 and "provenance" in report


def _features(tiny, tmp_path, *extra):
    from jdps.gradients import param_filter as pf
    from jdps.models.mlp import mlp_task

    for t in range(3):
        _, params = mlp_task(t, 6, (), 2)
        np.savez(tmp_path / f"c{t}.npz", **{k: np.asarray(v) for k, v in pf.flat(params).items()})
    return ["features", "--pool", str(tiny / "train.npz"), "--hidden", "", "--d", "8", "--checkpoints",
            *(str(tmp_path / f"c{t}.npz") for t in range(3)), *extra]


def test_features_resume_per_checkpoint_block(tiny, tmp_path, capsys):
    argv = _features(tiny, tmp_path)
    assert main([*argv, "--out", str(tmp_path / "A0"), "--target-out", str(tmp_path / "b0")]) == 0
    ckpt = tmp_path / "ck"
    assert main([*argv, "--out", str(tmp_path / "A1"), "--target-out", str(tmp_path / "b1"),
                 "--checkpoint-dir", str(ckpt)]) == 0
    assert sorted(int(s.name) for s in ckpt.iterdir() if s.name.isdigit()) == [1, 2, 3]   # a block a checkpoint
    import shutil

    shutil.rmtree(ckpt / "3")                                                 # killed before the last block
    (ckpt / "3.sha256.json").unlink()
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "A2"), "--target-out", str(tmp_path / "b2"),
                 "--checkpoint-dir", str(ckpt)]) == 0
    assert json.loads(capsys.readouterr().out)["resumed_blocks"] == 2
    for name in ("A", "b"):
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}2.npy"), np.load(tmp_path / f"{name}0.npy"))
    side = json.loads((tmp_path / "A2.npy.json").read_text())
    assert side["file"] == "A2.npy" and side["provenance"]["options"]["d"] == 8
