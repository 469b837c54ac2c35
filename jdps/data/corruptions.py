"""Controlled corruptions of a training set, with the truth kept for evaluation.

Label noise (symmetric, pair), class imbalance (long-tail, step), per-group subsampling (used for
domain mixtures) and the clean per-class meta split. All of it is numpy on the host. Every random
choice takes `seed`: an integer or a `numpy.random.Generator` (passed to `np.random.default_rng`);
the same integer seed gives the same result.
"""

from __future__ import annotations

import math

import numpy as np

from jdps.data.dataset import Dataset
from jdps.errors import InputError
from jdps.validate import check_labels, is_whole
from jdps.validate import rng as rng_of

Seed = int | np.random.Generator


def _number(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _check_rate(rate: float) -> float:
    r = _number("the noise rate", rate)
    if not 0.0 <= r <= 1.0:  # also rejects NaN
        raise InputError(f"noise rate must lie in [0, 1] (the fraction of labels changed), got {rate}")
    return r


def _num_classes(dataset: Dataset, y: np.ndarray) -> int:
    return dataset.info.num_classes or (int(y.max()) + 1 if len(y) else 0)


def _labels_of(dataset: Dataset) -> np.ndarray:
    if dataset.y is None:
        raise InputError(f"dataset {dataset.info.name!r} has no labels (y is None); this needs a labelled dataset")
    return dataset.y


def _flip(y, rate, num_classes, seed, shift_fn) -> tuple[np.ndarray, np.ndarray]:
    if num_classes < 2:
        raise InputError(f"label noise needs at least 2 classes, got num_classes={num_classes}")
    y = check_labels("y", y, num_classes)
    rng = rng_of(seed)
    k = round(_check_rate(rate) * len(y))
    changed = rng.choice(len(y), size=k, replace=False)
    noisy = y.copy()
    noisy[changed] = (y[changed] + shift_fn(rng, k)) % num_classes
    corrupted = np.zeros(len(y), bool)
    corrupted[changed] = True
    return noisy, corrupted


def symmetric_noise(y, rate: float, *, num_classes: int, seed: Seed) -> tuple[np.ndarray, np.ndarray]:
    """Change exactly round(rate * N) labels, each to a class drawn uniformly from the other C - 1.

    y [N] int in [0, C) -> (noisy [N], corrupted [N] bool), corrupted = noisy != y.
    """
    return _flip(y, rate, num_classes, seed, lambda rng, k: rng.integers(1, num_classes, size=k))


def pair_noise(y, rate: float, *, num_classes: int, seed: Seed) -> tuple[np.ndarray, np.ndarray]:
    """Change exactly round(rate * N) labels, each c -> (c + 1) mod C.

    y [N] int in [0, C) -> (noisy [N], corrupted [N] bool), corrupted = noisy != y.
    """
    return _flip(y, rate, num_classes, seed, lambda rng, k: np.ones(k, np.int64))


def corrupt_labels(dataset: Dataset, rate: float, *, kind: str = "symmetric", seed: Seed) -> Dataset:
    """The dataset with noisy y and the truth in columns `clean_y` [N] and `corrupted` [N] bool.

    `kind` is "symmetric" or "pair". C is `info.num_classes`, else max(y) + 1. A dataset that is
    already corrupted keeps its original `clean_y`; `corrupted` is then noisy y != clean_y.
    """
    noise = {"symmetric": symmetric_noise, "pair": pair_noise}
    if kind not in noise:
        raise InputError(f"unknown label noise kind {kind!r}; use 'symmetric' or 'pair'")
    y = _labels_of(dataset)
    noisy, _ = noise[kind](y, rate, num_classes=_num_classes(dataset, y), seed=seed)
    clean = dataset.columns.get("clean_y", y)
    columns = {**dataset.columns, "clean_y": clean, "corrupted": noisy != clean}
    return dataset.replace(y=noisy, columns=columns)


def _check_ratio(ratio: float, n_max: int) -> float:
    r = _number("the imbalance ratio", ratio)
    if not is_whole(n_max) or n_max < 1:
        raise InputError(f"n_max (the largest class size) must be a positive integer, got {n_max!r}")
    if not r >= 1.0:
        raise InputError(f"imbalance ratio must be >= 1 (largest / smallest class size), got {ratio}")
    if math.floor(n_max / r + 1e-9) < 1:
        raise InputError(
            f"imbalance ratio {ratio} leaves the smallest class empty (n_max = {n_max}); "
            f"use a ratio <= {n_max}")
    return r


def long_tail_counts(n_max: int, num_classes: int, ratio: float) -> np.ndarray:
    """Exponential long-tail profile n_c = floor(n_max * ratio^(-c / (C - 1))), c = 0..C-1 -> int [C]."""
    if num_classes < 2:
        raise InputError(f"class imbalance needs at least 2 classes, got num_classes={num_classes}")
    r = _check_ratio(ratio, n_max)
    c = np.arange(num_classes)
    return np.floor(n_max * r ** (-c / (num_classes - 1)) + 1e-9).astype(np.int64)


def step_counts(n_max: int, num_classes: int, ratio: float, num_minority: int) -> np.ndarray:
    """Step profile: n_c = n_max, except the last `num_minority` classes get floor(n_max / ratio) -> int [C]."""
    if not is_whole(num_minority) or not 1 <= num_minority < num_classes:
        raise InputError(
            f"num_minority must lie in [1, {num_classes - 1}] for {num_classes} classes, got {num_minority}")
    r = _check_ratio(ratio, n_max)
    counts = np.full(num_classes, n_max, np.int64)
    counts[num_classes - num_minority:] = math.floor(n_max / r + 1e-9)
    return counts


def _group_name(dataset: Dataset, column: str, g: int) -> str:
    names = dataset.info.class_names if column in ("y", "clean_y") else (
        dataset.info.domain_names if column == "domain" else ())
    return f"{g} ({names[g]!r})" if g < len(names) else str(g)


def subsample_groups(dataset: Dataset, counts, *, column: str = "y", seed: Seed) -> Dataset:
    """Keep counts[g] rows drawn uniformly without replacement from each group g of `column`.

    `column` is "y" or a column name holding int group ids [N] in [0, G); counts int [G]. The kept rows
    stay in their original order (ids and columns travel with them).
    """
    groups = _labels_of(dataset) if column == "y" else dataset.columns.get(column)
    if groups is None:
        raise InputError(f"dataset {dataset.info.name!r} has no column {column!r}; "
                         f"its columns are {sorted(dataset.columns)}")
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts.size and not np.issubdtype(counts.dtype, np.integer)):
        raise InputError(f"counts must be a 1-d array of integers, one per group, got {counts.dtype} {counts.shape}")
    groups = check_labels(column, groups, len(counts))
    rng = rng_of(seed)
    keep = []
    for g, k in enumerate(counts):
        members = np.flatnonzero(groups == g)
        if not 0 <= k <= len(members):
            raise InputError(
                f"group {_group_name(dataset, column, g)} of {column!r} has {len(members)} rows, "
                f"cannot keep {k}; ask for at most {len(members)}")
        keep.append(rng.choice(members, size=int(k), replace=False))
    return dataset.take(np.sort(np.concatenate(keep)))


def _class_sizes(dataset: Dataset) -> tuple[np.ndarray, int]:
    y = _labels_of(dataset)
    c = _num_classes(dataset, y)
    return np.bincount(check_labels("y", y, c), minlength=c), c


def long_tail(dataset: Dataset, ratio: float, *, seed: Seed, n_max: int | None = None) -> Dataset:
    """Subsample to the long-tail profile `long_tail_counts` (class 0 largest).

    `n_max` defaults to the smallest class size, so every class can supply its count.
    """
    sizes, c = _class_sizes(dataset)
    counts = long_tail_counts(int(sizes.min()) if n_max is None else n_max, c, ratio)
    return subsample_groups(dataset, counts, seed=seed)


def step_imbalance(dataset: Dataset, ratio: float, num_minority: int, *, seed: Seed,
                   n_max: int | None = None) -> Dataset:
    """Subsample to the step profile `step_counts` (the last `num_minority` classes are the minority).

    `n_max` defaults to the smallest class size, so every class can supply its count.
    """
    sizes, c = _class_sizes(dataset)
    counts = step_counts(int(sizes.min()) if n_max is None else n_max, c, ratio, num_minority)
    return subsample_groups(dataset, counts, seed=seed)


def meta_split(dataset: Dataset, per_class: int, *, seed: Seed) -> tuple[Dataset, Dataset]:
    """Split off a clean, balanced meta set of `per_class` examples per class -> (rest, meta).

    The meta examples are drawn per *clean* class: from `clean_y` when the dataset carries it (it was
    corrupted), else from y. The meta set's y is the clean label and its `corrupted` column (if any)
    is all False, so the meta set is clean whether the split is taken before or after corruption.
    `rest` and `meta` are disjoint and together hold every row, each in its original order.
    """
    if not is_whole(per_class) or per_class < 1:
        raise InputError(f"the meta split would be empty: per_class must be a positive integer, got {per_class}")
    y = _labels_of(dataset)
    clean = dataset.columns.get("clean_y", y)
    c = _num_classes(dataset, clean)
    clean = check_labels("clean labels", clean, c)
    sizes = np.bincount(clean, minlength=c)
    if (sizes < per_class).any():
        g = int(np.argmin(sizes))
        fix = f"lower per_class to at most {sizes[g]}" if sizes[g] else "drop or relabel that class"
        raise InputError(
            f"class {_group_name(dataset, 'y', g)} has {sizes[g]} examples, fewer than the {per_class} "
            f"meta examples asked per class; {fix}")
    rng = rng_of(seed)
    chosen = np.concatenate([rng.choice(np.flatnonzero(clean == g), size=per_class, replace=False)
                             for g in range(c)])
    is_meta = np.zeros(len(y), bool)
    is_meta[chosen] = True
    meta = dataset.take(np.flatnonzero(is_meta))
    if "clean_y" in dataset.columns:
        columns = dict(meta.columns)
        if "corrupted" in columns:
            columns["corrupted"] = np.zeros(len(meta), bool)
        meta = meta.replace(y=meta.columns["clean_y"], columns=columns)
    return dataset.take(np.flatnonzero(~is_meta)), meta
