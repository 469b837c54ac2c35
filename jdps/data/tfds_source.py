"""Datasets a user prepared with tensorflow-datasets (tfds), read offline by random access.

A dataset prepared in the ArrayRecord format (`tfds build NAME --file_format=array_record`, or
`builder.download_and_prepare(file_format='array_record')` where the data can be fetched) is opened
with `tfds.builder_from_directory` (a folder) or `tfds.builder(name, data_dir=...)` (a registered name)
and read with `as_data_source`: nothing is downloaded or generated, and TensorFlow is not needed.
tensorflow_datasets is imported inside the functions only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jdps.data.dataset import Dataset
from jdps.data.user_arrays import from_arrays
from jdps.errors import InputError, JdpsError, MissingDatasetError

_PREPARE = ("prepare it where the data can be fetched with `tfds build {name} --file_format=array_record "
            "--data_dir=DIR`, copy DIR here and pass the dataset's folder under it")


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise JdpsError("tensorflow-datasets is not installed: pip install 'tensorflow-datasets>=4.9.7' "
                        "importlib_resources") from None
    return tfds


def _version_dir(path: Path) -> Path:
    """`path` itself if it holds dataset_info.json, else its one subfolder that does (a version folder)."""
    if (path / "dataset_info.json").is_file():
        return path
    found = sorted(p.parent for p in path.glob("*/dataset_info.json"))
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(f"{path} holds several prepared versions {[p.name for p in found]}; pass one "
                         "of those folders")
    raise MissingDatasetError(f"{path} holds no prepared tfds dataset (no dataset_info.json); "
                              + _PREPARE.format(name=path.name))


def builder(dataset: str | Path, *, data_dir: str | Path | None = None):
    """The tfds builder of a prepared dataset: `dataset` is its folder (the version folder holding
    dataset_info.json, or the folder above it), or else a registered name prepared under `data_dir`."""
    tfds = _tfds()
    path = Path(dataset).expanduser()
    if path.is_dir():
        return tfds.builder_from_directory(_version_dir(path))
    try:
        b = tfds.builder(str(dataset), data_dir=None if data_dir is None else str(data_dir))
    except tfds.core.registered.DatasetNotFoundError:
        b = None
    if b is None or not b.is_prepared():
        where = f"under {data_dir}" if data_dir else "in the default tfds data folder (~/tensorflow_datasets)"
        raise MissingDatasetError(f"no prepared tfds dataset {str(dataset)!r} {where} and no such folder; "
                                  + _PREPARE.format(name=dataset))
    return b


def _require_random_access(b, tfds) -> None:
    formats = b.info.available_file_formats()
    if not formats & set(tfds.core.file_adapters.FileFormat.with_random_access()):
        stored = ", ".join(sorted(f.value for f in formats)) or "an unknown format"
        raise InputError(
            f"the tfds dataset at {b.data_dir} is stored as {stored} only, which cannot be read by random "
            "access without TensorFlow. Convert it to ArrayRecord: install TensorFlow (pip install 'jdps[tf]') "
            f"and run `tfds convert_format --dataset_version_dir={b.data_dir} --out_file_format=array_record "
            "--out_dir=OUT`, then pass OUT; or prepare it again with file_format='array_record'")


def data_source(dataset: str | Path, *, split: str, data_dir: str | Path | None = None):
    """A random-access source of the split: `len(src)`, `src[i]` and `src.__getitems__(indices)` give
    decoded examples, dicts of numpy arrays keyed by feature name (split slices like 'train[:10%]' work)."""
    tfds = _tfds()
    b = builder(dataset, data_dir=data_dir)
    _require_random_access(b, tfds)
    if "+" not in split and split.split("[")[0] not in b.info.splits:
        raise InputError(f"tfds dataset {b.info.name!r} has no split {split!r}; its splits are "
                         f"{sorted(b.info.splits)}")
    return b.as_data_source(split=split)


def to_dataset(dataset: str | Path, *, split: str, x_key: str, y_key: str | None = None,
               id_key: str | None = None, x_scale: float = 1.0, data_dir: str | Path | None = None,
               chunk: int = 4096) -> Dataset:
    """Materialise a split as a `Dataset`: x = feature `x_key` as float32 / x_scale (pass 255 for uint8
    images), y = feature `y_key` (class names from a ClassLabel), ids = feature `id_key` (default 0..N-1).
    Rows come in the order of the data source."""
    tfds = _tfds()
    b = builder(dataset, data_dir=data_dir)
    features = b.info.features
    for role, key in (("x_key", x_key), ("y_key", y_key), ("id_key", id_key)):
        if key is not None and key not in features:
            raise InputError(f"{role}={key!r} is not a feature of {b.info.name!r}; its features are "
                             f"{sorted(features.keys())}")
    src = data_source(dataset, split=split, data_dir=data_dir)
    keys = [k for k in (x_key, y_key, id_key) if k is not None]
    columns: dict[str, list] = {k: [] for k in keys}
    for start in range(0, len(src), chunk):
        for example in src.__getitems__(list(range(start, min(start + chunk, len(src))))):
            for k in keys:
                columns[k].append(example[k])
    if not columns[x_key]:
        raise InputError(f"split {split!r} of {b.info.name!r} is empty; pass a split that holds examples")
    x = np.stack(columns[x_key]).astype(np.float32) / np.float32(x_scale)
    label = features[y_key] if y_key is not None else None
    class_names = tuple(label.names) if isinstance(label, tfds.features.ClassLabel) else ()
    return from_arrays(
        x, None if y_key is None else np.asarray(columns[y_key]),
        None if id_key is None else np.asarray(columns[id_key]),
        name=b.info.name, class_names=class_names,
        provenance=f"tfds dataset {b.info.full_name} at {b.data_dir}, split {split}",
        licence=b.info.redistribution_info.license or "see the dataset's own documentation")
