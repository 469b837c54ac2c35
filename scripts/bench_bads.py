"""Cost of a BADS step against a plain SGD step, and of the BLO baselines against BADS, in one run.

For the MLP (784-256-128-10, the command line's) at batch 128 and the CNN (two 3x3 convolutions of 16 and
32 channels) at batch 512, each with a meta batch of 100, a training set of N = 20,000 examples (the size
of the BADS state's per-example arrays) and M = 1,000 meta examples, it times these jit-compiled steps on
one fixed batch and meta batch (random inputs of Fashion-MNIST's shape: the cost does not depend on the
values), each chaining its own state (donated, so updated in place) as a training loop does, after
compilation, in interleaved rounds (times: medians over rounds; ratios: medians of the ratios within a
round, which load drifting between rounds does not bias):

    plain SGD step      one optax.sgd step on mean_B l_i + mean_Bm l^m_j: a forward and backward pass over
                        the same b + b_m examples a BADS step sees, and nothing else
    BADS step           jdps.bads with the default BADSConfig (its fields are printed in the report)
    BADS, theta only    the same with weight_lr = 0 (the weights frozen): the theta chain's share
    BADS, Gaussian noise  the default with noise="gaussian" (N(0, I) draws instead of +-1 signs)
    Gaussian noise, Rademacher noise   the draws shaped like theta that each step adds (jdps.bads.sgmcmc.leaf_noise)
    L2RW step, MWN step jdps.baselines.reweighting, optax.sgd on theta (MWN's weight net: optax.adam)

and the memory XLA plans for each compiled step (`jit(...).lower(...).compile().memory_analysis()`):
argument, output and temporary (scratch) buffer bytes. Their sum less the aliased (donated) bytes bounds
what the step holds at once: parameters, optimizer and sampler state, batches and activations. Writes a
Markdown table to experiments/results/bench_bads.md and prints it.

    PYTHONPATH=. python scripts/bench_bads.py [--repeats 101] [--cnn-repeats 15] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdps import bads

from jdps.bads import sgmcmc
from jdps.baselines import ReweightState, build_l2rw_step, build_mwn_step, mwn_init
from jdps.models.cnn import cnn_task
from jdps.models.mlp import mlp_task

N_TRAIN, N_META, META_BATCH, LR = 20_000, 1_000, 100, 0.05
SGD, BADS, THETA = "plain SGD step", "BADS step", "BADS, theta only (weight_lr = 0)"
GAUSS = "BADS, Gaussian noise"
NOISE = "Gaussian noise alone (N(0, I) like theta)"
SIGNS = "Rademacher noise alone (+-1 like theta)"


def _changed(config) -> str:
    """The fields of `config` that shape a step's cost."""
    names = ("theta_kernel", "noise", "weight_param", "offbatch", "weight_substeps", "log_z", "num_theta_samples")
    return ", ".join(f"{name}={getattr(config, name)!r}" for name in names)


def batches(shape, b: int, seed: int = 0):
    """A training batch of b rows (distinct global indices in [0, N)) and a meta batch of META_BATCH rows."""
    rng = np.random.default_rng(seed)

    def batch(rows, n):
        return {"x": jnp.asarray(rng.random((rows, *shape)), jnp.float32),
                "y": jnp.asarray(rng.integers(0, 10, rows), jnp.int32),
                "index": jnp.asarray(rng.choice(n, rows, replace=False), jnp.int32), "mask": jnp.ones(rows, bool)}

    return batch(b, N_TRAIN), batch(META_BATCH, N_META)


def steps(task, params, batch, meta_batch):
    """name -> (step(carry, *fixed) -> carry, carry, fixed): each step chains its own state, as a loop does."""
    key = jax.random.key(0)
    sgd = optax.sgd(LR)

    def sgd_step(carry, batch, meta_batch):
        p, opt_state = carry
        grads = jax.grad(lambda q: task.loss_fn(q, batch).mean() + task.loss_fn(q, meta_batch).mean())(p)
        updates, opt_state = sgd.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state

    def sampler(cfg):
        algo = bads.as_top_level_api(task, None, N_TRAIN, N_META, cfg)
        return (lambda state, k, batch, meta_batch: algo.step(k, state, batch, meta_batch)[0],
                algo.init(key, params), (key, batch, meta_batch))

    def reweighting(step, state):
        return lambda s, batch, meta_batch: step(s, batch, meta_batch)[0], state, (batch, meta_batch)

    net_opt = optax.adam(1e-3)
    net = mwn_init(key)
    return {
        SGD: (sgd_step, (params, sgd.init(params)), (batch, meta_batch)),
        BADS: sampler(bads.BADSConfig()),
        THETA: sampler(bads.BADSConfig(weight_lr=0.0)),
        GAUSS: sampler(bads.BADSConfig(noise="gaussian")),
        NOISE: (lambda like, k: sgmcmc.leaf_noise(k, like), params, (key,)),
        SIGNS: (lambda like, k: sgmcmc.leaf_noise(k, like, "rademacher"), params, (key,)),
        "L2RW step": reweighting(build_l2rw_step(task.loss_fn, sgd), ReweightState(params, sgd.init(params))),
        "MWN step": reweighting(build_mwn_step(task.loss_fn, sgd, net_opt),
                                ReweightState(params, sgd.init(params), net, net_opt.init(net))),
    }


def measure(cases: dict, repeats: int):
    """(seconds [repeats] per case, round by round; memory_analysis per case). Each case runs
    `carry = step(carry, *fixed)` with the carry donated (updated in place, as in a training loop); the
    repeats are interleaved, in a fresh order each round, so load hits every case alike."""
    compiled, carries = {}, {}
    for name, (fn, carry, fixed) in cases.items():
        carries[name] = jax.tree.map(jnp.copy, carry)  # own buffers: donation must not consume shared ones
        compiled[name] = jax.jit(fn, donate_argnums=0).lower(carries[name], *fixed).compile()
    for name, (_, _, fixed) in cases.items():  # warm up
        carries[name] = jax.block_until_ready(compiled[name](carries[name], *fixed))
    times, order = {name: [] for name in cases}, np.random.default_rng(0)
    for _ in range(repeats):
        for name in order.permutation(list(cases)):  # a fresh order each round: no case always runs first
            fixed = cases[name][2]
            start = time.perf_counter()
            carries[name] = jax.block_until_ready(compiled[name](carries[name], *fixed))
            times[name].append(time.perf_counter() - start)
    return {k: np.array(v) for k, v in times.items()}, {k: c.memory_analysis() for k, c in compiled.items()}


def ratio(times: dict, num: str, den: str) -> float:
    """Median over rounds of t_num / t_den within the round (robust to load that drifts between rounds)."""
    return float(np.median(times[num] / times[den]))


def rows(times: dict, memory: dict) -> list[str]:
    mib = lambda x: f"{x / 2**20:.2f}"  # noqa: E731
    out = ["| step | median ms | IQR ms | / plain SGD | / BADS | argument MiB | output MiB | temp MiB | total MiB |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, t in times.items():
        mem = memory[name]
        total = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
                 - mem.alias_size_in_bytes)
        q1, med, q3 = np.percentile(t, [25, 50, 75]) * 1e3
        out.append(f"| {name} | {med:.2f} | {q1:.2f}-{q3:.2f} | {ratio(times, name, SGD):.2f} | "
                   f"{ratio(times, name, BADS):.2f} | {mib(mem.argument_size_in_bytes)} | "
                   f"{mib(mem.output_size_in_bytes)} | {mib(mem.temp_size_in_bytes)} | {mib(total)} |")
    return out


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=101, help="timed rounds of the MLP steps")
    ap.add_argument("--cnn-repeats", type=int, default=15, help="timed rounds of the CNN steps")
    ap.add_argument("--out", default="experiments/results/bench_bads.md")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    mlp, mlp_params = mlp_task(0, 784, (256, 128), 10)
    cnn, cnn_params = cnn_task(0)
    models = [("MLP 784-256-128-10, batch 128 + meta batch 100", mlp, mlp_params, batches((784,), 128),
               args.repeats),
              ("CNN (3x3 conv 16, 3x3 conv 32, dense 10), batch 512 + meta batch 100", cnn, cnn_params,
               batches((28, 28, 1), 512), args.cnn_repeats)]
    device = jax.devices()[0]
    lines = ["# Cost of a BADS step against plain SGD, and of L2RW / MWN against BADS", "",
             f"Command: `PYTHONPATH=. python {' '.join(['scripts/bench_bads.py', *(argv or sys.argv[1:])])}`  ",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, jax "
             f"{jax.__version__} on {device.platform} ({device.device_kind}); every figure from this one run, "
             "after compilation and warm-up, the steps of a model run in interleaved rounds, in a fresh order each "
             "round; times are medians over rounds, ratios medians over rounds of the ratio within a round "
             f"(1-minute load average at the start: {os.getloadavg()[0]:.1f}; the machine is shared, so the IQR, "
             "25th to 75th percentile over rounds, shows how far to trust a time).", "",
             "Each row is one jit-compiled step on one fixed batch and meta batch, run as a loop runs it: "
             "`carry = step(carry, ...)` with the carry (parameters, optimizer or sampler state) donated, so "
             "it is updated in place. **plain SGD step**: one "
             "`optax.sgd` step on the mean training loss of the batch plus the mean meta loss of the meta "
             "batch, i.e. the forward and backward pass over the same examples a BADS step sees, and nothing "
             "else. **BADS step**: `jdps.bads` with the default `BADSConfig` "
             f"({_changed(bads.BADSConfig())}; N = 20,000 weights, M = 1,000 meta examples). **theta only**: the "
             "same with `weight_lr = 0`. **Gaussian noise**: the default with `noise='gaussian'`. **noise alone**: "
             "the draw shaped like theta that each step adds (`jdps.bads.sgmcmc.leaf_noise`). **L2RW / MWN**: "
             "`jdps.baselines.reweighting`, `optax.sgd` on theta (one look-ahead SGD step; MWN's 1-100-1 weight "
             "net by `optax.adam`).", "",
             "Memory: XLA's plan for the compiled step (`jax.jit(step).lower(...).compile().memory_analysis()`): "
             "argument, output and temporary (scratch) bytes; total = argument + output + temp - aliased, a "
             "bound on what the step holds at once. BADS's arguments include its state: the per-example arrays "
             "(4 x N) and the ring of 4 theta snapshots.", ""]
    timings = {}
    for title, task, params, (batch, meta_batch), repeats in models:
        times, memory = measure(steps(task, params, batch, meta_batch), repeats)
        n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
        lines += [f"## {title}", "", f"{n_params:,} parameters; {repeats} interleaved rounds.", "",
                  *rows(times, memory), ""]
        timings[title.split()[0]] = times
    cnn_ratio, mlp_ratio = ratio(timings["CNN"], BADS, SGD), ratio(timings["MLP"], BADS, SGD)
    weights_share = lambda t: float(np.median((t[BADS] - t[THETA]) / t[SGD]))  # noqa: E731
    lines += ["## Summary", "",
              f"- BADS step / plain SGD step: MLP {mlp_ratio:.2f} ({'met' if mlp_ratio <= 1.3 else 'not met'}), "
              f"CNN {cnn_ratio:.2f} ({'met' if cnn_ratio <= 1.3 else 'not met'}); the goal is <= 1.3 on both.",
              *[f"- {m}: the Gaussian noise alone costs {ratio(t, NOISE, SGD):.2f} of a plain SGD step, the Rademacher "
                f"noise {ratio(t, SIGNS, SGD):.2f}; BADS with Gaussian noise {ratio(t, GAUSS, SGD):.2f}; the theta "
                f"chain (weights frozen) {ratio(t, THETA, SGD):.2f}; the weights' updates add {weights_share(t):.2f}."
                for m, t in timings.items()],
              *[f"- {blo} / BADS: " + ", ".join(f"{m} {ratio(t, f'{blo} step', BADS):.2f}" for m, t in timings.items())
                + "." for blo in ("L2RW", "MWN")],
              f"- Whole run: {time.perf_counter() - started:.0f} s.", ""]
    table = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table)
    print(table)
    return table


if __name__ == "__main__":
    main()
