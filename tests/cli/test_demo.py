"""`jdps demo` (the main job) at tiny size: its table, JSON and figure, checked against each other and sklearn."""

import json
import shlex

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jdps.cli.main import build_parser, main
from jdps.data.catalogue import CATALOGUE

pytestmark = pytest.mark.skipif(not CATALOGUE["mnist_5k"].is_installed(), reason="needs mnist_5k (jdps install)")


def test_tiny_demo_writes_a_consistent_table_json_and_figure(tmp_path, capsys):
    out = tmp_path / "res"
    argv = ["demo", "--repeats", "1", "--seed", "3", "--n-train", "256", "--meta-per-class", "3", "--epochs", "2",
            "--methods", "bads", "uniform", "--noise", "0.4", "--out-dir", str(out), "--quiet"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])    # --quiet: the one JSON line
    assert {p.name for p in out.iterdir()} >= {"demo.md", "demo.json", "demo.png"}
    record = json.loads((out / "demo.json").read_text())
    run = record["runs"][0]
    assert run["seed"] == 3 and run["n_pool"] == 256 and run["n_meta"] == 30
    acc = {m: run["methods"][m]["accuracy"] for m in ("bads", "uniform")}
    assert summary["margin_points"] == pytest.approx(round(100 * (acc["bads"] - acc["uniform"]), 2), abs=0.01)
    w = run["bads_weights"]
    assert len(set(w["id"])) == 256 and max(w["id"]) < 5000                  # ids of MNIST 5k rows, one a pool image
    corrupted = np.array(w["corrupted"])
    assert abs(corrupted.mean() - 0.4) < 0.05                                  # the noise asked for (hand count)
    assert run["methods"]["bads"]["auroc"] == pytest.approx(roc_auc_score(~corrupted, w["weight"]), abs=2e-3)
    table = (out / "demo.md").read_text()
    assert f"| bads | {100 * acc['bads']:.1f} ± 0.0 |" in table
    # the table's command line, pasted, parses to the same settings
    pasted = shlex.split(table.split("Command: `")[1].split("`")[0])
    assert pasted[:2] == ["bash", "scripts/demo.sh"]
    again = build_parser().parse_args(["demo", *pasted[2:]])
    first = build_parser().parse_args(argv)
    for name in ("seed", "repeats", "noise", "noise_kind", "n_train", "meta_per_class", "epochs", "methods", "out_dir"):
        assert getattr(again, name) == getattr(first, name), name


def test_bad_demo_flags_fail_before_compute(tmp_path, capsys):
    assert main(["demo", "--noise", "1.5", "--out-dir", str(tmp_path), "--quiet"]) == 2
    assert "--noise" in capsys.readouterr().err
    assert main(["demo", "--methods", "bads", "oracle", "--out-dir", str(tmp_path), "--quiet"]) == 2


def test_every_command_help_shows_defaults_and_imports_no_jax():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, contextlib, io\n"
            "from jdps.cli.main import build_parser\n"
            "p = build_parser()\n"
            "sub = next(a for a in p._actions if a.dest == 'command')\n"
            "for name, cmd in sub.choices.items():\n"
            "    text = cmd.format_help()\n"
            "    assert name in ('data', 'install') or '(default:' in text, name\n"
            "assert 'jax' not in sys.modules, 'jax imported'\n"
            "print(len(sub.choices))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=Path(__file__).parents[2]).stdout
    assert int(out) >= 10                       # data, install, train, demo, bads, baseline, features, ...


def test_help_choices_read_from_source_equal_the_libraries():
    import jdps.bads
    import jdps.baselines
    import jdps.gtp.pursuit as pursuit
    import jdps.influence.ihvp as ihvp
    import jdps.quad.selector as quad
    from jdps.cli import flags
    from jdps.cli.bads import BASELINES, _presets

    assert _presets() == (*sorted(jdps.bads.PRESETS), "default")
    assert set(BASELINES) == set(jdps.baselines.NAMES) - {"oracle"}
    for module, name, value in (("jdps.influence.ihvp", "NAMES", ihvp.NAMES), ("jdps.gtp.pursuit", "METHODS",
                                pursuit.METHODS), ("jdps.gtp.pursuit", "SCORES", pursuit.SCORES),
                                ("jdps.quad.selector", "SCORES", quad.SCORES),
                                ("jdps.quad.selector", "ACCEPTANCE", quad.ACCEPTANCE)):
        assert flags.literal_names(module, name) == tuple(value), (module, name)
