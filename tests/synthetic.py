"""Small synthetic problems shared by several test files."""

import numpy as np


def noisy_blobs(n, m, seed=0, noise=0.3):
    """Three 2-d Gaussian blobs: n training points with a `noise` share of labels flipped to another
    class, m clean meta points. Returns (train {x, y}, meta {x, y}, flipped [n] bool)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[3, 0], [-1.5, 2.6], [-1.5, -2.6]])
    y, ym = rng.integers(0, 3, n), rng.integers(0, 3, m)
    x = (centres[y] + rng.normal(size=(n, 2))).astype(np.float32)
    xm = (centres[ym] + rng.normal(size=(m, 2))).astype(np.float32)
    flipped = rng.random(n) < noise
    y_noisy = np.where(flipped, (y + rng.integers(1, 3, n)) % 3, y).astype(np.int32)
    return {"x": x, "y": y_noisy}, {"x": xm, "y": ym.astype(np.int32)}, flipped
