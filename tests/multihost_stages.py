"""The five stages (BADS, trajectory features, pursuit, influence scoring, Quad) on one small problem, on a
mesh or on one device: what the mesh and multi-process tests compare.

    python tests/multihost_stages.py OUT.npz WORKDIR [--coordinator HOST:PORT --num-processes P --process-id I]

runs them as one process of a multi-process run (jdps.distributed) on the global mesh, and the writing
process saves the results to OUT.npz. `stages(mesh, workdir)` runs them in this process.
"""

import sys
from pathlib import Path

import numpy as np

N, M, NQ, F, C = 64, 12, 8, 5, 3
BATCH = 16          # every stage's batch size


def problem():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(C, F)) * 2
    y = rng.integers(0, C, N).astype(np.int32)
    x = (centres[y] + rng.normal(size=(N, F))).astype(np.float32)
    ym = np.arange(M, dtype=np.int32) % C
    xm = (centres[ym] + rng.normal(size=(M, F))).astype(np.float32)
    yq = rng.integers(0, C, NQ).astype(np.int32)
    xq = (centres[yq] + rng.normal(size=(NQ, F))).astype(np.float32)
    return {"x": x, "y": y}, {"x": xm, "y": ym}, {"x": xq, "y": yq}


def stages(mesh, workdir) -> dict:
    """Every stage's results as numpy arrays (the same on every process)."""
    import jax

    import optax

    from jdps import bads, gtp, influence, quad
    from jdps.train import train as train_loop
    from jdps.checkpoint import Checkpoints
    from jdps.gtp import pursuit
    from jdps.influence import ihvp
    from jdps.models.build import build_task

    train, meta, query = problem()
    task, params = build_task("mlp", (F,), C, seed=0, hidden=(8,))
    out = {}

    ckpt = Checkpoints(Path(workdir) / "bads", max_to_keep=2)
    state = bads.fit(task, params, train, meta, key=0, epochs=2, batch_size=BATCH, meta_batch_size=6, mesh=mesh,
                     checkpoints=ckpt)
    out["bads/weights"] = bads.posterior_mean_weights(state)
    resumed = bads.fit(task, params, train, meta, key=0, epochs=2, batch_size=BATCH, meta_batch_size=6, mesh=mesh,
                       checkpoints=ckpt)               # every epoch saved: the state is restored, not recomputed
    out["bads/resumed_weights"] = bads.posterior_mean_weights(resumed)
    out["bads/theta"] = np.asarray(jax.tree.leaves(jax.tree.map(np.asarray, resumed.params))[0])
    ckpt.close()

    trained = train_loop(task, params, train, key=0, epochs=2, batch_size=BATCH, optimizer=optax.adam(1e-2),
                         mesh=mesh).params
    out["train/params"] = np.concatenate([np.ravel(np.asarray(v)) for v in jax.tree.leaves(trained)])
    later = jax.tree.map(lambda p: p * 0.9 + 0.01, params)
    g = gtp.fit(task, [params, later], train, d=8, key=0, batch_size=BATCH, mesh=mesh)
    out["features/A"], out["features/b"] = np.asarray(g.features), np.asarray(g.target)
    r = pursuit.omp(np.asarray(g.features), np.asarray(g.target), 6, mesh=mesh)
    out["pursuit/indices"], out["pursuit/weights"] = r.indices, r.weights

    fitted = influence.fit(task, params, train, ihvp=ihvp.ekfac(1e-3, key=0), batch_size=BATCH, mesh=mesh)
    out["influence/query_scores"] = influence.query_scores(fitted, query, train, batch_size=BATCH)
    out["influence/scores"] = influence.scores(fitted, query, train, batch_size=BATCH)

    qs = quad.fit(task, params, train, query, key=0, n_clusters=4, kmeans_restarts=2, batch_size=BATCH, mesh=mesh)
    sel = quad.select(qs, key=1, budget=12)
    out["quad/labels"], out["quad/indices"] = np.asarray(qs.clusters.labels), np.asarray(sel.indices)
    out["quad/scores"] = np.nan_to_num(np.asarray(sel.scores, np.float64), nan=-9.0)
    return out


def main(argv) -> None:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("workdir")
    p.add_argument("--coordinator")
    p.add_argument("--num-processes", type=int)
    p.add_argument("--process-id", type=int)
    args = p.parse_args(argv)
    from jdps import distributed as dist

    dist.initialize(args.coordinator, args.num_processes, args.process_id)
    import jax

    results = stages(dist.make_mesh(), args.workdir)
    results["processes"] = np.array(jax.process_count())
    results["devices"] = np.array(jax.device_count())
    if dist.is_writer():
        np.savez(args.out, **results)
    dist.barrier("stages-done")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main(sys.argv[1:])
