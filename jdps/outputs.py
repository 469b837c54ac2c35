"""Writing results safely: atomic files, one writer per output path, and the provenance of every output.

    with atomic(path) as tmp: ...                  write tmp (a file beside path); renamed onto path on success
    write_npz / write_npy / write_json / write_text     atomic writes with an optional `provenance` record
    with OutputLock([out1, out2]): ...             an fcntl.flock on <out>.lock beside each output, so a
                                                   second run on one output path stops at once, naming the
                                                   running one (its pid)
    remove_stale_temporaries(out)                  a killed write's temporaries beside `out` (lock held)
    provenance(command=, options=, seed=, inputs=)   what made an output: jdps version, command and options,
                                                   seed, a fingerprint of the inputs
    inputs_fingerprint(paths)                      {path: sha256} of files under 100 MB, {path: size:mtime}
                                                   above; a folder by its files' names, sizes and times

An interrupted write leaves the previous file or nothing, never a partial one: every file is written to a
temporary file in the same folder (`.<name>.<random>.tmp`) and moved into place with os.replace. Where
each output keeps its provenance: an npz as the string entry `provenance` (JSON), a JSON file under the
key `provenance`, a Markdown file as a last line `Provenance: {...}`, a .npy in the sidecar `<name>.json`
(A.npy -> A.npy.json), a PNG in its `Description` text chunk.

This module imports no jax, so the command lines check and lock their outputs before loading it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import numpy as np

from jdps.errors import InputError

LARGE = 100 * 2**20           # inputs larger than this are fingerprinted by size and modification time
LOCK_SUFFIX = ".lock"


# --- fingerprints and provenance -------------------------------------------------------------------------

def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _folder_fingerprint(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return "folder:" + h.hexdigest()


def inputs_fingerprint(paths) -> dict:
    """{path: sha256} of input files under 100 MB, {path: "size:mtime"} of larger ones, {path:
    "folder:<sha256 of its files' names, sizes and times>"} of folders (paths resolved)."""
    out = {}
    for p in map(Path, paths):
        try:
            if p.is_dir():
                out[str(p.resolve())] = _folder_fingerprint(p)
                continue
            st = p.stat()
            out[str(p.resolve())] = sha256(p) if st.st_size < LARGE else f"{st.st_size}:{st.st_mtime_ns}"
        except OSError as err:
            raise InputError(f"cannot read the input {p} ({err.strerror or err}); check the path and its "
                             "permissions") from None
    return out


def version() -> str:
    from jdps import __version__

    return __version__


def provenance(*, command: str, options: Mapping | None = None, seed=None, inputs: Mapping | None = None) -> dict:
    """The record every output carries: jdps version, the command and its options, the seed and the
    inputs' fingerprint ({path: digest})."""
    return {"jdps": version(), "command": command, "options": dict(options or {}), "seed": seed,
            "inputs": dict(inputs or {})}


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


# --- atomic writes ---------------------------------------------------------------------------------------

def suffixed(path, suffix: str) -> Path:
    """np.save / np.savez's rule: the suffix is appended unless the path already ends with it."""
    path = Path(path)
    return path if not suffix or path.name.endswith(suffix) else path.with_name(path.name + suffix)


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


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporary files `atomic` left beside `path` (a killed write's): call it holding the
    output's lock (`OutputLock`), so that no live writer owns them. Returns the files removed."""
    path = Path(path)
    stale = [p for p in path.parent.glob(f".{path.name}.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_npz(path, provenance: dict | None = None, **arrays) -> Path:
    """np.savez(path, **arrays), atomically, with `provenance` as the JSON string entry `provenance`;
    returns the path written (`.npz` appended as np.savez does)."""
    path = suffixed(path, ".npz")
    if provenance is not None:
        arrays["provenance"] = np.str_(_json(provenance))
    with atomic(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def write_npy(path, array, provenance: dict | None = None) -> Path:
    """np.save(path, array), atomically, and `provenance` in the sidecar <path>.json; returns the path
    written (`.npy` appended as np.save does)."""
    path = suffixed(path, ".npy")
    with atomic(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    if provenance is not None:
        write_sidecar(path, provenance)
    return path


def write_sidecar(path, provenance: dict) -> Path:
    """<path>.json holding `provenance` (for files that have no room for it, such as .npy)."""
    return write_json(Path(f"{path}.json"), {"file": Path(path).name, "provenance": provenance})


def write_json(path, obj, provenance: dict | None = None) -> Path:
    """`obj` (a dict gets the key `provenance`) as indented JSON at `path`, atomically; returns the path."""
    path = Path(path)
    if provenance is not None:
        obj = {**obj, "provenance": provenance}
    with atomic(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=str) + "\n")
    return path


def write_text(path, text: str, provenance: dict | None = None) -> Path:
    """`text` at `path`, atomically, with a last line `Provenance: {...}` (Markdown); returns the path."""
    path = Path(path)
    if provenance is not None:
        text = text.rstrip("\n") + f"\n\nProvenance: `{_json(provenance)}`\n"
    with atomic(path) as tmp:
        tmp.write_text(text)
    return path


# --- one writer per output --------------------------------------------------------------------------------

def lock_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


class OutputLock:
    """Exclusive locks (fcntl.flock, never waiting) on <path>.lock beside each of `paths`, holding the
    locker's pid. A path another run holds raises InputError naming that run; the lock files are removed
    on release. Use as a context manager, or acquire() / release()."""

    def __init__(self, paths: Iterable, what: str = "output"):
        self.paths = sorted({lock_path(Path(p).absolute()) for p in paths})
        self.what = what
        self._held: list[tuple[Path, int]] = []

    def acquire(self) -> Self:
        try:
            for lock in self.paths:
                self._held.append((lock, _lock(lock, self.what)))
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        for lock, fd in reversed(self._held):
            try:
                if _same_file(fd, lock):
                    lock.unlink(missing_ok=True)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        self._held = []

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _lock(lock: Path, what: str) -> int:
    """An fd holding the flock of `lock` (created if missing), the pid written in it."""
    target = lock.with_name(lock.name[: -len(LOCK_SUFFIX)])
    for _ in range(20):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise InputError(f"cannot create the lock file {lock} for the {what} {target} ({err.strerror}); "
                             "write the output to a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise InputError(f"cannot lock {lock} ({err.strerror}); write the output elsewhere") from None
            raise InputError(f"another jdps run{holder} is writing the {what} {target} (it holds {lock}); wait "
                             f"for it to finish, or choose another path") from None
        if _same_file(fd, lock):        # not removed by a run that just released it
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    raise InputError(f"cannot take the lock {lock}: it keeps being replaced; is another run starting on it?")


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        pid = ""
    return f" (pid {pid})" if pid.isdigit() else ""
