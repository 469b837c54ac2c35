"""Property-based tests (hypothesis, the "ci" profile of tests/conftest.py: at most 25 examples a test,
derandomised, a few fixed shapes) over the public entry points that take user data: the dataset
constructors, corruptions and splits, selection readouts, the pursuit, k-means and the selector contract.

Whatever the input, each call works or raises one of jdps's own errors (a JdpsError subclass naming the
fix), and leaves its inputs unchanged; a file it reads is left byte for byte as it was."""

import copy
import dataclasses
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jdps import selectors
from jdps.data import corruptions
from jdps.data.user_arrays import from_arrays, load_npz
from jdps.errors import JdpsError
from jdps.gtp import pursuit
from jdps.quad.kmeans import kmeans
from jdps.selection import random_subset, readout

# --- strategies: a few fixed shapes, odd dtypes and values, numbers of every kind -------------------------

X_DTYPES = [np.float32, np.float64, np.float16, np.int32, np.bool_, np.complex64, np.longdouble]
X_SHAPES = [(6, 3), (6, 0), (0, 3), (6,), (6, 2, 2)]
Y_DTYPES = [np.int64, np.int32, np.uint8, np.float32, np.bool_]


@st.composite
def x_arrays(draw, shapes=X_SHAPES, dtypes=X_DTYPES):
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(st.sampled_from(shapes))
    if dtype.kind == "f" and dtype != np.longdouble:
        elements = st.floats(-1e3, 1e3, width=dtype.itemsize * 8) | st.sampled_from([np.nan, np.inf])
        return draw(hnp.arrays(dtype, shape, elements=elements))
    return draw(hnp.arrays(dtype, shape))


@st.composite
def labels(draw, n=6):
    dtype = np.dtype(draw(st.sampled_from(Y_DTYPES)))
    length = draw(st.sampled_from([n, n - 1, 0]))
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = st.integers(max(info.min, -2), min(info.max, 2**33))
        return draw(hnp.arrays(dtype, length, elements=values))
    return draw(hnp.arrays(dtype, length))


# a value that is wrong, or at an edge, in kind or range
odd = st.sampled_from([-1, 0, 2.5, float("nan"), float("inf"), None, True, "3", 10**6])
seeds = st.integers(0, 2**40)
odd_seeds = st.sampled_from([-1, 2.0, True, "0", None, 2**70])


@st.composite
def one_broken(draw, **params):
    """Arguments {name: value}: each from its good strategy, but one (or none) from its odd one, so a test
    sees inputs that work and inputs wrong in one way each. params: name -> (good, odd)."""
    broken = draw(st.sampled_from([None, *params]))
    return {name: draw(bad if name == broken else good) for name, (good, bad) in params.items()}


def unchanged(before, after) -> bool:
    """Two pytrees of arrays (and scalars) hold the same values (NaN equal to NaN) and dtypes."""
    if isinstance(before, dict):
        return before.keys() == after.keys() and all(unchanged(before[k], after[k]) for k in before)
    if isinstance(before, (list, tuple)):
        return len(before) == len(after) and all(unchanged(a, b) for a, b in zip(before, after))
    if dataclasses.is_dataclass(before) and not isinstance(before, type):
        return type(before) is type(after) and all(
            unchanged(getattr(before, f.name), getattr(after, f.name)) for f in dataclasses.fields(before))
    if isinstance(before, np.ndarray):
        return before.dtype == after.dtype and before.shape == after.shape and np.array_equal(
            before, after, equal_nan=before.dtype.kind in "fc")
    both_nan = isinstance(before, float) and isinstance(after, float) and math.isnan(before) and math.isnan(after)
    return both_nan or before == after


def call(fn, *args, **kwargs):
    """fn(*args, **kwargs), or None when it refused the input with a JdpsError; any other exception fails
    the test. The arguments must come back unchanged."""
    snapshot = copy.deepcopy((args, kwargs))
    try:
        out = fn(*args, **kwargs)
        event(f"{fn.__name__}: works")
        return out
    except JdpsError as err:
        assert str(err).strip(), "an error must name the problem"
        event(f"{fn.__name__}: refused")
        return None
    finally:
        assert unchanged(snapshot, (args, kwargs)), f"{fn.__name__} changed its input"


def _dataset(y=None):
    x = np.arange(18, dtype=np.float32).reshape(6, 3)
    return from_arrays(x, np.array([0, 1, 2, 0, 1, 2]) if y is None else y)


# --- dataset constructors --------------------------------------------------------------------------------

good_x = hnp.arrays(np.float32, (6, 3), elements=st.floats(-10, 10, width=32))
good_y = st.none() | hnp.arrays(np.int64, 6, elements=st.integers(0, 3))


@given(a=one_broken(x=(good_x, x_arrays()), y=(good_y, labels()),
                    ids=(st.sampled_from([None, "unique"]), st.sampled_from(["repeated", "short"]))))
def test_from_arrays_works_or_refuses(a):
    x, y = a["x"], a["y"]
    ids = {None: None, "unique": np.arange(len(x)), "repeated": np.zeros(len(x), int),
           "short": np.arange(max(len(x) - 1, 0))}[a["ids"]]
    d = call(from_arrays, x, y, ids)
    if d is not None:
        assert d.x.dtype.kind == "f" and d.x.size > 0 and len(d) == len(x) > 0
        assert np.array_equal(d.x, x, equal_nan=True)
        if y is not None:
            assert d.y.dtype == np.int32 and np.array_equal(d.y, y) and (d.y >= 0).all()


@given(a=one_broken(x=(good_x, x_arrays()), y=(good_y, labels()), extra=(st.just(False), st.just(True)),
                    garbage=(st.none(), st.sampled_from([0, 40, 300]))))
def test_load_npz_works_or_refuses_and_leaves_the_file(a):
    x, y, extra, garbage = a["x"], a["y"], a["extra"], a["garbage"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        if garbage is None:
            arrays = {"x": x, **({} if y is None else {"y": y}), **({"z": np.zeros(2)} if extra else {})}
            np.savez(path, **arrays)
        else:
            np.savez(path, x=x)
            path.write_bytes(path.read_bytes()[:garbage])      # truncated, or empty
        before = path.read_bytes()
        d = call(load_npz, path)
        assert path.read_bytes() == before and sorted(p.name for p in Path(tmp).iterdir()) == ["d.npz"]
        if d is not None:
            assert np.array_equal(d.x, x, equal_nan=True) and not extra


# --- corruptions and splits ------------------------------------------------------------------------------

def _labelled(y):
    """A dataset of len(y) examples with labels y, or None where from_arrays refuses them."""
    return call(from_arrays, np.zeros((len(y), 2), np.float32), y) if len(y) else None


good_labels = hnp.arrays(np.int64, 12, elements=st.integers(0, 2)).map(lambda y: np.concatenate([[0, 1, 2], y[3:]]))


@given(a=one_broken(y=(good_labels, labels(12)), rate=(st.floats(0, 1), odd),
                    kind=(st.sampled_from(["symmetric", "pair"]), st.just("other")), seed=(seeds, odd_seeds)))
def test_corrupt_labels_works_or_refuses(a):
    d = _labelled(a["y"])
    assume(d is not None)
    out = call(corruptions.corrupt_labels, d, a["rate"], kind=a["kind"], seed=a["seed"])
    if out is not None:
        assert (out.y != d.y).sum() <= round(float(a["rate"]) * len(d))
        assert np.array_equal(out.columns["clean_y"], d.y) and np.array_equal(out.columns["corrupted"], out.y != d.y)


@given(a=one_broken(ratio=(st.floats(1, 4), odd), num_minority=(st.integers(1, 2), odd),
                    n_max=(st.none() | st.integers(1, 4), odd), seed=(seeds, odd_seeds)))
def test_imbalance_works_or_refuses(a):
    d = _dataset()
    for fn, args in ((corruptions.long_tail, (a["ratio"],)), (corruptions.step_imbalance, (a["ratio"], a["num_minority"]))):
        out = call(fn, d, *args, seed=a["seed"], n_max=a["n_max"])
        if out is not None:
            assert 0 < len(out) <= len(d) and set(out.ids) <= set(d.ids)


@given(a=one_broken(counts=(hnp.arrays(np.int64, 3, elements=st.integers(0, 2)),
                            st.sampled_from([np.array([1, 1]), np.array([-1, 1, 1]), np.array([1.5, 1, 1]),
                                             np.array([3, 0, 0]), np.ones((3, 1), int)])),
                    seed=(seeds, odd_seeds)))
def test_subsample_groups_works_or_refuses(a):
    out = call(corruptions.subsample_groups, _dataset(), a["counts"], seed=a["seed"])
    if out is not None:
        assert np.array_equal(np.bincount(out.y, minlength=3), a["counts"])


@given(a=one_broken(y=(good_labels, labels(12)), per_class=(st.integers(1, 3), odd), seed=(seeds, odd_seeds)))
def test_meta_split_works_or_refuses(a):
    d = _labelled(a["y"])
    assume(d is not None)
    out = call(corruptions.meta_split, d, a["per_class"], seed=a["seed"])
    if out is not None:
        rest, meta = out
        assert len(rest) + len(meta) == len(d) and not set(rest.ids) & set(meta.ids)
        assert (np.bincount(meta.y) == a["per_class"]).all()


# --- selection readouts ----------------------------------------------------------------------------------

@given(a=one_broken(scores=(hnp.arrays(np.float64, 6, elements=st.floats(-3, 3)),
                            x_arrays(shapes=[(6,), (0,), (6, 2)], dtypes=[np.float32, np.int32, np.bool_])),
                    mode=(st.sampled_from(["budget", "fraction", "threshold", "soft"]), st.just("two")),
                    value=(st.sampled_from([1, 3, 6, 0.5, 1.0]), odd)))
def test_readout_works_or_refuses(a):
    mode, value = a["mode"], a["value"]
    if mode == "soft" and value in (1, 1.0):
        value = True
    kwargs = {"two": {"budget": value, "fraction": 0.5}}.get(mode, {mode: value})
    sel = call(readout, a["scores"], **kwargs)
    if sel is not None:
        assert len(np.unique(sel.indices)) == len(sel) <= len(a["scores"]) and (sel.weights >= 0).all()


@given(a=one_broken(key=(seeds, odd_seeds), n=(st.integers(1, 8), odd), size=(st.sampled_from(["budget", "fraction"]),
                                                                              st.just("budget")),
                    value=(st.sampled_from([1, 0.5, 1.0]), odd)))
def test_random_subset_works_or_refuses(a):
    idx = call(random_subset, a["key"], a["n"], **{a["size"]: a["value"]})
    if idx is not None:
        assert len(np.unique(idx)) == len(idx) >= 1 and idx.min() >= 0 and idx.max() < a["n"]


# --- the pursuit and k-means (fixed shapes: compiled once per solver and size) ---------------------------

def normal(shape):
    """Standard normal arrays of `shape` (float32), one per seed: inputs in general position."""
    return st.integers(0, 2**16).map(lambda s: np.random.default_rng(s).normal(size=shape).astype(np.float32))


@given(a=one_broken(A=(normal((8, 4)),
                       st.sampled_from([np.full((8, 4), np.nan, np.float32), np.zeros((8, 4), np.float32),
                                        np.ones((8, 4), np.int32), np.ones((0, 4), np.float32)])),
                    b_len=(st.just(4), st.just(3)), k=(st.just(3), odd),
                    method=(st.sampled_from(pursuit.METHODS), st.just("lasso")), nonneg=(st.booleans(), st.booleans()),
                    tol=(st.just(0.0), st.sampled_from([-1.0, float("nan"), 1e-3]))))
def test_pursuit_works_or_refuses(a):
    b = np.linspace(-1, 1, a["b_len"]).astype(np.float32)
    kwargs = {} if a["method"] == "topk" else {"nonneg": a["nonneg"], "tol": a["tol"]}
    result = call(pursuit.solve, a["A"], b, a["k"], method=a["method"], **kwargs)
    if result is not None:
        assert len(np.unique(result.indices)) == len(result.indices) <= a["k"]
        assert ((result.indices >= 0) & (result.indices < len(a["A"]))).all()
        if kwargs.get("nonneg"):
            assert (result.weights >= 0).all()


@given(a=one_broken(x=(normal((12, 2)),
                       st.sampled_from([np.full((12, 2), np.inf, np.float32), np.zeros((12, 0), np.float32),
                                        np.zeros((0, 2), np.float32), np.zeros(12, np.float32)])),
                    k=(st.just(3), odd), restarts=(st.just(1), odd.filter(lambda v: v != 10**6)),
                    key=(seeds, odd_seeds)))
def test_kmeans_works_or_refuses(a):
    out = call(kmeans, a["key"], a["x"], a["k"], restarts=a["restarts"])
    if out is not None:
        labels_ = np.asarray(out.labels)
        assert labels_.shape == (12,) and labels_.min() >= 0 and labels_.max() < a["k"]


# --- the selector contract -------------------------------------------------------------------------------

@given(name=st.sampled_from([*selectors.names(), "nosuch"]),
       a=one_broken(size=(st.sampled_from(["budget", "fraction"]), st.just("both")),
                    value=(st.sampled_from([1, 4, 0.5]), odd), key=(seeds, odd_seeds),
                    pool=(hnp.arrays(np.float32, (6, 3)), st.sampled_from([np.zeros((0, 3), np.float32), None]))))
def test_selector_contract_works_or_refuses(name, a):
    sel = call(selectors.make, name, None, None)               # no task: every method but random refuses
    assert (sel is None) == (name != "random")
    if sel is None:
        name, sel = "random", selectors.make("random")
    state = call(sel.fit, a["pool"] if a["pool"] is None else {"x": a["pool"]}, None, key=a["key"])
    if state is None:
        return
    sizes = {"both": {"budget": a["value"], "fraction": 0.5}}.get(a["size"], {a["size"]: a["value"]})
    out = call(sel.select, state, **sizes, key=a["key"])
    if out is not None:
        assert len(np.unique(out.indices)) == len(out) >= 1 and (out.indices < len(a["pool"])).all()


@pytest.mark.parametrize("value", [-1, 2.0, True, "0"])
def test_seeds_are_integers_at_least_zero(value):
    for fn in (lambda: corruptions.meta_split(_dataset(), 1, seed=value), lambda: random_subset(value, 5, budget=2)):
        with pytest.raises(JdpsError, match="seed"):
            fn()
