"""Cost of the per-example gradient forms relative to one batch-gradient step, measured in one run.

For the MLP (784-512-256-10, batch 512) and a small transformer LM (batch 32), times, after compilation
and as the median of interleaved repeats, each jit-compiled per-batch computation:

    batch gradient step        jax.grad of the mean loss (the unit: ratio 1)
    vmap(grad)                 per-example gradients materialised, [B, p]
    ghost norms                per-example gradient norms |g_i| [B] from the Dense taps
    last-layer gradients       the output layer's per-example gradients from its taps
    dense projection           vmap(grad) projected to d dims by the blockwise Rademacher projection
    factored projection        LoGra-style per-layer projection from the taps, L k^2 <= d dims

All rows take gradients w.r.t. the Dense layers (every parameter of the MLP; for the transformer, all but
the embeddings and LayerNorms), so they compute the same thing in different ways. Writes a Markdown table
to experiments/results/bench_gradients.md and prints it.

    PYTHONPATH=. python scripts/bench_gradients.py [--repeats 7] [--d 1024]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jdps.gradients import factored as fa
from jdps.gradients import param_filter as pf
from jdps.models.mlp import mlp_task
from jdps.models.transformer import transformer_lm_task
from jdps.gradients.per_example import flatten, per_example_grads
from jdps.gradients.projection import project


def cases(task, params, batch, d, key):
    """name -> jitted thunk, for one model and batch."""
    paths = fa.dense_selection(task, params, batch, None, "bench")[0]
    n_layers = len({p.rpartition("/")[0] for p in paths})
    k = int((d // n_layers) ** 0.5)
    mean_loss = lambda p, b: task.loss_fn(p, b).mean()
    fns = {
        "batch gradient step (jax.grad of the mean loss)":
            jax.jit(lambda p, b: jax.grad(lambda s: mean_loss(pf.put(p, s), b))(pf.take(p, paths))),
        "per-example gradients, vmap(grad), materialised":
            jax.jit(lambda p, b: flatten(per_example_grads(task.loss_fn, p, b, param_filter=paths))),
        "per-example gradient norms, ghost":
            jax.jit(lambda p, b: fa.grad_norms(task, p, b, param_filter=paths)),
        "last-layer gradients, taps":
            jax.jit(lambda p, b: fa.layer_grads(task, p, b, param_filter=pf.last_layers(1))),
        f"dense projection of vmap(grad), d={d}":
            jax.jit(lambda p, b: per_example_grads(task.loss_fn, p, b, param_filter=paths,
                                                   transform=lambda g: project(flatten(g), key, d))),
        f"factored projection, {n_layers} layers x {k}x{k} = {n_layers * k * k}":
            jax.jit(lambda p, b: fa.factored_features(task, p, b, key=key, k=k, param_filter=paths)),
    }
    p_count = sum(int(np.prod(leaf.shape)) for leaf in pf.take(params, paths).values())
    return {name: (lambda f=f: f(params, batch)) for name, f in fns.items()}, p_count


def median_times(thunks: dict, repeats: int) -> dict[str, float]:
    for thunk in thunks.values():  # compile and warm up
        jax.block_until_ready(thunk())
    times = {name: [] for name in thunks}
    for _ in range(repeats):  # interleaved, so load changes hit every row alike
        for name, thunk in thunks.items():
            start = time.perf_counter()
            jax.block_until_ready(thunk())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--d", type=int, default=1024, help="projection width")
    ap.add_argument("--out", default="experiments/results/bench_gradients.md")
    args = ap.parse_args(argv)
    key = jax.random.key(0)
    rng = np.random.default_rng(0)

    mlp, mlp_params = mlp_task(0, 784, [512, 256], 10)
    mlp_batch = {"x": jnp.asarray(rng.normal(size=(512, 784)), jnp.float32),
                 "y": jnp.asarray(rng.integers(0, 10, 512)), "index": jnp.arange(512)}
    lm, lm_params = transformer_lm_task(0, vocab_size=1024, d_model=128, n_heads=4, n_layers=2, max_len=64)
    lm_batch = {"x": jnp.asarray(rng.integers(1, 1024, (32, 64))), "index": jnp.arange(32)}
    models = [("MLP 784-512-256-10, batch 512", mlp, mlp_params, mlp_batch),
              ("transformer LM (2 blocks, d_model 128, 4 heads, vocab 1024), batch 32 x 64 tokens",
               lm, lm_params, lm_batch)]

    lines = ["# Per-example gradient cost relative to one batch-gradient step", "",
             f"Command: `PYTHONPATH=. python {' '.join(['scripts/bench_gradients.py', *sys.argv[1:]])}`  ",
             (f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
              f"jax {jax.__version__} on {jax.devices()[0].platform}; median of {args.repeats} interleaved "
              "repeats after compilation, all rows in this one run."), "",
             ("Every row is one jit-compiled computation on one batch, with gradients w.r.t. the same Dense "
              "layers. The dense projection draws its p x d Rademacher signs block by block on every batch "
              "(never holding P), so its cost is about that of the [B, p] x [p, d] product on top of vmap(grad); "
              "the factored projection, ghost norms and last-layer gradients use one forward and one backward "
              "pass to the layer outputs, with no per-example backward."), ""]
    for title, task, params, batch in models:
        thunks, p_count = cases(task, params, batch, args.d, key)
        t = median_times(thunks, args.repeats)
        base = next(iter(t.values()))
        lines += [f"## {title}", "", f"Gradients w.r.t. the Dense layers: p = {p_count:,} parameters.", "",
                  "| computation | median ms | x batch gradient step |", "|---|---:|---:|"]
        lines += [f"| {name} | {sec * 1e3:.1f} | {sec / base:.2f} |" for name, sec in t.items()]
        lines.append("")
    table = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    print(table)
    return table


if __name__ == "__main__":
    main()
