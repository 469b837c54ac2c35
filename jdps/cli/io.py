"""What every command reads and writes: its input files, checked against each other, and its outputs.

    with Run(args, inputs={"--train": path, ...}, outputs={"--out": (path, ".npz")}) as run:
        ...                                        outputs checked and locked, before any compute
        run.checkpoints()                          the --checkpoint-dir as a jdps.checkpoint.Checkpoints
        run.write_npz("--out", weights=...)        atomic, with the run's provenance; returns the path written
    load_sets({"--train": path, "--meta": path}, num_classes=None)    npz (or text) files -> Datasets and C
    read_npy(path, flag, ndim=2)                   a checked .npy array (a read-only memmap)
    out_path(path, suffix=".npz", inputs={...})    the path an output will have; checked before any compute
    write_npz / write_npy / write_json             atomic writes (jdps.outputs: a temporary file in the same
                                                   folder, then os.replace); each returns the path written

Every output records its provenance (jdps version, the command and its options, the seed, a fingerprint
of the inputs): an npz as its string entry `provenance`, a JSON file under the key `provenance`, a .npy
in the sidecar `<name>.npy.json`. Two runs on one output path cannot interleave: each takes an
fcntl.flock on `<output>.lock` before any compute, and the second stops with exit status 2 naming the
running one's pid.

An npz holds `x` float [N, ...], `y` int [N] and optionally `id` [N] (`jdps.data.user_arrays.load_npz`). A
text file holds one document per line, cut into byte-token windows (`jdps.data.text.windows`). The first
file given is the training file: the others must hold examples of its shape, and labels in [0, C), C
being --num-classes when given, else the number of classes of the training file's labels (max + 1).

Library modules are imported inside the functions, so building the parser imports no jax.
"""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple, Self

import numpy as np

from jdps import outputs
from jdps.errors import InputError
from jdps.outputs import atomic, suffixed, write_json, write_npy, write_npz  # noqa: F401  (the commands' writers)


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
        if c > np.iinfo(np.int32).max:
            raise InputError(f"--num-classes {c} is beyond the int32 class ids jdps uses (< 2**31); pass the true "
                             "number of classes")
    for flag, d in sets.items():
        y = check_labels(f"{flag} {files[flag]} labels", d.y)
        bad = np.unique(y[(y < 0) | (y >= c)])
        if bad.size:
            raise InputError(f"{flag} {files[flag]} holds labels {bad[:5].tolist()} outside [0, {c}), where "
                             f"C = {c} is {source}; relabel them to 0..{c - 1} or drop those examples, or pass "
                             "--num-classes with the true number of classes")
    return Sets(sets, c, False)


REAL = tuple(np.dtype(t) for t in (np.float16, np.float32, np.float64))


def read_npy(path, flag: str, ndim: int | None = None) -> np.ndarray:
    """A .npy array of floats as a read-only memmap (np.asarray it to load it), with `ndim` dimensions
    (2: at least one row and one column)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no file {path} for {flag}; write it with np.save (e.g. by `jdps features`)")
    try:
        a = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{flag} {path} is not a readable .npy array ({str(err)[:120]}); write it with "
                         "np.save") from None
    if not isinstance(a, np.ndarray):   # an npz archive: np.load gives an NpzFile
        a.close()
        raise InputError(f"{flag} {path} is an npz archive, not a .npy array; pass the .npy file (np.save), "
                         "e.g. the --out of `jdps features`")
    if a.dtype not in REAL:
        raise InputError(f"{flag} {path} has dtype {a.dtype}; it must hold float16/32/64 numbers: save it as "
                         "a.astype(np.float32)")
    if ndim is not None and a.ndim != ndim:
        want = "a matrix [N, F]" if ndim == 2 else "a vector [F]"
        raise InputError(f"{flag} {path} has shape {a.shape} but must be {want}")
    if 0 in a.shape:
        raise InputError(f"{flag} {path} has shape {a.shape}: it holds no values; pass a non-empty array")
    return a


def _paths(value) -> list:
    return [value] if isinstance(value, (str, os.PathLike)) else [p for p in (value or ()) if p is not None]


def _same(a: Path, b: Path) -> bool:
    """The same file: one resolved path, or one inode (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _can_create(folder: Path) -> bool:
    """Whether a file can be created in `folder` (tried: permissions, a read-only or special file system)."""
    probe = folder / f".jdps-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError:
        return False
    probe.unlink(missing_ok=True)
    return True


def out_path(path, suffix: str = "", *, flag: str = "--out", inputs: Mapping[str, object] | None = None) -> Path:
    """The path an output at `path` will have (`suffix` appended as numpy does), checked before any work:
    its folder exists and is writable, it is no folder, and it is none of `inputs` ({flag: path or paths})."""
    if not str(path).strip():
        raise InputError(f"{flag} is empty; give a file path")
    if Path(path).is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file path (e.g. {Path(path) / ('out' + suffix)})")
    out = suffixed(path, suffix)
    folder = out.parent.resolve()
    if not folder.is_dir():
        raise InputError(f"{flag} {out}: the folder {folder} does not exist; create it (mkdir -p {folder}) "
                         "or write elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK) or not _can_create(folder):
        raise InputError(f"{flag} {out}: the folder {folder} is not writable; write elsewhere")
    if out.is_dir():
        raise InputError(f"{flag} {out} is a folder; give a file path")
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"{flag} {out} exists and is read-only; remove it or write elsewhere")
    for name, paths in (inputs or {}).items():
        for p in _paths(paths):
            if _same(out, Path(p)):
                raise InputError(f"{flag} {out} is also the input {name}; writing it would overwrite that "
                                 "input: give the output another path")
    return out


class Run:
    """One command run: its outputs checked (folder, writable, none an input or another output) and locked
    before any compute, its checkpoint directory, and its writes, each atomic and with the provenance.

    inputs: {flag: path, paths or None}; outputs: {flag: (path or None, suffix)}; sidecar: flags of .npy
    outputs that get `<path>.json`; checkpoint_dir: --checkpoint-dir (None: no resume); fingerprint_exclude:
    options that do not change the results (the output paths, --quiet, ...).

    A multi-process run (--coordinator, --num-processes, --process-id, or a cluster launcher's environment;
    jdps.distributed) starts jax.distributed once the outputs are checked; only process 0 then locks and
    writes the outputs and prints, the others compute their shares and write nothing. `mesh()` is the
    global mesh when there is more than one device (every process's), else None."""

    QUIET = ("out", "target_out", "quiet", "debug", "checkpoint_dir", "coordinator", "num_processes", "process_id")

    def __init__(self, args, *, inputs: Mapping[str, object], outputs: Mapping[str, tuple], checkpoint_dir=None):
        self.args = args
        self.inputs = {flag: v for flag, v in inputs.items() if v is not None and v != []}
        self.outputs_given = {flag: v for flag, v in outputs.items() if v[0] is not None}
        self.checkpoint_dir = checkpoint_dir
        self.paths: dict[str, Path] = {}
        self._lock = None
        self._fingerprint = None
        self._checkpoints = []
        self.writer = True
        self._stdout = None

    # --- before any compute ---
    def __enter__(self) -> Self:
        for flag, (path, suffix) in self.outputs_given.items():
            out = out_path(path, suffix, flag=flag, inputs={**self.inputs, **self.paths})
            if suffix == ".npy":
                sidecar = Path(f"{out}.json")
                for name, p in {**self.inputs, **self.paths}.items():
                    if any(_same(sidecar, Path(q)) for q in _paths(p)):
                        raise InputError(f"{flag} {out} would write its provenance to {sidecar}, which is the "
                                         f"input {name}; give the output another path")
            self.paths[flag] = out
        locked = list(self.paths.values())
        if self.checkpoint_dir is not None:
            locked.append(self._check_checkpoint_dir())
        self._start_processes()
        if not self.writer:
            return self
        self._lock = outputs.OutputLock(locked).acquire()
        for out in self.paths.values():       # locked: a temporary beside an output is a killed run's
            outputs.remove_stale_temporaries(out)
        return self

    def _start_processes(self) -> None:
        """Join a multi-process run when the flags (or JDPS_* variables, or a launcher) ask for one; jax is
        imported only then. A process other than 0 prints nothing."""
        from jdps import distributed

        a = self.args
        settings = (getattr(a, "coordinator", None), getattr(a, "num_processes", None), getattr(a, "process_id", None))
        if not hasattr(a, "mesh_model"):
            return
        if distributed.check_settings(*settings) or distributed.launched():
            distributed.initialize(*settings)
            self.writer = distributed.is_writer()
            if not self.writer:
                import sys

                self._stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115 (closed in __exit__)

    def mesh(self):
        """The global mesh (axes 'data' and, with --mesh-model > 1, 'model') over every device of every
        process; None on a single device."""
        import jax

        from jdps import distributed

        model = getattr(self.args, "mesh_model", 1)
        if jax.device_count() == 1 and model == 1:
            return None
        return distributed.make_mesh(model=model)

    def atomic(self, flag: str):
        """`jdps.outputs.atomic` of the output `flag` on the writing process; elsewhere a context yielding None."""
        from contextlib import nullcontext

        return atomic(self.paths[flag]) if self.writer else nullcontext(None)

    def _check_checkpoint_dir(self) -> Path:
        d = Path(self.checkpoint_dir)
        if not str(self.checkpoint_dir).strip():
            raise InputError("--checkpoint-dir is empty; give a directory path")
        if d.exists() and not d.is_dir():
            raise InputError(f"--checkpoint-dir {d} is a file; give a directory (it is created if missing)")
        parent = d.absolute().parent
        if not parent.is_dir():
            raise InputError(f"--checkpoint-dir {d}: the folder {parent} does not exist; create it "
                             f"(mkdir -p {parent}) or pass another directory")
        if not _can_create(d if d.is_dir() else parent):
            raise InputError(f"--checkpoint-dir {d} is not writable; pass a directory in a writable place")
        for name, p in {**self.inputs, **self.paths}.items():
            if any(_same(d, Path(q)) for q in _paths(p)):
                raise InputError(f"--checkpoint-dir {d} is also {name}; pass a directory of its own for the "
                                 "progress of this run")
        return d

    def fingerprint(self) -> dict:
        """{path: digest} of the inputs (computed once, after they were read)."""
        if self._fingerprint is None:
            self._fingerprint = outputs.inputs_fingerprint([p for v in self.inputs.values() for p in _paths(v)])
        return self._fingerprint

    def options(self) -> dict:
        from jdps.cli import flags

        return flags.options(self.args, exclude=self.QUIET)

    def provenance(self) -> dict:
        argv = getattr(self.args, "argv", None)
        command = "jdps " + (shlex.join(argv) if argv is not None else self.args.command)
        return outputs.provenance(command=command, options=self.options(), seed=getattr(self.args, "seed", None),
                                  inputs=self.fingerprint())

    def identity(self, exclude=()) -> dict:
        """What makes this run's results: the command, its options (`exclude`d ones and the output paths
        left out) and its inputs' digests (not their paths): a resumed run must match it."""
        paths = {flag.lstrip("-").replace("-", "_") for flag in self.inputs}   # compared by their digests
        options = {k: v for k, v in self.options().items() if k not in paths and k not in exclude}
        digests = self.fingerprint()
        inputs = {flag: [digests[str(Path(p).resolve())] for p in _paths(v)] for flag, v in self.inputs.items()}
        return {"command": self.args.command, "options": options, "inputs": inputs}

    def checkpoints(self, sub: str | None = None, *, max_to_keep: int | None = 3):
        """The Checkpoints of --checkpoint-dir (or its subfolder `sub`), fingerprinted by the command, its
        options and its inputs; None without --checkpoint-dir."""
        if self.checkpoint_dir is None:
            return None
        from jdps.checkpoint import Checkpoints

        d = Path(self.checkpoint_dir) if sub is None else Path(self.checkpoint_dir) / sub
        fingerprint = self.identity()
        if sub is not None:          # the directory itself is claimed too: another run's is refused
            top = Checkpoints(self.checkpoint_dir, max_to_keep=1, fingerprint=fingerprint)
            top.close()
        ckpt = Checkpoints(d, max_to_keep=max_to_keep, fingerprint=fingerprint)
        self._checkpoints.append(ckpt)
        return ckpt

    # --- the writes ---
    def path(self, flag: str = "--out") -> Path:
        return self.paths[flag]

    def write_npz(self, flag: str = "--out", **arrays) -> Path:
        return write_npz(self.paths[flag], self.provenance(), **arrays) if self.writer else self.paths[flag]

    def write_npy(self, flag: str, array) -> Path:
        return write_npy(self.paths[flag], array, self.provenance()) if self.writer else self.paths[flag]

    def write_json(self, flag: str, obj: dict) -> Path:
        return write_json(self.paths[flag], obj, self.provenance()) if self.writer else self.paths[flag]

    def sidecar(self, flag: str) -> Path:
        """<output>.json with the provenance, for a .npy written another way (e.g. through `atomic`)."""
        return outputs.write_sidecar(self.paths[flag], self.provenance()) if self.writer else self.paths[flag]

    def __exit__(self, *exc) -> None:
        try:
            for ckpt in self._checkpoints:
                ckpt.close()
        finally:
            if self._lock is not None:
                self._lock.release()
            if self._stdout is not None:
                import sys

                sys.stdout.close()
                sys.stdout, self._stdout = self._stdout, None
