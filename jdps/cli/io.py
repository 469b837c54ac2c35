"""What every command reads and writes: its input files, checked against each other, and its outputs.

    load_sets({"--train": path, "--meta": path}, num_classes=None)    npz (or text) files -> Datasets and C
    out_path(path, suffix=".npz", inputs={...})    the path an output will have; checked before any compute
    write_npz / write_npy / write_json             atomic writes (a temporary file in the same folder, then
                                                   os.replace); each returns the path written

An npz holds `x` float [N, ...], `y` int [N] and optionally `id` [N] (`jdps.data.user_arrays.load_npz`). A
text file holds one document per line, cut into byte-token windows (`jdps.data.text.windows`). The first
file given is the training file: the others must hold examples of its shape, and labels in [0, C), C
being --num-classes when given, else the number of classes of the training file's labels (max + 1).

Library modules are imported inside the functions, so building the parser imports no jax.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jdps.errors import InputError


class Sets(NamedTuple):
    """The Datasets by flag (in the order given), the number of classes C (None without labels), and
    whether they came from text files."""

    sets: dict
    num_classes: int | None
    text: bool


def is_text(path) -> bool:
    return not str(path).endswith(".npz")


def read_text(path, flag: str, window: int):
    """One document per non-empty line -> byte-token windows (a Dataset with x int32 [N, window])."""
    from jdps.data.dataset import Document
    from jdps.data.text import windows

    p = Path(path)
    if not p.is_file():
        raise InputError(f"no file {p} for {flag}; pass an npz file (x, y) or a text file, one document per line")
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    docs = [Document(line, p.stem, f"{p.stem}:{i + 1}") for i, line in enumerate(lines) if line.strip()]
    if not docs:
        raise InputError(f"{flag} {p} holds no text; write one document per line")
    return windows(docs, window)


def load_sets(files: Mapping[str, str], num_classes: int | None = None, labels: bool = True, *,
              window: int | None = None, same_classes: Iterable[str] = ()) -> Sets:
    """The files {flag: path} (None paths left out) as Datasets, checked against the first (the training
    file). With `window`, all may be text files instead (one document per line, no labels). `same_classes`:
    flags whose classes must all occur in the training file (a meta set whose class no training example
    has cannot be served by any training weight)."""
    from jdps.data.user_arrays import load_npz
    from jdps.validate import check_labels

    files = {flag: path for flag, path in files.items() if path is not None}
    first = next(iter(files))
    kinds = {is_text(path) for path in files.values()} if window is not None else {False}
    if len(kinds) > 1:
        raise InputError(f"{' and '.join(files)} must all be npz files or all text files; got {list(files.values())}")
    if kinds.pop():
        return Sets({flag: read_text(path, flag, window) for flag, path in files.items()}, None, True)
    sets = {flag: load_npz(path) for flag, path in files.items()}
    shape = sets[first].x.shape[1:]
    for flag, d in sets.items():
        if d.x.shape[1:] != shape:
            raise InputError(f"{flag} examples have shape {d.x.shape[1:]} but {first} examples have {shape}; "
                             "every npz must hold inputs of one shape")
        if labels and d.y is None:
            raise InputError(f"{flag} {files[flag]} has no labels; save them as y: np.savez(path, x=..., y=...) "
                             "(a classifier's loss needs integer labels `y` [N])")
    if not labels:
        return Sets(sets, None, False)
    train = sets[first]
    seen = set(np.unique(train.y).tolist())
    for flag in same_classes:
        unseen = sorted(set(np.unique(sets[flag].y).tolist()) - seen) if flag in sets else []
        if unseen:
            raise InputError(f"{flag} {files[flag]} has classes {unseen} that no training example has, so no "
                             f"training weight can serve them; drop those examples or add training examples of them")
    if num_classes is None:
        c, source = int(train.info.num_classes or int(train.y.max()) + 1), f"the classes of {first} {files[first]}"
    else:
        c, source = int(num_classes), "--num-classes"
        if c < 1:
            raise InputError(f"--num-classes must be a positive integer, got {num_classes}")
    for flag, d in sets.items():
        y = check_labels(f"{flag} {files[flag]} labels", d.y)
        bad = np.unique(y[(y < 0) | (y >= c)])
        if bad.size:
            raise InputError(f"{flag} {files[flag]} holds labels {bad[:5].tolist()} outside [0, {c}), where "
                             f"C = {c} is {source}; relabel them to 0..{c - 1} or drop those examples, or pass "
                             "--num-classes with the true number of classes")
    return Sets(sets, c, False)


def read_npy(path, flag: str) -> np.ndarray:
    """A .npy array as a read-only memmap (np.asarray it to load it)."""
    if not Path(path).is_file():
        raise InputError(f"no file {path} for {flag}; write it with np.save (e.g. by `jdps features`)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise InputError(f"{flag} {path} is not a readable .npy array ({err}); write it with np.save") from None


def _suffixed(path, suffix: str) -> Path:
    """np.save / np.savez's rule: the suffix is appended unless the path already ends with it."""
    path = Path(path)
    return path if not suffix or path.name.endswith(suffix) else path.with_name(path.name + suffix)


def out_path(path, suffix: str = "", *, flag: str = "--out", inputs: Mapping[str, object] | None = None) -> Path:
    """The path an output at `path` will have (`suffix` appended as numpy does), checked before any work:
    its folder exists and is writable, it is no folder, and it is none of `inputs` ({flag: path or paths})."""
    out = _suffixed(path, suffix)
    folder = out.parent.resolve()
    if not folder.is_dir():
        raise InputError(f"{flag} {out}: the folder {folder} does not exist; create it (mkdir -p {folder}) "
                         "or write elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {out}: the folder {folder} is not writable; write elsewhere")
    if out.is_dir():
        raise InputError(f"{flag} {out} is a folder; give a file path")
    for name, paths in (inputs or {}).items():
        for p in [paths] if isinstance(paths, (str, os.PathLike)) else (paths or ()):
            if p is not None and out.resolve() == Path(p).resolve():
                raise InputError(f"{flag} {out} is also the input {name}; writing it would overwrite that "
                                 "input: give the output another path")
    return out


@contextmanager
def atomic(path):
    """Yield a temporary path beside `path`; on success it replaces `path` (os.replace), else it is removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask's permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_npz(path, **arrays) -> Path:
    """np.savez(path, **arrays), atomically; returns the path written (`.npz` appended as np.savez does)."""
    path = _suffixed(path, ".npz")
    with atomic(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def write_npy(path, array) -> Path:
    """np.save(path, array), atomically; returns the path written (`.npy` appended as np.save does)."""
    path = _suffixed(path, ".npy")
    with atomic(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return path


def write_json(path, obj) -> Path:
    """`obj` as indented JSON at `path`, atomically; returns the path written."""
    path = Path(path)
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1))
    return path
