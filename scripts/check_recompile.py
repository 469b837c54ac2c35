"""Seconds per call of influence.scores (cg, ekfac) and curvature.fit, three calls each on a small digits MLP:
after the first call nothing should recompile.

    PYTHONPATH=. python scripts/check_recompile.py
"""

import time

import numpy as np
from sklearn.datasets import load_digits

from jdps import influence

from jdps.influence import curvature
from jdps.influence import ihvp as ih
from jdps.models.mlp import mlp_task


def seconds_per_call(fn, calls: int = 3) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(round(time.perf_counter() - t, 2))
    return out


def main() -> None:
    x, y = load_digits(return_X_y=True)
    data = {"x": (x / 16).astype(np.float32), "y": y}
    task, params = mlp_task(0, 64, (32,), 10)
    query = {k: v[:8] for k, v in data.items()}
    train = {k: v[100:356] for k, v in data.items()}
    for name, method in (("cg", ih.cg(0.1, maxiter=5)), ("ekfac", ih.ekfac(0.1, key=0))):
        fitted = influence.fit(task, params, train, ihvp=method)
        print(name, "scores s per call:", seconds_per_call(lambda: influence.scores(fitted, query, train)))
    print("curvature.fit s per call:",
          seconds_per_call(lambda: curvature.fit(task, params, train, kind="ekfac", key=0)))


if __name__ == "__main__":
    main()
