"""Scaling of the mesh stages: bytes each device holds and the overhead of sharding, as ratios to one device.

Four stages on one problem (an MLP classifier on N Gaussian examples): BADS (one epoch of the default
sampler, batch 512), trajectory features (one checkpoint, d = 256, batches of 1024), the pursuit (OMP, k = 32,
on A [N, 256]) and influence scoring (EK-FAC query scores, one JVP a batch of 1024), each run on one device,
on meshes of 2, 4 and 8 simulated CPU devices in one process, and on 2 processes of one device each
(jax.distributed on loopback). Bytes per device: the per-device program's arguments + outputs + temporaries
of the stage's compiled step (XLA's memory analysis: BADS's epoch, a features batch, an influence batch),
and A's rows on each device for the pursuit. Overhead: the stage's median time over 3 calls (after a warm-up call that
compiles) over its one-device time. Simulated devices share this machine's cores, so no speed-up is
expected or claimed: a ratio above 1 is what splitting and the collectives cost here, with no parallel
hardware to pay it back.

    PYTHONPATH=. python scripts/bench_scaling.py            # about 3 minutes on 2 cores
    PYTHONPATH=. python scripts/bench_scaling.py --quick    # a smoke run (N = 1024)

writes experiments/results/bench_scaling.md (the table, the command and the machine) and .json, and the
memory plan of docs/multihost.md (`memory_plan`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "experiments" / "results" / "bench_scaling"
STAGES = ("bads", "features", "pursuit", "influence")
CONFIGS = (("1 device", 1, 1), ("2 devices", 2, 1), ("4 devices", 4, 1), ("8 devices", 8, 1),
           ("2 processes x 1 device", 1, 2))


def _compiled_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)


def _timed(fn, repeats: int = 3) -> float:
    """The median seconds of `repeats` calls after one that compiles (results waited for)."""
    import jax

    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def worker(n: int) -> dict:
    """Each stage's seconds and bytes per device on this process's view of the mesh (every device)."""
    import jax

    from jdps import bads, influence, loop
    from jdps import distributed as dist
    from jdps.bads.kernel import as_top_level_api
    from jdps.bads.sampler import on_mesh, run_epochs
    from jdps.gradients import features as fe
    from jdps.gtp import pursuit
    from jdps.gtp.pursuit.rows import on_device
    from jdps.influence import ihvp
    from jdps.influence.scores import _jvp_scores
    from jdps.models.build import build_task

    mesh = dist.make_mesh() if jax.device_count() > 1 else None
    rng = np.random.default_rng(0)
    f, c = 32, 10
    centres = rng.normal(size=(c, f)) * 2
    y = rng.integers(0, c, n).astype(np.int32)
    train = {"x": (centres[y] + rng.normal(size=(n, f))).astype(np.float32), "y": y}
    meta = {k: v[:256] for k, v in train.items()}
    task, params = build_task("mlp", (f,), c, seed=0, hidden=(128,))
    out = {}

    # BADS: one epoch of the compiled sampler (bads.fit's placement); bytes of the compiled epoch
    b = 512
    sampler = as_top_level_api(task, None, n, len(meta["x"]), bads.BADSConfig())
    state = sampler.init(jax.random.key(0), params)
    arrays, meta_arrays = dict(train), dict(meta)
    sharding = None
    if mesh is not None:
        state, arrays, meta_arrays, sharding = on_mesh(mesh, state, arrays, meta_arrays, b)
    out["bads"] = {"seconds": _timed(lambda: run_epochs(sampler.step, 1, state, arrays, meta_arrays, 1, b, 64,
                                                        batch_sharding=sharding))}
    compiled = loop.epoch.lower(sampler.step, jax.random.key(1), state, arrays, np.arange(n, dtype=np.int32),
                                meta_arrays, batch_size=b, meta_batch_size=64, remainder="pad",
                                batch_sharding=sharding).compile()
    out["bads"]["bytes"] = _compiled_bytes(compiled)

    # trajectory features: one checkpoint, d = 256; bytes of one compiled batch step
    d, fb = 256, 1024
    out["features"] = {"seconds": _timed(lambda: fe.per_example_features(task, params, train, d=d, key=0,
                                                                         batch_size=fb, mesh=mesh))}
    feats = fe.per_example_features(task, params, train, d=d, key=0, batch_size=fb, mesh=mesh).features
    batch = {"x": train["x"][:fb], "y": train["y"][:fb], "index": np.arange(fb, dtype=np.int32),
             "mask": np.ones(fb, bool)}
    p = params if mesh is None else dist.put_params(params, mesh)
    paths = tuple(fe.pf.select(None, params))
    compiled = fe._vmap_step.lower(p, dist.on_mesh(batch, mesh), jax.random.key(0), task=task, paths=paths,
                                   chunk_size=fe.CHUNK_FLOATS // sum(int(np.size(v)) for v in jax.tree.leaves(params)),
                                   d=d, kind="rademacher").compile()
    out["features"]["bytes"] = _compiled_bytes(compiled)

    # the pursuit: OMP k = 32 on A [N, 256]; bytes: A's rows on each device
    target = feats.mean(0)
    out["pursuit"] = {"seconds": _timed(lambda: pursuit.omp(feats, target, 32, mesh=mesh)),
                      "bytes": dist.bytes_per_device(on_device(feats, np.float32, mesh))}

    # influence scoring: EK-FAC query scores (fitted once), one JVP a batch; bytes of one compiled batch
    fitted = influence.fit(task, params, meta, ihvp=ihvp.ekfac(1e-3, key=0), batch_size=256, mesh=mesh)
    out["influence"] = {"seconds": _timed(lambda: influence.query_scores(fitted, meta, train, batch_size=fb))}
    v = influence.query_vector(fitted, meta, batch_size=256)
    compiled = _jvp_scores.lower(task, fitted.params, v, dist.on_mesh(batch, mesh), normalize=False).compile()
    out["influence"]["bytes"] = _compiled_bytes(compiled)
    out["devices"], out["processes"] = jax.device_count(), jax.process_count()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(n: int, devices: int, processes: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "JDPS_PROGRESS": "0",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    base = [sys.executable, __file__, "--worker", "--n", str(n)]
    if processes > 1:
        port = _free_port()
        base += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes)]
    procs = [subprocess.Popen(base + (["--process-id", str(i)] if processes > 1 else []), env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(processes)]
    outs = [p.communicate(timeout=1200) for p in procs]
    for p, (stdout, stderr) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"worker failed ({p.returncode}): {stderr[-2000:]}")
    return json.loads(outs[0][0].strip().splitlines()[-1])


def memory_plan() -> dict:
    """Bytes per device of the two large cases of docs/multihost.md (float32):

    GTP: A [N, T d] for N = 1M examples and T d = 8,192, split over the 'data' axis.
    EK-FAC on a 1B-parameter decoder (24 layers, d_model 2048, MLP 8192: 1.2B Dense parameters): per Dense
    layer y = x W (m inputs, n outputs) the factors A, Q_A [m', m'] (m' = m + 1 with the bias), G, Q_G [n, n]
    and the corrected eigenvalues S [m', n]; each Dense layer's factor set whole on one device of the 'model'
    axis, the largest first to the least loaded."""
    n, td = 1_000_000, 8192
    a_bytes = n * td * 4
    layers, dm, dff = 24, 2048, 8192
    dense = [(dm, dm)] * 4 + [(dm, dff), (dff, dm)]            # q, k, v, o, MLP up, MLP down
    sets = [(2 * (m + 1) ** 2 + 2 * k ** 2 + (m + 1) * k) * 4 for m, k in dense] * layers   # one per Dense layer
    per_layer = sum(sets) // layers
    params = layers * sum(m * k for m, k in dense)

    def most_loaded(devices: int) -> int:  # each factor set whole on one device, largest first to the least loaded
        load = [0] * devices
        for size in sorted(sets, reverse=True):
            load[load.index(min(load))] += size
        return max(load)
    return {"gtp": {"N": n, "Td": td, "A_bytes": a_bytes,
                    "per_device": {str(dd): a_bytes // dd for dd in (1, 8, 16, 64, 256)}},
            "ekfac": {"layers": layers, "d_model": dm, "d_ff": dff, "dense_parameters": params,
                      "factor_bytes_per_layer": per_layer, "factor_bytes": sum(sets),
                      "largest_dense_factor_bytes": max(sets),
                      "per_device": {str(mm): most_loaded(mm) for mm in (1, 8, 16, 64)}}}


def report(res: dict) -> str:
    base = res["runs"]["1 device"]
    lines = [f"# Scaling of the mesh stages (N = {res['setup']['n']:,})", "",
             ("Bytes each device holds and time of each stage, as ratios to one device. Simulated devices "
              "share the machine's cores: the time ratio is the overhead of splitting and collectives, with "
              "no parallel hardware to pay it back (no speed-up is expected or claimed)."), "",
             "| stage | run | seconds | time / 1 device | bytes per device | bytes / 1 device |",
             "|---|---|---:|---:|---:|---:|"]
    for stage in STAGES:
        for name in res["runs"]:
            r, b = res["runs"][name][stage], base[stage]
            lines.append(f"| {stage} | {name} | {r['seconds']:.3f} | {r['seconds'] / b['seconds']:.2f} | "
                         f"{r['bytes']:,} | {r['bytes'] / b['bytes']:.3f} |")
    plan = res["memory_plan"]
    g, e = plan["gtp"], plan["ekfac"]
    lines += ["", "## Memory plan (docs/multihost.md)", "",
              f"GTP features A [{g['N']:,}, {g['Td']:,}] float32: {g['A_bytes'] / 1e9:.1f} GB; per device on a "
              "'data' axis of " + ", ".join(f"{k}: {v / 1e9:.2f} GB" for k, v in g["per_device"].items()) + ".", "",
              f"EK-FAC factors of a {e['dense_parameters'] / 1e9:.2f}B-parameter decoder ({e['layers']} layers, "
              f"d_model {e['d_model']}, MLP {e['d_ff']}): {e['factor_bytes_per_layer'] / 1e9:.2f} GB a block, "
              f"{e['factor_bytes'] / 1e9:.1f} GB in all; each Dense layer's factors whole on one device of a "
              "'model' axis of " + ", ".join(f"{k}: at most {v / 1e9:.2f} GB"
                                             for k, v in e["per_device"].items()) + ".", "",
              f"Command: `{res['setup']['command']}`  ", f"Machine: {res['setup']['machine']}", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="N = 1024, a smoke run")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--out", default=str(OUT), help="results path without suffix")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--coordinator", help=argparse.SUPPRESS)
    p.add_argument("--num-processes", type=int, help=argparse.SUPPRESS)
    p.add_argument("--process-id", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    n = args.n or (1024 if args.quick else 8192)
    if args.worker:
        sys.path.insert(0, str(ROOT))
        from jdps import distributed as dist

        dist.initialize(args.coordinator, args.num_processes, args.process_id)
        result = worker(n)
        if dist.is_writer():
            print(json.dumps(result), flush=True)
        dist.barrier("bench-done")
        return
    runs, load = {}, os.getloadavg()[0]
    for name, devices, processes in CONFIGS:
        runs[name] = _launch(n, devices, processes)
        print(name, {s: round(runs[name][s]["seconds"], 3) for s in STAGES}, flush=True)
    command = ("PYTHONPATH=. python scripts/bench_scaling.py " + shlex.join(sys.argv[1:])).strip()
    res = {"setup": {"n": n, "command": command,
                     "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                                f"{platform.python_version()}, load average {load:.1f} at the start "
                                "(the machine is shared: times are noisy)"},
           "runs": runs, "memory_plan": memory_plan()}
    from jdps.outputs import write_json, write_text

    write_json(f"{args.out}.json", res)
    write_text(f"{args.out}.md", report(res))
    print(report(res))


if __name__ == "__main__":
    main()
