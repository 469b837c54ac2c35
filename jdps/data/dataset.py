"""The in-memory dataset every loader returns: arrays, user ids and provenance."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from jdps.errors import InputError
from jdps.validate import check_same_length


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset came from: its name, source, licence and label names."""

    name: str
    provenance: str
    licence: str
    class_names: tuple[str, ...] = ()
    domain_names: tuple[str, ...] = ()
    notes: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class Dataset:
    """N examples: inputs `x` [N, ...], optional int labels `y` [N], user ids `ids` [N].

    `columns` holds any other per-example arrays (e.g. `domain` [N], `doc` [N], `clean_y` [N],
    `corrupted` [N] bool), each of length N. Row i has global index i; `ids[i]` is the user's own id
    for it (defaults to i) and every output that names examples carries `ids` back.
    """

    x: np.ndarray
    y: np.ndarray | None
    info: DatasetInfo
    ids: np.ndarray | None = None
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.x)
        if self.ids is None:
            object.__setattr__(self, "ids", np.arange(n))
        for name, col in [("y", self.y), ("ids", self.ids), *self.columns.items()]:
            if col is not None and len(col) != n:
                raise InputError(
                    f"dataset {self.info.name!r}: column {name!r} has {len(col)} rows but x has {n}; "
                    "every per-example array must have the same length as x")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, indices) -> "Dataset":
        """The rows `indices` (their ids and columns travel with them)."""
        indices = np.asarray(indices)
        return dataclasses.replace(
            self, x=self.x[indices], y=None if self.y is None else self.y[indices],
            ids=self.ids[indices], columns={k: v[indices] for k, v in self.columns.items()})

    def replace(self, **changes) -> "Dataset":
        return dataclasses.replace(self, **changes)

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-example arrays a batch is cut from: x, y (if any), the columns."""
        out = {"x": self.x}
        if self.y is not None:
            out["y"] = self.y
        out.update(self.columns)
        return out


@dataclass(frozen=True)
class Document:
    """One raw text document of a corpus: its text, its domain (genre, book, source) and its id."""

    text: str
    domain: str
    doc_id: str


def host_arrays(data: "Dataset | Mapping", name: str) -> dict[str, np.ndarray]:
    """The numeric per-example arrays of a `Dataset` or dict (x, y, numeric columns) -> {name: [N, ...]}.

    Non-numeric columns (texts, string ids) are left out; raises for a missing or non-numeric `x`,
    mismatched lengths and empty data.
    """
    if isinstance(data, Dataset):
        arrays = data.arrays()
    elif isinstance(data, Mapping):
        arrays = dict(data)
    else:
        raise InputError(f"{name} must be a jdps Dataset or a dict of per-example arrays, got {type(data).__name__}")
    if "x" not in arrays:
        raise InputError(f"{name} has no 'x'; pass a dict with at least an 'x' array (and 'y' for labels)")
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if arrays["x"].dtype.kind not in "biuf":
        raise InputError(f"{name} 'x' has dtype {arrays['x'].dtype}; encode it as numbers (e.g. token ids) first")
    arrays = {k: v for k, v in arrays.items() if v.dtype.kind in "biuf"}
    if check_same_length(**arrays) == 0:
        raise InputError(f"{name} is empty; pass at least one example")
    return arrays
