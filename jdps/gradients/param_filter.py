"""Parameter filters: the leaves of a parameter tree that per-example gradients are taken for.

A leaf is named by its '/'-joined path, e.g. 'blocks/0/attn/q/kernel'. A filter is one of

    None                           every leaf;
    'blocks/*/attn/*'              a glob (fnmatch, '*' also crosses '/'), matched against the leaf's path
                                   and every module path above it, so 'head' selects 'head/kernel' and 'head/bias';
    re.compile(r'blocks/\\d+/mlp')  a regex, fullmatched in the same way;
    [f1, f2, ...]                  the union of several filters;
    fn(path, leaf) -> bool         a predicate, e.g. adapters: lambda path, leaf: 'lora' in path;
    last_layers(n)                 the leaves of the last n layers (modules owning a 'kernel'), in the order
                                   the loss uses them; last_layers(1) is the output layer.

`select` resolves a filter to the selected paths (in tree order); `take` pulls those leaves out as a flat
dict {path: leaf} and `put` pours such a dict back, so a gradient can be taken w.r.t. the selected leaves
only, with the rest closed over (they then cost nothing).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

from jdps.errors import InputError

Params = Any


@dataclass(frozen=True)
class LastLayers:
    """The last `n` layers (modules owning a 'kernel' leaf) in order of use by the loss."""

    n: int = 1


def last_layers(n: int = 1) -> LastLayers:
    """Filter for the leaves of the last `n` layers that own a 'kernel' (n=1: the output layer)."""
    if int(n) != n or n < 1:
        raise InputError(f"last_layers needs a positive integer n, got {n!r}")
    return LastLayers(int(n))


def _path(keypath) -> str:
    return jax.tree_util.keystr(keypath, simple=True, separator="/")


def flat(params: Params) -> dict[str, Any]:
    """{'/'-joined path: leaf} for every leaf, in tree (flatten) order."""
    return {_path(kp): leaf for kp, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def _prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _matches(spec, path: str, leaf) -> bool:
    if isinstance(spec, str):
        return any(fnmatch.fnmatchcase(p, spec) for p in _prefixes(path))
    if isinstance(spec, re.Pattern):
        return any(spec.fullmatch(p) for p in _prefixes(path))
    if isinstance(spec, (list, tuple, set, frozenset)):
        return any(_matches(s, path, leaf) for s in spec)
    if callable(spec):
        return bool(spec(path, leaf))
    raise InputError(
        f"unknown parameter filter {spec!r}: pass None, a glob string, a compiled regex, a list of these, "
        "a predicate fn(path, leaf) -> bool, or last_layers(n)")


def layer_order(loss_fn: Callable, params: Params, batch) -> list[str]:
    """Module paths owning a 'kernel' leaf, ordered by their kernel's first use in `loss_fn(params, batch)`.

    Read off the traced jaxpr (nothing is computed); layers first used in the same nested call (a jit or
    scan wrapping several layers) keep their tree order.
    """
    leaves = flat(params)
    jaxpr = jax.make_jaxpr(loss_fn)(params, batch).jaxpr
    position = {id(v): i for i, v in enumerate(jaxpr.invars[: len(leaves)])}
    first_use = {}
    for step, eqn in enumerate(jaxpr.eqns):
        for v in eqn.invars:
            i = position.get(id(v))
            if i is not None:
                first_use.setdefault(i, step)
    kernels = [(i, p.rpartition("/")[0]) for i, p in enumerate(leaves) if p.rpartition("/")[2] == "kernel"]
    kernels.sort(key=lambda ik: (first_use.get(ik[0], len(jaxpr.eqns)), ik[0]))
    return [module for _, module in kernels]


def _available(params: Params) -> str:
    paths = list(flat(params))
    shown = ", ".join(paths[:40]) + (f", ... ({len(paths) - 40} more)" if len(paths) > 40 else "")
    return f"available paths: {shown}"


def select(param_filter, params: Params, *, loss_fn: Callable | None = None, batch=None) -> tuple[str, ...]:
    """The paths of the leaves `param_filter` selects, in tree order; raises if it selects nothing.

    `loss_fn` and `batch` are needed only for `last_layers` (to find the order the layers are used in).
    """
    leaves = flat(params)
    if param_filter is None:
        chosen = list(leaves)
    elif isinstance(param_filter, LastLayers):
        if loss_fn is None or batch is None:
            raise InputError("last_layers(n) needs loss_fn and batch to find the layer order; pass both to select")
        order = layer_order(loss_fn, params, batch)
        if len(order) < param_filter.n:
            raise InputError(
                f"last_layers({param_filter.n}) asks for more layers than the {len(order)} that own a 'kernel' "
                f"({order}); pass n <= {len(order)}")
        modules = order[len(order) - param_filter.n:]
        chosen = [p for p in leaves if p.rpartition("/")[0] in modules]
    else:
        chosen = [p for p, leaf in leaves.items() if _matches(param_filter, p, leaf)]
    if not chosen:
        raise InputError(f"parameter filter {param_filter!r} selects no parameter; {_available(params)}")
    return tuple(chosen)


def take(params: Params, paths) -> dict[str, Any]:
    """The selected leaves as a flat dict {path: leaf}, in the order of `paths`."""
    leaves = flat(params)
    missing = [p for p in paths if p not in leaves]
    if missing:
        raise InputError(f"no parameter at {missing}; {_available(params)}")
    return {p: leaves[p] for p in paths}


def put(params: Params, selected: dict[str, Any]) -> Params:
    """`params` with the leaves at the paths of `selected` replaced by its values."""
    keypaths, treedef = jax.tree_util.tree_flatten_with_path(params)
    leaves = [selected.get(_path(kp), leaf) for kp, leaf in keypaths]
    return jax.tree_util.tree_unflatten(treedef, leaves)
