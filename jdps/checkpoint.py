"""Checkpoints of any pytree (params, optimizer or sampler state) through orbax's CheckpointManager.

A run saves its state every so often and, killed, resumes from the latest good step to the same result:

    ckpt = Checkpoints(directory, max_to_keep=3, fingerprint={"options": ..., "inputs": ...})
    ckpt.save(step, state)                          # a pytree of arrays (jax keys included)
    step, state = ckpt.restore_latest(like=state)   # (None, like) when nothing is saved yet

`like` is a pytree of the same structure (arrays or `jax.ShapeDtypeStruct`s, with shardings to restore
onto a mesh). Every saved step gets a sha256 of each of its files (orbax keeps none), so a truncated,
missing or altered file is found: `restore_latest` then falls back to the previous good step with a
one-line warning. A `fingerprint` (what made the run: options, input digests, `inputs_fingerprint`) is
stored once; a directory made by another fingerprint is refused. Temporary folders left by a killed save
are removed when the directory is opened. `restore` of one step raises `CheckpointError` naming the fix.
In a multi-process run (`jdps.distributed`) every process calls the same methods on one shared directory: orbax writes each process's shards of the
global arrays, and only the writing process writes the checksums and the fingerprint, the others waiting.

    params_list = load_params(["run/ckpt", "epoch3.npz"], params)   # model parameters, as the command lines read them
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jdps import distributed as dist
from jdps.gradients import param_filter as pf
from jdps.errors import CheckpointError, InputError
from jdps.outputs import LARGE, inputs_fingerprint  # noqa: F401  (re-exported: the fingerprint of a run's inputs)
from jdps.outputs import sha256 as _sha256
from jdps.outputs import write_json


SUMS = "sha256.json"          # beside each step's files: {relative path: sha256}
FINGERPRINT = "fingerprint.json"


def _differences(have, want, prefix: str = "") -> list[str]:
    """The dotted keys in which two fingerprints differ (a few)."""
    if not (isinstance(have, dict) and isinstance(want, dict)):
        return [prefix.rstrip(".") or "all"]
    out = []
    for k in sorted(set(have) | set(want)):
        if have.get(k) != want.get(k):
            out += _differences(have.get(k), want.get(k), f"{prefix}{k}.")
    return out[:6]


def check_fingerprint(directory: Path, fingerprint: dict) -> None:
    """Claim `directory` (existing) for the run that `fingerprint` describes: store it there the first
    time; raise InputError when the directory holds another run's fingerprint, or steps without one."""
    directory = Path(directory)
    path = directory / FINGERPRINT
    want = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
    if path.exists():
        try:
            have = json.loads(path.read_text())
        except (OSError, ValueError):
            raise InputError(f"checkpoint directory {directory} has an unreadable {FINGERPRINT}; delete the "
                             "directory to start over, or pass another --checkpoint-dir") from None
        if have != want:
            raise InputError(f"checkpoint directory {directory} belongs to a run with other inputs or "
                             f"options (they differ in {', '.join(_differences(have, want)) or 'all'}); pass another "
                             "--checkpoint-dir, or delete this one to start over")
    elif any(p.name.isdigit() for p in directory.iterdir()):
        raise InputError(f"checkpoint directory {directory} holds checkpoints without a fingerprint; "
                         "pass an empty or new directory")
    else:
        write_json(path, want)


class Checkpoints:
    """Numbered checkpoints of one run in `directory` (created if missing); keeps the last `max_to_keep`."""

    def __init__(self, directory: str | Path, *, max_to_keep: int | None = 3, fingerprint: dict | None = None,
                 read_only: bool = False):
        self.directory = Path(directory).absolute()
        if self.directory.exists() and not self.directory.is_dir():
            raise InputError(f"checkpoint directory {self.directory} is a file; pass a directory path")
        if read_only:  # another run's checkpoints, read as inputs: nothing is created, cleaned or written
            if not self.directory.is_dir():
                raise InputError(f"no checkpoint directory {self.directory}; pass a directory written by "
                                 "jdps.checkpoint.Checkpoints, or .npz files")
        else:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise InputError(f"cannot create the checkpoint directory {self.directory} ({err.strerror}); "
                                 "pass a directory in a writable place") from None
            if not os.access(self.directory, os.W_OK | os.X_OK):
                raise InputError(f"the checkpoint directory {self.directory} is not writable; pass another one")
            if dist.is_writer():
                self._clean_stale()
                if fingerprint is not None:
                    check_fingerprint(self.directory, fingerprint)
            dist.barrier(f"jdps-checkpoints-open:{self.directory}")
            if fingerprint is not None and not dist.is_writer():
                check_fingerprint(self.directory, fingerprint)   # the writer stored it: this only compares
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=not read_only, read_only=read_only,
                                               enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def _clean_stale(self) -> None:
        """Remove the temporary folders a killed save leaves behind (orbax names them *.orbax-checkpoint-tmp*)."""
        for p in self.directory.iterdir():
            if "orbax-checkpoint-tmp" in p.name or p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def steps(self) -> list[int]:
        """The saved steps, ascending."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state) -> None:
        """Save the pytree `state` as checkpoint `step` (and wait until it is on disk), with its checksums."""
        state = jax.tree.map(_storable, state)
        if int(step) in self._manager.all_steps():     # a corrupt step a resumed run skipped: replaced
            (self.directory / f"{int(step)}.{SUMS}").unlink(missing_ok=True)
            self._manager.delete(int(step))
        self._manager.save(int(step), args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()
        if dist.is_writer():
            folder = self.directory / str(int(step))
            sums = {str(f.relative_to(folder)): _sha256(f) for f in sorted(folder.rglob("*")) if f.is_file()}
            write_json(self.directory / f"{int(step)}.{SUMS}", sums)
            for stale in self.directory.glob(f"*.{SUMS}"):  # sums of steps max_to_keep removed
                if not (self.directory / stale.name.split(".")[0]).exists():
                    stale.unlink(missing_ok=True)
        dist.barrier(f"jdps-checkpoints-save:{self.directory}:{int(step)}")

    def verify(self, step: int) -> str | None:
        """None when every file of `step` matches its checksum, else what is wrong."""
        folder, sums_path = self.directory / str(int(step)), self.directory / f"{int(step)}.{SUMS}"
        if not sums_path.exists():
            return "no checksums (the save did not finish)"
        sums = json.loads(sums_path.read_text())
        for name, digest in sums.items():
            f = folder / name
            if not f.is_file():
                return f"file {name} is missing"
            if _sha256(f) != digest:
                return f"file {name} was altered or truncated"
        return None

    def restore(self, step: int, like=None):
        """The pytree saved at `step`, shaped like `like` (None: as saved, numpy arrays as numpy arrays)."""
        if step not in self.steps():
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory}; saved steps: "
                                  f"{self.steps() or 'none'}")
        problem = self.verify(step) if (self.directory / f"{int(step)}.{SUMS}").exists() else None
        if problem:
            raise CheckpointError(f"checkpoint {step} in {self.directory} is corrupt or from another run: {problem}; delete "
                                  f"{self.directory / str(step)} to fall back to the previous step")
        template = None if like is None else jax.tree.map(_abstract, like)
        try:
            restored = self._manager.restore(int(step), args=ocp.args.StandardRestore(template))
        except Exception as e:  # orbax raises many types for unreadable or mismatched files
            message = str(e).strip().splitlines()[-1][:300] if str(e).strip() else ""
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} cannot be read as the expected state ({type(e).__name__}: "
                f"{message}); it is corrupt or from another run: delete {self.directory / str(step)} to "
                "fall back to the previous step, or start a new run in an empty directory") from None
        return restored if like is None else jax.tree.map(_restored, like, restored)

    def restore_latest(self, like, *, warn=None):
        """(step, state) of the latest good checkpoint, or (None, like) when there is none; a corrupt newer
        step is skipped with a one-line warning (to stderr, or `warn(message)`)."""
        warn = warn or (lambda message: print(message, file=sys.stderr))
        for step in reversed(self.steps()):
            try:
                return step, self.restore(step, like)  # verifies the checksums where the save wrote them
            except CheckpointError as e:
                warn(f"jdps: warning: checkpoint {step} in {self.directory} is unusable ({str(e)[:160]}); "
                     "falling back to the previous step")
        return None, like

    def close(self) -> None:
        self._manager.close()


def _from_npz(path: Path, template):
    """Params shaped like `template` from an npz keyed by '/'-joined parameter paths."""
    try:
        f = np.load(path, allow_pickle=False)
        if not hasattr(f, "files"):
            raise InputError(f"checkpoint {path} is a single .npy array, not an npz of parameters; save it "
                             "with np.savez(path, **jdps.gradients.param_filter.flat(params))")
        with f:
            stored = {k: f[k] for k in f.files}
    except InputError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as err:  # unreadable bytes
        raise InputError(f"checkpoint {path} is not a readable npz of parameters ({type(err).__name__}: "
                         f"{str(err)[:120]}); it is corrupt or truncated: save it again with np.savez(path, "
                         "**jdps.gradients.param_filter.flat(params))") from None
    want = pf.flat(template)
    missing = [p for p in want if p not in stored]
    if missing:
        raise InputError(f"checkpoint {path} lacks parameters {missing[:5]} (it holds {sorted(stored)[:5]}...); "
                         "save it with np.savez(path, **jdps.gradients.param_filter.flat(params)) from the same model "
                         "(--model, --hidden)")
    odd = [(p, stored[p].dtype) for p in want if stored[p].dtype.kind not in "fiu"]
    if odd:
        raise InputError(f"checkpoint {path}: parameter {odd[0][0]} has dtype {odd[0][1]}; parameters must be real "
                         "numbers: save them as float32")
    bad = [(p, stored[p].shape, np.shape(v)) for p, v in want.items() if stored[p].shape != np.shape(v)]
    if bad:
        p, got, need = bad[0]
        raise InputError(f"checkpoint {path}: parameter {p} has shape {got} but the model needs {need}; pass the "
                         "--model and --hidden the checkpoint was trained with")
    return pf.put(template, {p: stored[p].astype(np.asarray(v).dtype) for p, v in want.items()})


def load_params(paths, template, *, latest: bool = False) -> list:
    """Params pytrees shaped like `template` from `.npz` files (keyed by '/'-joined parameter paths, as
    `np.savez(path, **jdps.gradients.param_filter.flat(params))` writes them) and `Checkpoints` directories (every
    saved step in order, or only the latest with latest=True), in the order of `paths`."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            ckpt = Checkpoints(p, max_to_keep=None, read_only=True)
            try:
                steps = ckpt.steps()
                if not steps:
                    raise InputError(f"{p} holds no checkpoint steps; pass a directory written by "
                                     "jdps.checkpoint.Checkpoints(dir).save(step, params), or .npz files")
                out += [ckpt.restore(step, template) for step in (steps[-1:] if latest else steps)]
            finally:
                ckpt.close()
        elif p.is_file():
            out.append(_from_npz(p, template))
        else:
            raise InputError(f"no checkpoint {p}: pass .npz parameter files or Checkpoints directories")
    return out


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _storable(x):
    return jax.random.key_data(x) if _is_key(x) else x


def _abstract(x):
    x = _storable(x) if _is_key(x) else x
    sharding = getattr(x, "sharding", None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _restored(like, value):
    return jax.random.wrap_key_data(value, impl=jax.random.key_impl(like)) if _is_key(like) else value
