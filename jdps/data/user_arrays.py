"""A user's own arrays as a `Dataset`, checked on the way in: from memory or from an npz file.

x: float [N, ...] inputs; y (optional): integer class ids >= 0 [N]; ids (optional): the user's own
1-d ids [N], any dtype, unique. An npz file holds them under the keys `x`, `y` and `id`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from jdps.data.dataset import Dataset, DatasetInfo
from jdps.errors import InputError
from jdps.validate import check_finite, check_labels, check_same_length

NPZ_KEYS = ("x", "y", "id")
FLOAT_DTYPES = tuple(np.dtype(t) for t in (np.float16, np.float32, np.float64))


def from_arrays(x, y=None, ids=None, *, name: str = "arrays", class_names: tuple[str, ...] = (),
                provenance: str = "user arrays", licence: str = "the user's own") -> Dataset:
    """Check x, y and ids (shapes, dtypes, finiteness, unique ids) and wrap them as a `Dataset`."""
    try:
        x = np.asarray(x)
    except (ValueError, TypeError) as err:
        raise InputError(f"x is not an array of one shape ({err}); pass x as a numeric array [N, ...]") from None
    if x.ndim < 1 or len(x) == 0:
        raise InputError(f"x must hold at least one example, shaped [N, ...]; got shape {x.shape}")
    if x.size == 0:
        raise InputError(f"x has shape {x.shape}: its examples hold no values; each example needs at least one "
                         "feature, shaped [N, F] or [N, H, W, ...]")
    if not np.issubdtype(x.dtype, np.floating):
        fix = "convert it with x.astype(np.float32) (scaled as you need, e.g. / 255 for pixels)"
        if not (np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
            fix = "x must be a numeric array of floats, one row per example"
        raise InputError(f"x has dtype {x.dtype} but must be floating point; {fix}")
    if x.dtype not in FLOAT_DTYPES:
        raise InputError(f"x has dtype {x.dtype}, which jdps (JAX) does not compute in; convert it with "
                         "x.astype(np.float32)")
    check_finite("x", x)
    if y is not None:
        y = check_labels("y", y, len(class_names) or None)
        if len(y) and y.min() < 0:
            raise InputError(f"y holds negative labels (min {y.min()}); class ids must be 0, 1, ..., K-1")
        if len(y) and y.max() > np.iinfo(np.int32).max:
            raise InputError(f"y holds the label {y.max()}, beyond the int32 class ids jdps uses (< 2**31); "
                             "class ids must be 0, 1, ..., K-1: relabel them (e.g. np.unique(y, return_inverse=True))")
        y = y.astype(np.int32)
    if ids is not None:
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise InputError(f"ids must be a 1-d array with one id per example, got shape {ids.shape}")
        values, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise InputError(f"ids must be unique, but {values[counts > 1][:5].tolist()} occur more than "
                             "once; give every example its own id")
    check_same_length(x=x, y=y, ids=ids)
    return Dataset(x=x, y=y, info=DatasetInfo(name, provenance, licence, tuple(class_names)), ids=ids)


def load_npz(path: str | Path, *, name: str | None = None, class_names: tuple[str, ...] = ()) -> Dataset:
    """Read `x` (and optionally `y`, `id`) from an npz file written by `np.savez(path, x=..., y=..., id=...)`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no file {path}; pass the path of an npz file written by np.savez(path, x=..., y=...)")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not a readable npz file (not a zip archive); write it with np.savez")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise InputError(f"{path} holds Python objects, which jdps does not unpickle; save ids as "
                             "numbers or strings, e.g. np.asarray(ids, dtype=str)") from None
        raise InputError(f"{path} is not a readable npz file ({err}); write it with np.savez") from None
    except (OSError, zipfile.BadZipFile) as err:
        raise InputError(f"{path} is not a readable npz file ({err}); write it with np.savez") from None
    if "x" not in arrays:
        raise InputError(f"{path} has no array 'x' (it holds {sorted(arrays)}); save the inputs under x: "
                         "np.savez(path, x=..., y=..., id=...)")
    extra = sorted(set(arrays) - set(NPZ_KEYS))
    if extra:
        raise InputError(f"{path} holds arrays {extra} that jdps does not read; keep only {list(NPZ_KEYS)}")
    return from_arrays(arrays["x"], arrays.get("y"), arrays.get("id"), name=name or path.stem,
                       class_names=class_names, provenance=f"npz file {path.resolve()}")
