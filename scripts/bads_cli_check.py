"""BADS through the command line as a new user runs it, on data it was not tuned on (scikit-learn's digits).

Writes npz files of the digits (300 test images, 10 clean meta examples per class from the rest, the
remaining ~1,400 as the training set with 40% symmetric or 45% pair label noise), then runs, in-process,
`jdps bads` with its defaults for 1, 5 and 20 epochs and `jdps baseline --method uniform|meta_only|l2rw`
for 20 epochs, and tabulates test accuracy and the weights' AUROC (clean vs corrupted) to a Markdown file.

    python scripts/bads_cli_check.py [--out experiments/results/bads_cli_check.md]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from jdps.cli.main import main as jdps
from jdps.data import corrupt_labels, from_arrays, meta_split
from jdps.outputs import write_text

NOISES = {"sym40": ("symmetric", 0.4), "pair45": ("pair", 0.45)}


def files(folder: Path) -> dict:
    x, y = load_digits(return_X_y=True)
    data = from_arrays((x / 16).astype(np.float32), y)
    order = np.random.default_rng(0).permutation(len(data))
    test, rest = data.take(order[:300]), data.take(order[300:])
    rest, meta = meta_split(rest, per_class=10, seed=0)
    np.savez(folder / "meta.npz", x=meta.x, y=meta.y)
    np.savez(folder / "test.npz", x=test.x, y=test.y)
    flipped = {}
    for name, (kind, rate) in NOISES.items():
        noisy = corrupt_labels(rest, rate, kind=kind, seed=0)
        np.savez(folder / f"train_{name}.npz", x=noisy.x, y=noisy.y)
        flipped[name] = np.asarray(noisy.columns["corrupted"], bool)
    return flipped


def run(argv: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if jdps(argv) != 0:
            raise SystemExit(f"jdps {shlex.join(argv)} failed")
    return json.loads(out.getvalue().strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bads_cli_check.md"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        flipped = files(d)
        for noise in NOISES:
            common = ["--train", str(d / f"train_{noise}.npz"), "--meta", str(d / "meta.npz"), "--test",
                      str(d / "test.npz"), "--quiet"]
            for epochs in (1, 5, 20):
                out = d / f"bads_{noise}_{epochs}.npz"
                summary = run(["bads", *common, "--epochs", str(epochs), "--out", str(out)])
                w = np.load(out)["weights"]
                rows.append([noise, f"bads, {epochs} epochs", f"{100 * summary['test_accuracy']:.1f}",
                             f"{roc_auc_score(~flipped[noise], w):.3f}"])
            for method in ("uniform", "meta_only", "l2rw"):
                out = d / f"{method}_{noise}.npz"
                summary = run(["baseline", "--method", method, *common, "--epochs", "20", "--out", str(out)])
                auroc = (f"{roc_auc_score(~flipped[noise], np.load(out)['weights']):.3f}" if method == "l2rw"
                         else "-")
                rows.append([noise, f"{method}, 20 epochs", f"{100 * summary['test_accuracy']:.1f}", auroc])
    table = ["| noise | run | test accuracy (%) | weight AUROC |", "|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join([
        "# BADS from the command line on scikit-learn's digits (not part of any search)", "",
        f"Command: `{shlex.join(['python', 'scripts/bads_cli_check.py', *(argv or sys.argv[1:])])}`", "",
        "About 1,400 training digits with 40% symmetric or 45% pair label noise, 10 clean meta examples per class, "
        "300 test digits; `jdps bads` with its defaults (`BADSConfig()`, the MLP 64-256-128-10, batch 128), the "
        "baselines with Adam(1e-3) for 20 epochs.", "", *table, ""])
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
