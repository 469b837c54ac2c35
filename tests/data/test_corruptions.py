"""Label noise, class imbalance and the meta split against hand counts and closed forms."""

from decimal import Decimal, getcontext

import numpy as np
import pytest
from scipy import stats

from jdps.data.corruptions import (corrupt_labels, long_tail, long_tail_counts, meta_split, pair_noise,
                                   step_counts, step_imbalance, subsample_groups, symmetric_noise)
from jdps.data.dataset import Dataset, DatasetInfo
from jdps.errors import InputError

INFO = DatasetInfo(name="toy", provenance="synthetic", licence="none", class_names=("a", "b", "c", "d"))


def toy(per_class=(50, 40, 30, 20), seed=0):
    """A shuffled labelled dataset with `per_class[c]` rows of class c; x[i] = i, ids 1000 + i."""
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(per_class)), per_class))
    n = len(y)
    return Dataset(x=np.arange(n, dtype=np.float32)[:, None], y=y, info=INFO, ids=1000 + np.arange(n))


@pytest.mark.parametrize("noise", [symmetric_noise, pair_noise])
@pytest.mark.parametrize("rate, n", [(0.0, 100), (0.37, 1000), (0.25, 10), (1.0, 30)])
def test_exact_number_changed(noise, rate, n):
    y = np.arange(n) % 4
    noisy, corrupted = noise(y, rate, num_classes=4, seed=1)
    assert corrupted.sum() == round(rate * n)
    np.testing.assert_array_equal(corrupted, noisy != y)
    assert noisy.min() >= 0 and noisy.max() < 4


def test_pair_maps_c_to_next_class():
    y = np.arange(500) % 7
    noisy, corrupted = pair_noise(y, 0.4, num_classes=7, seed=3)
    np.testing.assert_array_equal(noisy[corrupted], (y[corrupted] + 1) % 7)
    np.testing.assert_array_equal(noisy[~corrupted], y[~corrupted])


def test_symmetric_uniform_over_other_classes():
    c = 5
    y = np.arange(20000) % c
    noisy, corrupted = symmetric_noise(y, 0.5, num_classes=c, seed=4)
    assert not np.any(noisy[corrupted] == y[corrupted])
    for src in range(c):  # each source class spreads evenly over the other C - 1
        sel = corrupted & (y == src)
        observed = np.bincount(noisy[sel], minlength=c)
        assert observed[src] == 0
        assert stats.chisquare(np.delete(observed, src)).pvalue > 1e-3


def test_noise_is_deterministic_by_seed_and_takes_a_generator():
    y = np.arange(300) % 3
    a = symmetric_noise(y, 0.3, num_classes=3, seed=7)[0]
    b = symmetric_noise(y, 0.3, num_classes=3, seed=np.random.default_rng(7))[0]
    c = symmetric_noise(y, 0.3, num_classes=3, seed=8)[0]
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_bad_rate(rate):
    with pytest.raises(InputError, match="rate"):
        symmetric_noise(np.zeros(10, int), rate, num_classes=3, seed=0)


def test_bad_labels_and_classes():
    with pytest.raises(InputError, match="outside"):
        pair_noise(np.array([0, 1, 3]), 0.5, num_classes=3, seed=0)
    with pytest.raises(InputError, match="2 classes"):
        symmetric_noise(np.zeros(5, int), 0.5, num_classes=1, seed=0)


def test_corrupt_labels_keeps_the_truth():
    data = toy()
    noisy = corrupt_labels(data, 0.2, kind="pair", seed=0)
    np.testing.assert_array_equal(noisy.columns["clean_y"], data.y)
    np.testing.assert_array_equal(noisy.columns["corrupted"], noisy.y != data.y)
    assert noisy.columns["corrupted"].sum() == round(0.2 * len(data))
    np.testing.assert_array_equal(noisy.ids, data.ids)
    again = corrupt_labels(noisy, 0.1, kind="symmetric", seed=1)  # the original truth is kept
    np.testing.assert_array_equal(again.columns["clean_y"], data.y)
    np.testing.assert_array_equal(again.columns["corrupted"], again.y != data.y)
    with pytest.raises(InputError, match="kind"):
        corrupt_labels(data, 0.1, kind="asymmetric", seed=0)
    with pytest.raises(InputError, match="no labels"):
        corrupt_labels(data.replace(y=None), 0.1, seed=0)


def test_long_tail_counts_closed_form():
    np.testing.assert_array_equal(long_tail_counts(160, 5, 16), [160, 80, 40, 20, 10])
    np.testing.assert_array_equal(long_tail_counts(100, 3, 100), [100, 10, 1])
    getcontext().prec = 40  # high-precision reference for n_c = floor(n_max * ratio^(-c/(C-1)))
    expected = [int(Decimal(5000) * Decimal(100) ** (Decimal(-c) / 9)) for c in range(10)]
    np.testing.assert_array_equal(long_tail_counts(5000, 10, 100), expected)
    np.testing.assert_array_equal(long_tail_counts(7, 4, 1), [7, 7, 7, 7])


def test_step_counts_by_hand():
    np.testing.assert_array_equal(step_counts(100, 10, 10, 5), [100] * 5 + [10] * 5)
    np.testing.assert_array_equal(step_counts(50, 4, 3, 1), [50, 50, 50, 16])


def test_imbalanced_datasets_have_the_profile():
    data = toy()
    lt = long_tail(data, 4, seed=0)  # n_max = smallest class = 20
    np.testing.assert_array_equal(np.bincount(lt.y, minlength=4), [20, 12, 7, 5])  # 20 * 4^(-c/3)
    np.testing.assert_array_equal(lt.y, data.y[lt.ids - 1000])  # rows travel with their labels and ids
    assert np.all(np.diff(lt.ids) > 0)
    st = step_imbalance(data, 5, 2, seed=0, n_max=30)
    np.testing.assert_array_equal(np.bincount(st.y, minlength=4), [30, 30, 6, 6])
    with pytest.raises(InputError, match=r"group 2 \('c'\) of 'y' has 30 rows, cannot keep 31"):
        long_tail(data, 2, seed=0, n_max=50)  # wants [50, 39, 31, 25]


@pytest.mark.parametrize("ratio", [0.5, float("nan")])
def test_bad_ratio(ratio):
    with pytest.raises(InputError, match=">= 1"):
        long_tail_counts(100, 10, ratio)


def test_ratio_too_large_and_bad_minority():
    with pytest.raises(InputError, match="smallest class empty"):
        long_tail_counts(10, 3, 11)
    with pytest.raises(InputError, match="num_minority"):
        step_counts(10, 3, 2, 3)


def test_subsample_groups_by_column():
    data = toy().replace(columns={"domain": np.arange(140) % 2})
    sub = subsample_groups(data, [5, 7], column="domain", seed=0)
    np.testing.assert_array_equal(np.bincount(sub.columns["domain"]), [5, 7])
    with pytest.raises(InputError, match="no column"):
        subsample_groups(data, [1, 1], column="genre", seed=0)


def test_meta_split_disjoint_balanced_and_clean():
    data = corrupt_labels(toy(), 0.5, seed=0)
    rest, meta = meta_split(data, 6, seed=1)
    assert set(rest.ids).isdisjoint(meta.ids)
    assert sorted([*rest.ids, *meta.ids]) == sorted(data.ids)
    np.testing.assert_array_equal(np.bincount(meta.y, minlength=4), [6, 6, 6, 6])
    truth = data.columns["clean_y"][meta.ids - 1000]
    np.testing.assert_array_equal(meta.y, truth)  # clean labels, though half the pool is noisy
    assert not meta.columns["corrupted"].any()
    np.testing.assert_array_equal(rest.y, data.y[rest.ids - 1000])  # the rest stays as corrupted
    before = meta_split(toy(), 6, seed=1)[1]  # same seed, split before corruption: same clean examples
    np.testing.assert_array_equal(before.ids, meta.ids)


def test_meta_split_errors():
    with pytest.raises(InputError, match="empty"):
        meta_split(toy(), 0, seed=0)
    with pytest.raises(InputError, match=r"class 3 \('d'\) has 20 examples, fewer than the 21"):
        meta_split(toy(), 21, seed=0)
    with pytest.raises(InputError, match=r"class 2 \('c'\) has 0 examples"):
        meta_split(toy((5, 5, 0, 5)), 1, seed=0)
