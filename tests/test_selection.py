"""Readout of per-example scores into a Selection: counts, order and tie-breaking, checked by hand."""

import numpy as np
import pytest

from jdps.errors import InputError
from jdps.selection import Selection, mean_weight_by_group, random_subset, ranking, readout, select

SCORES = np.array([0.2, 0.9, 0.5, 0.9, 0.1, 0.5, 0.7])


def test_top_k_breaks_ties_by_lowest_index():
    s = readout(SCORES, budget=4)
    np.testing.assert_array_equal(s.indices, [1, 3, 6, 2])  # 0.9 (1, 3), 0.7, then 0.5 at 2 before 5
    np.testing.assert_array_equal(s.weights, np.ones(4))
    np.testing.assert_array_equal(s.scores, SCORES)
    assert s.info["mode"] == "budget"
    np.testing.assert_array_equal(ranking(SCORES), [1, 3, 6, 2, 5, 0, 4])


def test_fraction_selects_the_ceiling():
    assert len(readout(SCORES, fraction=0.3)) == 3  # ceil(0.3 * 7) = ceil(2.1)
    assert len(readout(SCORES, fraction=2 / 7)) == 2
    assert len(readout(SCORES, fraction=1.0)) == 7
    assert len(readout(np.arange(1000.0), fraction=0.001)) == 1


def test_threshold_and_soft():
    s = readout(SCORES, threshold=0.5)
    np.testing.assert_array_equal(s.indices, [1, 3, 6, 2, 5])
    assert len(readout(SCORES, threshold=0.95)) == 0
    soft = readout(SCORES, soft=True)
    np.testing.assert_array_equal(soft.indices, [1, 3, 6, 2, 5, 0, 4])
    np.testing.assert_allclose(soft.weights, SCORES[[1, 3, 6, 2, 5, 0, 4]])


def test_mean_weight_by_group():
    groups = np.array(["a", "b", "a", "c", "b", "a", "c"])
    means = mean_weight_by_group(SCORES, groups)
    assert list(means) == ["a", "b", "c"]
    np.testing.assert_allclose(list(means.values()), [(0.2 + 0.5 + 0.5) / 3, (0.9 + 0.1) / 2, (0.9 + 0.7) / 2])
    assert mean_weight_by_group(SCORES, np.array([0, 1, 0, 1, 0, 1, 0])) == pytest.approx(
        {0: (0.2 + 0.5 + 0.1 + 0.7) / 4, 1: (0.9 + 0.9 + 0.5) / 3})


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(InputError, match="exactly one"):
        readout(SCORES, budget=2, fraction=0.5)
    with pytest.raises(InputError, match="exactly one"):
        readout(SCORES)
    with pytest.raises(InputError, match="larger than the pool"):
        readout(SCORES, budget=8)
    with pytest.raises(InputError, match="NaN"):
        readout(np.array([0.1, np.nan]), budget=1)
    with pytest.raises(InputError, match=">= 0"):
        readout(np.array([0.1, -0.2]), soft=True)
    with pytest.raises(InputError, match=">= 0"):
        Selection(np.array([0, 1]), np.array([1.0, -1.0]))
    with pytest.raises(InputError, match="one length"):
        Selection(np.array([0, 1]), np.array([1.0]))
    with pytest.raises(InputError, match="one group per weight"):
        mean_weight_by_group(SCORES, np.zeros(3))


def test_select_is_a_deprecated_alias_of_readout():
    with pytest.warns(DeprecationWarning, match="readout"):
        s = select(SCORES, top_k=2)
    np.testing.assert_array_equal(s.indices, [1, 3])


def test_random_subset_is_distinct_sorted_and_seeded():
    a = random_subset(0, 50, budget=20)
    assert len(set(a.tolist())) == 20 and np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 50
    np.testing.assert_array_equal(a, random_subset(0, 50, budget=20))
    assert len(random_subset(1, 50, fraction=0.1)) == 5
    with pytest.raises(InputError, match="larger than the pool"):
        random_subset(0, 5, budget=6)
