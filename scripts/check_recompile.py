"""Seconds per call of influence.scores (cg, ekfac) and curvature.fit, three calls each on a small digits MLP:
after the first call nothing should recompile. Usage: PYTHONPATH=. python scripts/check_recompile.py"""
import time, numpy as np, jax
from sklearn.datasets import load_digits
from jdps.models.mlp import mlp_task
from jdps import influence, ihvp as ih, curvature
x, y = load_digits(return_X_y=True)
data = {"x": (x / 16).astype(np.float32), "y": y}
task, params = mlp_task(0, 64, (32,), 10)
q = {k: v[:8] for k, v in data.items()}; tr = {k: v[100:356] for k, v in data.items()}
for name, m in (("cg", ih.cg(0.1, maxiter=5)), ("ekfac", ih.ekfac(0.1, key=0))):
    f = influence.fit(task, params, tr, ihvp=m)
    ts = []
    for _ in range(3):
        t = time.perf_counter(); influence.scores(f, q, tr); ts.append(time.perf_counter() - t)
    print(name, "scores s per call:", [round(t, 2) for t in ts])
ts = []
for _ in range(3):
    t = time.perf_counter(); curvature.fit(task, params, tr, kind="ekfac", key=0); ts.append(time.perf_counter() - t)
print("curvature.fit s per call:", [round(t, 2) for t in ts])
