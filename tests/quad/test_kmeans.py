"""k-means against scikit-learn's KMeans and hand-computed Lloyd steps."""

import numpy as np
import pytest
from sklearn.cluster import KMeans as SKMeans
from sklearn.datasets import make_blobs

from jdps.errors import InputError
from jdps.quad.kmeans import kmeans, kmeans_plusplus, lloyd


def numpy_inertia(x, centroids):
    d2 = ((x[:, None, :] - np.asarray(centroids, np.float64)[None]) ** 2).sum(-1)
    return d2.argmin(1), d2.min(1).sum()


@pytest.mark.parametrize("problem", ["separated", "overlapping"])
def test_inertia_matches_sklearn_within_one_percent(problem):
    if problem == "separated":
        x, _ = make_blobs(600, 8, centers=6, cluster_std=1.0, random_state=0)
        k = 6
    else:  # 12 wide blobs packed into a small box: many local optima
        x, _ = make_blobs(600, 5, centers=12, cluster_std=3.0, center_box=(-6, 6), random_state=1)
        k = 12
    result = kmeans(0, x.astype(np.float32), k, restarts=8)
    reference = SKMeans(k, n_init=8, random_state=0).fit(x).inertia_
    labels, inertia = numpy_inertia(x, result.centroids)
    np.testing.assert_array_equal(result.labels, labels)
    np.testing.assert_allclose(float(result.inertia), inertia, rtol=1e-4)
    assert abs(inertia / reference - 1) < 0.01, (inertia, reference)
    assert result.centroids.shape == (k, x.shape[1]) and result.labels.dtype == np.int32


def test_reproducible_by_key_and_seeds_are_distinct_points():
    x, _ = make_blobs(600, 8, centers=6, cluster_std=1.0, random_state=0)
    x = x.astype(np.float32)
    a, b = kmeans(3, x, 6, restarts=8), kmeans(3, x, 6, restarts=8)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    import jax
    seeds = np.asarray(kmeans_plusplus(jax.random.key(5), x, 6))
    rows = [np.flatnonzero((x == s).all(1)) for s in seeds]
    assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 6


def test_one_lloyd_step_is_the_mean_of_each_cluster():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    c0 = x[:4].copy()
    step = lloyd(x, c0, max_iter=1, tol=0.0)
    labels = ((x[:, None] - c0[None]) ** 2).sum(-1).argmin(1)
    means = np.stack([x[labels == c].mean(0) for c in range(4)])
    assert int(step.iterations) == 1
    np.testing.assert_allclose(step.centroids, means, rtol=1e-5, atol=1e-6)


def test_an_empty_cluster_is_reseeded_at_the_point_farthest_from_its_centre():
    rng = np.random.default_rng(1)
    a = 0.05 * rng.normal(size=(20, 2))                     # tight blob at (0, 0)
    b = 0.05 * rng.normal(size=(20, 2)) + [10.0, 0.0]       # tight blob at (10, 0)
    x = np.concatenate([a, b, [[0.0, 4.0]]])                 # one straggler, 4 from blob a's centre
    init = np.array([[0.0, 0.0], [10.0, 0.0], [100.0, 100.0]])  # the third centre attracts no point
    first = lloyd(x, init, max_iter=1, tol=0.0)
    np.testing.assert_allclose(first.centroids[2], [0.0, 4.0])  # the farthest point from its centre
    result = lloyd(x, init)
    np.testing.assert_array_equal(result.labels, [0] * 20 + [1] * 20 + [2])
    np.testing.assert_allclose(result.centroids, [a.mean(0), b.mean(0), [0.0, 4.0]], atol=1e-6)


def test_bad_input_is_named():
    x = np.zeros((5, 2), np.float32)
    with pytest.raises(InputError, match="exceed the 5 points"):
        kmeans(0, x, 6)
    with pytest.raises(InputError, match=r"x \[N, F\]"):
        kmeans(0, np.zeros(5), 2)
    with pytest.raises(InputError, match="NaN"):
        kmeans(0, np.full((5, 2), np.nan), 2)
    with pytest.raises(InputError, match="restarts"):
        kmeans(0, x, 2, restarts=0)
