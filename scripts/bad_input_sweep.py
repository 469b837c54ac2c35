"""Bad-input sweep of the `jdps` command line: a table of wrong inputs, run in this process through
`jdps.cli.main.main`, each checked for a clear error and for no harm done.

Each case runs one command on small files made in a temporary folder (`fixtures`): files that are
missing, corrupt, of a wrong kind, shape, dtype or label range; flags out of range; outputs that point at
an input, at another output, into a missing or unwritable folder, or at a path another run holds.
A case's outcome (`run_case`):

    clear       exit status 2 and one line on stderr, `jdps ...: error: ...`, no traceback
    traceback   an exception left `main`, or its "internal error" line (exit 1), or a traceback printed
    accepted    exit status 0: the bad input went through
    other       anything else (e.g. exit 2 with several lines)

and whether it clobbered an input (a file of the fixtures changed or removed) or left a partial output
(any new file in the temporary folder, lock files and temporaries included).

    python scripts/bad_input_sweep.py                    # writes experiments/results/bad_input_sweep.md
    python scripts/bad_input_sweep.py --out /tmp/sweep
    python scripts/bad_input_sweep.py --resume           # and the resume figures (`resume_figures`)

The table (`CASES`) is also the CLI's table-driven test (tests/cli/test_bad_input.py).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from jdps.cli.main import main as jdps_main  # noqa: E402  (after the sys.path line above)
from jdps.outputs import OutputLock, write_text  # noqa: E402

OUT = ROOT / "experiments" / "results" / "bad_input_sweep"
N, F, C = 60, 8, 3          # examples, features, classes of the small npz files


@dataclass(frozen=True)
class Case:
    """One bad input: the command's argv with {name} placeholders for the fixtures' paths (and {out}, a path
    in an empty output folder), and, for a few, a path that another run holds locked while it runs."""

    command: str
    name: str
    argv: tuple[str, ...]
    hold: str | None = None            # a fixture or {out} path locked (jdps.outputs.OutputLock) during the case
    tags: tuple[str, ...] = field(default=())


def _c(command: str, name: str, argv: str, hold: str | None = None) -> Case:
    return Case(command, name, tuple(shlex.split(argv)), hold)


TRAIN = "--train {train} --epochs 1 --batch-size 16 --quiet"
BADS = "--train {train} --meta {meta} --epochs 1 --batch-size 16 --meta-batch-size 8 --quiet"
FEATURES = "--pool {pool} --hidden '' --checkpoints {ckpt} --d 8"
PURSUIT = "--features {A} --target {b} --budget 5"
INFLUENCE = "--train {train} --query {query} --epochs 1 --batch-size 16 --ihvp identity"
QUAD = "--pool {pool} --reference {reference} --epochs 1 --batch-size 16 --ihvp identity --clusters 4"

CASES: tuple[Case, ...] = (
    # --- jdps data, install, demo, and the main parser
    _c("main", "no command", ""),
    _c("main", "unknown command", "frobnicate"),
    _c("data", "unknown flag", "data --bogus"),
    _c("data", "extra argument", "data fashion_mnist"),
    _c("install", "no dataset name", "install"),
    _c("install", "unknown dataset", "install no_such_dataset"),
    _c("install", "unknown name after a good one (nothing installed)", "install digits no_such_dataset --force"),
    _c("demo", "negative seed", "demo --seed -1"),
    _c("demo", "float seed", "demo --seed 2.0"),
    # --- jdps train
    _c("train", "missing training file", f"train {TRAIN.replace('{train}', '{missing}')}"),
    _c("train", "training file not a zip", f"train {TRAIN.replace('{train}', '{notzip}')}"),
    _c("train", "truncated npz", f"train {TRAIN.replace('{train}', '{truncated}')}"),
    _c("train", "x float128", f"train {TRAIN.replace('{train}', '{f128}')}"),
    _c("train", "x complex", f"train {TRAIN.replace('{train}', '{complex}')}"),
    _c("train", "x of shape (N, 0)", f"train {TRAIN.replace('{train}', '{nofeatures}')}"),
    _c("train", "no examples (N = 0)", f"train {TRAIN.replace('{train}', '{noexamples}')}"),
    _c("train", "label 2**32 + 1", f"train {TRAIN.replace('{train}', '{hugelabel}')}"),
    _c("train", "negative label", f"train {TRAIN.replace('{train}', '{neglabel}')}"),
    _c("train", "float labels", f"train {TRAIN.replace('{train}', '{floatlabel}')}"),
    _c("train", "NaN in x", f"train {TRAIN.replace('{train}', '{nan}')}"),
    _c("train", "pickled object x", f"train {TRAIN.replace('{train}', '{objects}')}"),
    _c("train", "an extra array", f"train {TRAIN.replace('{train}', '{extra}')}"),
    _c("train", "test label >= C", f"train {TRAIN} --test {{label3}}"),
    _c("train", "test label >= --num-classes", f"train {TRAIN} --test {{test}} --num-classes 2"),
    _c("train", "test examples of another shape", f"train {TRAIN} --test {{wide}}"),
    _c("train", "--num-classes 0", f"train {TRAIN} --num-classes 0"),
    _c("train", "--batch-size 0", f"train {TRAIN} --batch-size 0"),
    _c("train", "--seed -1", f"train {TRAIN} --seed -1"),
    _c("train", "--seed 2.0", f"train {TRAIN} --seed 2.0"),
    _c("train", "--epochs 0", f"train {TRAIN} --epochs 0"),
    _c("train", "--lr nan", f"train {TRAIN} --lr nan"),
    _c("train", "--hidden with a zero width", f"train {TRAIN} --hidden 0"),
    _c("train", "--hidden not numbers", f"train {TRAIN} --hidden a,b"),
    _c("train", "--test without --train", "train --dataset fashion_mnist --test {test} --quiet"),
    _c("train", "x of integers", f"train {TRAIN.replace('{train}', '{intx}')}"),
    _c("train", "duplicate ids", f"train {TRAIN.replace('{train}', '{dupids}')}"),
    _c("train", "--subset -1", f"train {TRAIN} --subset -1"),
    _c("train", "--num-classes 10**12", f"train {TRAIN} --num-classes 1000000000000"),
    _c("train", "--out is empty", f"train {TRAIN} --out ''"),
    _c("train", "--out is the training file", f"train {TRAIN} --out {{train}}"),
    _c("train", "--out in a missing folder", f"train {TRAIN} --out {{nofolder}}/m.json"),
    _c("train", "--out in an unwritable place", f"train {TRAIN} --out /proc/jdps_metrics.json"),
    _c("train", "--out is a folder", f"train {TRAIN} --out {{folder}}"),
    _c("train", "--checkpoint-dir is a file", f"train {TRAIN} --checkpoint-dir {{test}}"),
    # --- jdps bads
    _c("bads", "--out is --meta (np.savez adds .npz)", f"bads {BADS} --out {{meta_stem}}"),
    _c("bads", "--out is a folder", f"bads {BADS} --out {{folder}}"),
    _c("bads", "--out in a missing folder", f"bads {BADS} --out {{nofolder}}/w.npz"),
    _c("bads", "meta class no training example has", f"bads {BADS.replace('{train}', '{train01}')} --num-classes 3 "
                                                     "--out {out}"),
    _c("bads", "meta examples of another shape", f"bads {BADS.replace('{meta}', '{wide}')} --out {{out}}"),
    _c("bads", "meta without labels", f"bads {BADS.replace('{meta}', '{nolabels}')} --out {{out}}"),
    _c("bads", "labels shorter than x", f"bads {BADS.replace('{meta}', '{shortlabels}')} --out {{out}}"),
    _c("bads", "--meta-batch-size 0", f"bads {BADS} --meta-batch-size 0 --out {{out}}"),
    _c("bads", "--burn-in -1", f"bads {BADS} --burn-in -1 --out {{out}}"),
    _c("bads", "--steps 0", f"bads {BADS.replace('--epochs 1', '--steps 0')} --out {{out}}"),
    _c("bads", "--epochs with --steps", f"bads {BADS} --steps 3 --out {{out}}"),
    _c("bads", "unknown preset", f"bads {BADS} --preset nosuch --out {{out}}"),
    _c("bads", "--weight-lr -1", f"bads {BADS} --weight-lr -1 --out {{out}}"),
    _c("bads", "--seed -1", f"bads {BADS} --seed -1 --out {{out}}"),
    _c("bads", "another run writes --out", f"bads {BADS} --out {{out}}", hold="{out}.npz"),
    _c("bads", "--checkpoint-dir of another run", f"bads {BADS} --out {{out}} --checkpoint-dir {{other_ckpt}}"),
    _c("bads", "--checkpoint-dir is an input", f"bads {BADS} --out {{out}} --checkpoint-dir {{train}}"),
    _c("bads", "another run uses --checkpoint-dir", f"bads {BADS} --out {{out}} --checkpoint-dir {{out}}_ckpt",
       hold="{out}_ckpt"),
    # --- jdps baseline
    _c("baseline", "unknown method", f"baseline {BADS} --method nosuch --out {{out}}"),
    _c("baseline", "random without a size", f"baseline {BADS} --method random --out {{out}}"),
    _c("baseline", "uniform with --budget", f"baseline {BADS} --method uniform --budget 5 --out {{out}}"),
    _c("baseline", "random --budget above N", f"baseline {BADS} --method random --budget 1000 --out {{out}}"),
    _c("baseline", "random --fraction 1.5", f"baseline {BADS} --method random --fraction 1.5 --out {{out}}"),
    _c("baseline", "random --fraction 0", f"baseline {BADS} --method random --fraction 0 --out {{out}}"),
    _c("baseline", "cds with --checkpoint-dir", f"baseline {BADS} --method cds --out {{out}} --checkpoint-dir {{ckdir}}"),
    _c("baseline", "--steps not whole epochs", f"baseline {BADS.replace('--epochs 1', '--steps 5')} --method uniform "
                                                "--out {out}"),
    _c("baseline", "--out is --train", f"baseline {BADS} --method uniform --out {{train}}"),
    # --- jdps features
    _c("features", "--out is --target-out", f"features {FEATURES} --out {{out}}.npy --target-out {{out}}.npy"),
    _c("features", "--out is --target-out less its .npy", f"features {FEATURES} --out {{out}} --target-out {{out}}.npy"),
    _c("features", "--out is a folder", f"features {FEATURES} --out {{folder}} --target-out {{out}}_b.npy"),
    _c("features", "--target-out in a missing folder", f"features {FEATURES} --out {{out}}.npy "
                                                       "--target-out {nofolder}/b.npy"),
    _c("features", "corrupt checkpoint npz", f"features {FEATURES.replace('{ckpt}', '{notzip}')} --out {{out}}.npy "
                                             "--target-out {out}_b.npy"),
    _c("features", "a .npy as a checkpoint", f"features {FEATURES.replace('{ckpt}', '{A}')} --out {{out}}.npy "
                                             "--target-out {out}_b.npy"),
    _c("features", "checkpoint of another model", f"features {FEATURES} --hidden 4 --out {{out}}.npy "
                                                   "--target-out {out}_b.npy"),
    _c("features", "missing checkpoint", f"features {FEATURES.replace('{ckpt}', '{missing}')} --out {{out}}.npy "
                                         "--target-out {out}_b.npy"),
    _c("features", "--checkpoints an empty folder", f"features {FEATURES.replace('{ckpt}', '{folder}')} "
                                                    "--out {out}.npy --target-out {out}_b.npy"),
    _c("features", "--checkpoint-dir is a --checkpoints folder", f"features {FEATURES} {{folder}} --out {{out}}.npy "
                                                                 "--target-out {out}_b.npy --checkpoint-dir {folder}"),
    _c("features", "--d 0", f"features {FEATURES} --d 0 --out {{out}}.npy --target-out {{out}}_b.npy"),
    _c("features", "--checkpoint-weights count", f"features {FEATURES} --checkpoint-weights 1,2 --out {{out}}.npy "
                                                 "--target-out {out}_b.npy"),
    _c("features", "--checkpoint-weights inf", f"features {FEATURES} --checkpoint-weights inf --out {{out}}.npy "
                                               "--target-out {out}_b.npy"),
    _c("features", "pool label >= --num-classes", f"features {FEATURES} --num-classes 2 --out {{out}}.npy "
                                                  "--target-out {out}_b.npy"),
    _c("features", "target label >= C", f"features {FEATURES} --target {{label3}} --out {{out}}.npy "
                                        "--target-out {out}_b.npy"),
    _c("features", "--checkpoint-dir is --out", f"features {FEATURES} --out {{out}}.npy --target-out {{out}}_b.npy "
                                                "--checkpoint-dir {out}.npy"),
    # --- jdps pursuit
    _c("pursuit", "features is an npz", f"pursuit {PURSUIT.replace('{A}', '{train}')} --out {{out}}"),
    _c("pursuit", "features file corrupt", f"pursuit {PURSUIT.replace('{A}', '{garbage_npy}')} --out {{out}}"),
    _c("pursuit", "features of integers", f"pursuit {PURSUIT.replace('{A}', '{A_int}')} --out {{out}}"),
    _c("pursuit", "features float128", f"pursuit {PURSUIT.replace('{A}', '{A_f128}')} --out {{out}}"),
    _c("pursuit", "features a vector", f"pursuit {PURSUIT.replace('{A}', '{b}')} --out {{out}}"),
    _c("pursuit", "features with no rows", f"pursuit {PURSUIT.replace('{A}', '{A_empty}')} --out {{out}}"),
    _c("pursuit", "features with NaN", f"pursuit {PURSUIT.replace('{A}', '{A_nan}')} --out {{out}}"),
    _c("pursuit", "target of another length", f"pursuit {PURSUIT.replace('{b}', '{b_short}')} --out {{out}}"),
    _c("pursuit", "--budget 0", f"pursuit {PURSUIT.replace('--budget 5', '--budget 0')} --out {{out}}"),
    _c("pursuit", "--budget above N", f"pursuit {PURSUIT.replace('--budget 5', '--budget 1000')} --out {{out}}"),
    _c("pursuit", "--fraction 0", f"pursuit {PURSUIT.replace('--budget 5', '--fraction 0')} --out {{out}}"),
    _c("pursuit", "--signed with topk", f"pursuit {PURSUIT} --signed --solver topk --out {{out}}"),
    _c("pursuit", "--tol -1", f"pursuit {PURSUIT} --tol -1 --out {{out}}"),
    _c("pursuit", "--block-rows 0", f"pursuit {PURSUIT} --block-rows 0 --out {{out}}"),
    _c("pursuit", "--out is a folder", f"pursuit {PURSUIT} --out {{folder}}"),
    _c("pursuit", "--out is --features (hard link)", f"pursuit {PURSUIT} --out {{A_link}}"),
    _c("pursuit", "another run writes --out", f"pursuit {PURSUIT} --out {{out}}", hold="{out}.npz"),
    # --- jdps influence
    _c("influence", "npz with text", f"influence {INFLUENCE.replace('{query}', '{doc}')} --out {{out}}"),
    _c("influence", "--model mlp on text", f"influence {INFLUENCE.replace('{train}', '{doc}').replace('{query}', '{doc2}')}"
                                           " --model mlp --out {out}"),
    _c("influence", "--num-classes on text", f"influence {INFLUENCE.replace('{train}', '{doc}').replace('{query}', '{doc2}')}"
                                             " --num-classes 5 --out {out}"),
    _c("influence", "empty text file", f"influence {INFLUENCE.replace('{train}', '{doc}').replace('{query}', '{empty_txt}')}"
                                       " --out {out}"),
    _c("influence", "missing --params", f"influence {INFLUENCE} --params {{missing}} --out {{out}}"),
    _c("influence", "corrupt --params npz", f"influence {INFLUENCE} --params {{truncated}} --hidden '' --out {{out}}"),
    _c("influence", "query of another shape", f"influence {INFLUENCE.replace('{query}', '{wide}')} --out {{out}}"),
    _c("influence", "query label >= C", f"influence {INFLUENCE.replace('{query}', '{label3}')} --out {{out}}"),
    _c("influence", "--window 1 on text", f"influence {INFLUENCE.replace('{train}', '{doc}').replace('{query}', '{doc2}')}"
                                          " --window 1 --out {out}"),
    _c("influence", "--d-model not a multiple of --heads",
       f"influence {INFLUENCE.replace('{train}', '{doc}').replace('{query}', '{doc2}')} --d-model 30 --heads 4 --out {{out}}"),
    _c("influence", "--params is a folder without checkpoints", f"influence {INFLUENCE} --params {{folder}} --out {{out}}"),
    _c("influence", "--damping -1", f"influence {INFLUENCE} --damping -1 --out {{out}}"),
    _c("influence", "unknown --ihvp", f"influence {INFLUENCE} --ihvp nosuch --out {{out}}"),
    _c("influence", "--out is --query", f"influence {INFLUENCE} --out {{query}}"),
    # --- jdps quad
    _c("quad", "no size", f"quad {QUAD} --out {{out}}"),
    _c("quad", "--budget above N", f"quad {QUAD} --budget 1000 --out {{out}}"),
    _c("quad", "--fraction 2", f"quad {QUAD} --fraction 2 --out {{out}}"),
    _c("quad", "--clusters above N", f"quad {QUAD.replace('--clusters 4', '--clusters 1000')} --budget 5 --out {{out}}"),
    _c("quad", "--clusters 0", f"quad {QUAD.replace('--clusters 4', '--clusters 0')} --budget 5 --out {{out}}"),
    _c("quad", "--embeddings of another length", f"quad {QUAD} --budget 5 --embeddings {{A_short}} --out {{out}}"),
    _c("quad", "--embeddings is an npz", f"quad {QUAD} --budget 5 --embeddings {{train}} --out {{out}}"),
    _c("quad", "--embeddings with NaN", f"quad {QUAD} --budget 5 --embeddings {{A_nan}} --out {{out}}"),
    _c("quad", "--share 0", f"quad {QUAD} --budget 5 --share 0 --out {{out}}"),
    _c("quad", "--radius -1", f"quad {QUAD} --budget 5 --radius -1 --out {{out}}"),
    _c("quad", "--alpha -1", f"quad {QUAD} --budget 5 --alpha -1 --out {{out}}"),
    _c("quad", "reference label >= C", f"quad {QUAD.replace('{reference}', '{label3}')} --budget 5 --out {{out}}"),
    _c("quad", "--out in a missing folder", f"quad {QUAD} --budget 5 --out {{nofolder}}/sel.npz"),
    _c("quad", "another run writes --out", f"quad {QUAD} --budget 5 --out {{out}}", hold="{out}.npz"),
    _c("quad", "--checkpoint-dir of another run", f"quad {QUAD} --budget 5 --out {{out}} --checkpoint-dir {{other_ckpt}}"),
)


# --- the files ---------------------------------------------------------------------------------------------

def _mlp_checkpoint(path: Path) -> None:
    """Parameters of `--model mlp --hidden ''` on [N, F] inputs and C classes, as `jdps features` reads them."""
    from jdps.gradients import param_filter as pf
    from jdps.models.mlp import mlp_task

    _, params = mlp_task(0, F, (), C)
    np.savez(path, **{k: np.asarray(v) for k, v in pf.flat(params).items()})


def fixtures(root: Path) -> dict[str, str]:
    """The sweep's files in `root` (created), by name; {out} is a path in the empty folder root/out."""
    root = Path(root)
    d = root / "inputs"
    d.mkdir(parents=True, exist_ok=True)
    (root / "out").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, F)).astype(np.float32)
    y = np.arange(N) % C
    files = {}

    def npz(name, **arrays):
        np.savez(d / f"{name}.npz", **arrays)
        files[name] = str(d / f"{name}.npz")

    def npy(name, array):
        np.save(d / f"{name}.npy", array)
        files[name] = str(d / f"{name}.npy")

    npz("train", x=x, y=y)
    npz("meta", x=x[:12], y=y[:12])
    npz("test", x=x[:20], y=y[:20])
    npz("pool", x=x, y=y)
    npz("reference", x=x[:10], y=y[:10])
    npz("query", x=x[:6], y=y[:6])
    npz("f128", x=x.astype(np.longdouble), y=y)
    npz("complex", x=x.astype(np.complex64), y=y)
    npz("nofeatures", x=np.zeros((N, 0), np.float32), y=y)
    npz("noexamples", x=np.zeros((0, F), np.float32), y=np.zeros(0, np.int64))
    npz("hugelabel", x=x, y=np.where(np.arange(N) == 0, 2**32 + 1, y))
    npz("neglabel", x=x, y=np.where(np.arange(N) == 0, -1, y))
    npz("floatlabel", x=x, y=y.astype(np.float32))
    npz("nan", x=np.where(np.arange(N)[:, None] == 3, np.nan, x).astype(np.float32), y=y)
    np.savez(d / "objects.npz", x=np.array([object()] * N, dtype=object), y=y)
    files["objects"] = str(d / "objects.npz")
    npz("extra", x=x, y=y, z=y)
    npz("intx", x=(x * 10).astype(np.int32), y=y)
    npz("dupids", x=x, y=y, id=np.arange(N) // 2)
    npz("label3", x=x[:10], y=np.full(10, 3))
    npz("wide", x=rng.normal(size=(12, F + 1)).astype(np.float32), y=y[:12])
    npz("train01", x=x, y=y % 2)
    npz("nolabels", x=x[:12])
    npz("shortlabels", x=x[:12], y=y[:10])
    files["meta_stem"] = files["meta"][:-len(".npz")]
    files["missing"] = str(d / "missing.npz")
    (d / "notzip.npz").write_bytes(b"this is not a zip archive" * 10)
    files["notzip"] = str(d / "notzip.npz")
    whole = (d / "train.npz").read_bytes()
    (d / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    files["truncated"] = str(d / "truncated.npz")
    _mlp_checkpoint(d / "ckpt.npz")
    files["ckpt"] = str(d / "ckpt.npz")
    a = rng.normal(size=(N, 16)).astype(np.float32)
    npy("A", a)
    npy("b", a[:5].mean(0))
    npy("A_int", (a * 10).astype(np.int64))
    npy("A_f128", a.astype(np.longdouble))
    npy("A_empty", np.zeros((0, 16), np.float32))
    npy("A_nan", np.where(np.arange(N)[:, None] == 7, np.nan, a).astype(np.float32))
    npy("A_short", a[:N - 3])
    npy("b_short", a[0, :10])
    (d / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    files["garbage_npy"] = str(d / "garbage.npy")
    (d / "A_link.npz").hardlink_to(d / "A.npy")        # another name of A.npy, ending as np.savez's output
    files["A_link"] = str(d / "A_link.npz")
    (d / "doc.txt").write_text("in the beginning was the word\nand the word was with god\n" * 5)
    (d / "doc2.txt").write_text("call me ishmael some years ago\n" * 4)
    (d / "empty.txt").write_text("\n\n")
    files.update(doc=str(d / "doc.txt"), doc2=str(d / "doc2.txt"), empty_txt=str(d / "empty.txt"))
    other = d / "other_ckpt"
    other.mkdir(exist_ok=True)
    (other / "fingerprint.json").write_text(json.dumps({"command": "another", "options": {}, "inputs": {}}))
    files["other_ckpt"] = str(other)
    (d / "folder").mkdir(exist_ok=True)
    files["folder"] = str(d / "folder")
    files["nofolder"] = str(root / "no" / "such" / "folder")
    files["ckdir"] = str(root / "out" / "ckpt")
    files["out"] = str(root / "out" / "result")
    return files


# --- one case ----------------------------------------------------------------------------------------------

@dataclass
class Result:
    case: Case
    argv: list
    status: int | None
    stderr: str
    outcome: str            # clear, traceback, accepted, other
    clobbered: list
    partial: list
    seconds: float

    @property
    def message(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def _snapshot(root: Path) -> dict:
    """{relative path: sha256} of every file under root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def argv_of(case: Case, files: dict) -> list:
    return [a.format(**files) for a in case.argv]


def run_case(case: Case, files: dict, root: Path) -> Result:
    """Run one case in this process and judge it (see the module docstring)."""
    root = Path(root)
    argv = argv_of(case, files)
    before = _snapshot(root)
    lock = OutputLock([case.hold.format(**files)]).acquire() if case.hold else None
    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    escaped = False
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = jdps_main(argv)
            except SystemExit as e:          # argparse: usage errors, --help
                status = e.code if isinstance(e.code, int) else 2
    except Exception:  # noqa: BLE001  what the sweep counts: an exception that left main
        status, escaped = None, True
        err.write(traceback.format_exc())
    finally:
        if lock is not None:
            lock.release()
    seconds = time.perf_counter() - start
    after = _snapshot(root)
    clobbered = sorted(p for p, digest in before.items() if after.get(p) != digest)
    partial = sorted(set(after) - set(before))
    stderr = err.getvalue()
    lines = [line for line in stderr.splitlines() if line.strip()]
    if escaped or "Traceback (most recent call last)" in stderr or (status == 1 and "internal error" in stderr):
        outcome = "traceback"
    elif status == 0:
        outcome = "accepted"
    elif status == 2 and len(lines) == 1 and lines[0].startswith("jdps") and ": error: " in lines[0]:
        outcome = "clear"
    else:
        outcome = "other"
    return Result(case, argv, status, stderr, outcome, clobbered, partial, seconds)


# --- the report --------------------------------------------------------------------------------------------

def report(results, command: str, seconds: float, extra: str = "") -> str:
    commands = sorted({r.case.command for r in results})
    counts = {"cases": len(results), "clear errors": sum(r.outcome == "clear" for r in results),
              "tracebacks": sum(r.outcome == "traceback" for r in results),
              "accepted (exit 0)": sum(r.outcome == "accepted" for r in results),
              "other": sum(r.outcome == "other" for r in results),
              "clobbered inputs": sum(bool(r.clobbered) for r in results),
              "partial outputs": sum(bool(r.partial) for r in results)}
    lines = [f"Command: `{command}`", "", "# Bad-input sweep of the jdps command line", "",
             (f"{len(results)} cases across {len(commands)} commands ({', '.join(commands)}), run in one process "
              f"through `jdps.cli.main.main` in {seconds:.0f} s. A clear error is exit status 2 with one line on "
              "stderr and no traceback; a clobbered input is a changed or removed input file; a partial output "
              "is any file left behind (outputs, temporaries, lock files)."), "",
             "| " + " | ".join(counts) + " |", "|---" * len(counts) + "|",
             "| " + " | ".join(str(v) for v in counts.values()) + " |", "",
             *([extra] if extra else []),
             "## The cases", "", "| command | case | exit | outcome | message |", "|---|---|---|---|---|"]
    for r in results:
        message = r.message.replace("|", "\\|")
        if len(message) > 220:
            message = message[:217] + "..."
        harm = (" (clobbered " + ", ".join(r.clobbered) + ")" if r.clobbered else "") + (
            " (left " + ", ".join(r.partial) + ")" if r.partial else "")
        lines.append(f"| {r.case.command} | {r.case.name} | {r.status} | {r.outcome}{harm} | {message} |")
    return "\n".join(lines) + "\n"


# --- resume: a real `jdps bads` killed and resumed ----------------------------------------------------

def resume_figures(root: Path, epochs: int = 30, kill_after: int = 10) -> dict:
    """Time `jdps bads` (sklearn's digits: 1,400 training and 100 meta examples, the default MLP) run whole
    without and with --checkpoint-dir, then SIGKILLed once `kill_after` epochs are saved and re-run with the
    same command; whether the resumed weights equal the uninterrupted ones bit for bit."""
    import signal
    import subprocess

    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    np.savez(root / "train.npz", x=x[:1400], y=y[:1400])
    np.savez(root / "meta.npz", x=x[1400:1500], y=y[1400:1500])
    base = [sys.executable, "-m", "jdps.cli", "bads", "--train", str(root / "train.npz"), "--meta",
            str(root / "meta.npz"), "--epochs", str(epochs), "--batch-size", "50", "--meta-batch-size", "50",
            "--seed", "1", "--quiet"]

    def timed(args):
        start = time.perf_counter()
        subprocess.run(args, check=True, cwd=ROOT, capture_output=True)
        return time.perf_counter() - start

    whole = timed([*base, "--out", str(root / "whole")])
    saved = timed([*base, "--out", str(root / "saved"), "--checkpoint-dir", str(root / "ck_saved")])
    ckpt = root / "ck_killed"
    command = [*base, "--out", str(root / "resumed"), "--checkpoint-dir", str(ckpt)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (ckpt / f"{kill_after}.sha256.json").exists() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = time.perf_counter() - start
    done = max(int(p.name) for p in ckpt.iterdir() if p.name.isdigit())
    resumed = timed(command)
    with np.load(root / "whole.npz") as a, np.load(root / "saved.npz") as b, np.load(root / "resumed.npz") as c:
        equal = bool(np.array_equal(a["weights"], c["weights"]) and np.array_equal(a["weights"], b["weights"]))
    return {"epochs": epochs, "whole_s": whole, "with_checkpoints_s": saved, "killed_after_s": killed_at,
            "epochs_saved_when_killed": done, "resumed_s": resumed, "weights_equal": equal}


def resume_section(f: dict) -> str:
    return "\n".join([
        "## Resume", "",
        (f"`jdps bads` on sklearn's digits (1,400 training, 100 meta examples, the default MLP 256-128, "
         f"{f['epochs']} epochs of 28 steps), each a fresh process (jax import and compilation included):"), "",
        "| run | seconds |", "|---|---|",
        f"| uninterrupted, no --checkpoint-dir | {f['whole_s']:.1f} |",
        f"| uninterrupted, --checkpoint-dir (a save after every epoch) | {f['with_checkpoints_s']:.1f} |",
        f"| SIGKILLed with {f['epochs_saved_when_killed']} epochs saved | {f['killed_after_s']:.1f} |",
        f"| the same command again: resumed at epoch {f['epochs_saved_when_killed']} | {f['resumed_s']:.1f} |", "",
        ("Weights of the resumed run equal the uninterrupted run's bit for bit: "
         f"{'yes' if f['weights_equal'] else 'NO'}."), ""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="path stem of the .md report")
    parser.add_argument("--resume", action="store_true", help="also kill and resume a real `jdps bads` run, timed")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/bad_input_sweep.py", *(sys.argv[1:] if argv is None else argv)])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jdps-sweep-") as tmp:
        files = fixtures(Path(tmp))
        results = []
        for case in CASES:
            results.append(run_case(case, files, Path(tmp)))
            r = results[-1]
            print(f"{r.outcome:9s} {r.status!s:4s} {r.case.command:9s} {r.case.name:45s} {r.message[:110]}",
                  flush=True)
        seconds = time.perf_counter() - start
        figures = resume_figures(Path(tmp)) if args.resume else None
    text = report(results, command, seconds, resume_section(figures) if figures else "")
    from jdps.outputs import provenance

    path = write_text(args.out.with_suffix(".md"), text, provenance(command=command))
    print(text.split("\n\n| command")[0])
    if figures:
        print(json.dumps(figures))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
