"""`jdps features` and `jdps pursuit`: GTP's trajectory features and the pursuit, on files (docs/cli.md).

    jdps features --pool P.npz [--target T.npz] --checkpoints C1 [C2 ...] --out A.npy --target-out b.npy
    jdps pursuit --features A.npy --target b.npy --budget K | --fraction F --out SEL.npz

features runs `jdps.gtp.fit` (A [N, T d], row i for example i of P.npz; b [T d]); pursuit runs
`jdps.gtp.pursuit.solve` on A read as a memmap (streamed in row blocks when larger than --max-memory-mb).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from jdps.cli import flags


def _cmd_features(args) -> int:
    from jdps.cli.io import Run, load_sets
    from jdps.errors import InputError

    files = {"--pool": args.pool, "--target": args.target}
    weights = flags.csv(args.checkpoint_weights, float, "--checkpoint-weights") if args.checkpoint_weights else None
    if weights is not None and not all(math.isfinite(w) for w in weights):
        raise InputError(f"--checkpoint-weights must be finite numbers, got {args.checkpoint_weights!r}")
    if args.store is None and args.out is None:
        raise InputError("jdps features writes A to --out A.npy or to --store DIR (or both: the .npy is then an "
                         "export of the store); pass one")
    if args.store is not None and args.checkpoint_dir is not None:
        raise InputError("--store resumes by its own chunks; drop --checkpoint-dir")
    outputs = {"--out": (args.out, ".npy"), "--target-out": (args.target_out, ".npy")}
    if args.store is not None:
        return _features_to_store(args, files, weights, outputs)
    with Run(args, inputs={**files, "--checkpoints": args.checkpoints}, outputs=outputs,
             checkpoint_dir=args.checkpoint_dir) as run:
        s = load_sets(files, args.num_classes)
        pool, target = s.sets["--pool"], s.sets.get("--target")
        from jdps import gtp
        from jdps.outputs import write_npy

        task, checkpoints = _task_and_checkpoints(args, s, pool, weights)
        resume = run.checkpoints(max_to_keep=None)
        done = len(resume.steps()) if resume is not None else 0
        arrays = lambda data: None if data is None else {"x": data.x, "y": data.y}
        with run.atomic("--out") as tmp:             # None on a process that does not write
            state = gtp.fit(task, checkpoints, arrays(pool), d=args.d, key=args.seed, target_data=arrays(target),
                            out=tmp, checkpoint_weights=weights, shared_projection=args.shared_projection,
                            normalize=args.normalize, method=args.grad_form, param_filter=args.param_filter,
                            batch_size=args.batch_size, resume=resume, mesh=run.mesh(),
                            progress=not args.quiet and "features")
            columns, target_b = int(state.features.shape[1]), state.target
            del state                                      # closes the memmap of the temporary file
        run.sidecar("--out")
        ids = ids_path(run.path("--out"))               # row i of A is the pool example with id ids[i]
        if run.writer:
            write_npy(ids, np.asarray(pool.ids), run.provenance())
        report = {"features": str(run.path("--out")), "ids": str(ids),
                  "target": str(run.write_npy("--target-out", target_b)),
                  "examples": len(pool), "checkpoints": len(checkpoints), "columns": columns,
                  "target_kind": "target-domain" if target is not None else "in-domain"}
        if done:
            report["resumed_blocks"] = min(done, len(checkpoints))
        print(json.dumps(report))
    return 0


def _task_and_checkpoints(args, s, pool, weights):
    """The model of --model for the pool's inputs and the --checkpoints loaded into it, one weight each."""
    from jdps.checkpoint import load_params
    from jdps.errors import InputError
    from jdps.models.build import build_task

    task, template = build_task(args.model, pool.x.shape[1:], s.num_classes, seed=args.seed,
                                hidden=flags.hidden(args))
    checkpoints = load_params(args.checkpoints, template)
    if weights is not None and len(weights) != len(checkpoints):
        raise InputError(f"--checkpoint-weights gives {len(weights)} weights for {len(checkpoints)} checkpoints; "
                         "give one per checkpoint (a Checkpoints folder counts each of its steps)")
    return task, checkpoints


def _features_to_store(args, files, weights, outputs) -> int:
    """jdps features --store DIR: A written into a jdps.store by every process, each its own row chunks;
    b from the target set or the store's mean row; --out (optional) an .npy export of the store."""
    from jdps.cli.io import Run, load_sets

    with Run(args, inputs={**files, "--checkpoints": args.checkpoints}, outputs=outputs) as run:
        s = load_sets(files, args.num_classes)
        pool, target = s.sets["--pool"], s.sets.get("--target")
        from jdps import store as fs
        from jdps.gtp.trajectory import mean_row, target_trajectory
        from jdps.outputs import write_npy

        task, checkpoints = _task_and_checkpoints(args, s, pool, weights)
        options = {"checkpoint_weights": weights, "shared_projection": args.shared_projection,
                   "normalize": args.normalize, "method": args.grad_form, "param_filter": args.param_filter,
                   "batch_size": args.batch_size}
        identity = run.identity(exclude=("store",))
        digests = identity["inputs"].get("--checkpoints", [])
        store = fs.write_trajectory(args.store, task, checkpoints, {"x": pool.x, "y": pool.y}, d=args.d, key=args.seed,
                                    ids=pool.ids, fingerprint={"run": identity, "checkpoint_files": digests},
                                    provenance=run.provenance(), progress=not args.quiet and "features", **options)
        if target is not None:
            target_b = target_trajectory(task, checkpoints, {"x": target.x, "y": target.y}, d=args.d, key=args.seed,
                                         **options)
        else:
            target_b = mean_row(store, block_rows=store.chunk_rows)
        report = {"store": str(args.store), "examples": len(pool), "checkpoints": len(checkpoints),
                  "columns": store.shape[1], "chunk_rows": store.chunk_rows,
                  "target": str(run.write_npy("--target-out", target_b)),
                  "target_kind": "target-domain" if target is not None else "in-domain"}
        if args.out is not None:
            if run.writer:
                store.to_npy(run.path("--out"))
                write_npy(ids_path(run.path("--out")), np.asarray(pool.ids), run.provenance())
            run.sidecar("--out")
            report["features"] = str(run.path("--out"))
        print(json.dumps(report))
    return 0


def ids_path(features) -> Path:
    """The ids sidecar of a features matrix: A.npy -> A.ids.npy (row i of A is the example with id ids[i])."""
    p = Path(features)
    return p.with_name(f"{p.name[:-4] if p.name.endswith('.npy') else p.name}.ids.npy")


def _row_ids(features, rows: int) -> np.ndarray:
    """The ids of A's rows from its sidecar (`jdps features` writes it), else the row numbers 0..N-1."""
    from jdps.errors import InputError

    path = ids_path(features)
    if not path.is_file():
        return np.arange(rows)
    ids = np.load(path, allow_pickle=False)
    if ids.shape != (rows,):
        raise InputError(f"{path} holds {ids.shape} ids but --features {features} has {rows} rows; it belongs to "
                         "another A.npy: delete it or write both again with `jdps features`")
    return ids


def _cmd_pursuit(args) -> int:
    from jdps.cli.io import Run, read_npy
    from jdps.errors import InputError

    if args.signed and args.solver == "topk":
        raise InputError("--signed applies to omp, cosamp and gradmatch; top-k ranks rows and fits no weights")
    if (args.features is None) == (args.store is None):
        raise InputError("jdps pursuit reads A from --features A.npy or from --store DIR (jdps features --store); "
                         "pass exactly one")
    with Run(args, inputs={"--features": args.features, "--target": args.target, "--store": args.store},
             outputs={"--out": (args.out, ".npz")}) as run:
        if args.store is not None:
            from jdps.store import FeatureStore

            a = FeatureStore(args.store)                # an incomplete store is refused here, before any work
        else:
            a = read_npy(args.features, "--features", ndim=2)
        b = np.asarray(read_npy(args.target, "--target", ndim=1))
        if not np.isfinite(b).all():
            raise InputError(f"--target {args.target} holds NaN or Inf; recompute it (e.g. `jdps features`)")
        if len(b) != a.shape[1]:
            source = f"--features {args.features}" if args.store is None else f"--store {args.store}"
            raise InputError(f"--target {args.target} has {len(b)} entries but {source} has "
                             f"Td = {a.shape[1]} columns; pass the b.npy written with this A")
        from jdps.gtp import pursuit
        from jdps.validate import budget_from

        ids = _row_ids(args.features, len(a)) if args.store is None else a.ids
        streamed = a.nbytes > args.max_memory_mb * 2**20
        if not streamed:
            a = np.asarray(a)
        k = args.budget if args.budget is not None else budget_from(len(a), fraction=args.fraction)
        result = pursuit.solve(a, b, k, method=args.solver, nonneg=not args.signed, tol=args.tol, ridge=args.ridge,
                               iterations=args.iterations, score=args.score,
                               block_rows=args.block_rows if streamed else None,
                               mesh=None if streamed else run.mesh())
        path = run.write_npz("--out", indices=result.indices.astype(np.int64), id=ids[result.indices],
                             weights=result.weights.astype(np.float32),
                             residual_norm=np.float64(result.residual_norm), stop_reason=np.str_(result.stop_reason),
                             iterations=np.int64(result.iterations))
        print(json.dumps({"method": args.solver, "signed": bool(args.signed), "budget": k,
                          "count": len(result.indices), "stop_reason": result.stop_reason,
                          "residual_norm": result.residual_norm, "streamed": streamed, "out": str(path)}))
    return 0


def add_pursuit_parsers(subparsers) -> None:
    """Add the `features` and `pursuit` subcommands to `subparsers` (argparse's add_subparsers())."""
    p = flags.command(subparsers, "features", "GTP trajectory features A.npy and target b.npy from npz files",
                      _cmd_features)
    p.add_argument("--pool", required=True, help="candidate npz: x float [N, ...], y int [N]")
    p.add_argument("--target", help="target-domain npz (x, y); without it the target is the mean pool row")
    flags.model(p, ("mlp", "cnn"), "mlp")
    flags.num_classes(p)
    p.add_argument("--checkpoints", nargs="+", required=True,
                   help=".npz parameter files (np.savez(path, **jdps.gradients.param_filter.flat(params))) or "
                        "jdps.checkpoint.Checkpoints directories, in trajectory order")
    p.add_argument("--checkpoint-weights", help="c_t per checkpoint, comma-separated (default: 1 each)")
    p.add_argument("--d", type=flags.positive_int, default=256, help="projection dimension per checkpoint")
    flags.seed(p, "model template and projections")
    p.add_argument("--shared-projection", action="store_true", help="one projection for all checkpoints (LESS)")
    p.add_argument("--normalize", action="store_true", help="unit-norm rows per checkpoint (LESS)")
    p.add_argument("--grad-form", choices=("vmap", "factored"), default="vmap", help="per-example gradient form")
    p.add_argument("--param-filter", help="glob of the parameters to take gradients of (default: all)")
    flags.batch_size(p, 256)
    flags.out(p, "write A [N, T d] here (.npy; its provenance in A.npy.json, the pool's ids in A.ids.npy); with "
                 "--store: an export of the store", required=False)
    p.add_argument("--target-out", required=True, help="write b [T d] here (.npy; its provenance in b.npy.json)")
    flags.checkpoint_dir(p, "each checkpoint's block of A once computed")
    flags.store(p, "write A [N, T d] here instead of (or besides) --out")
    flags.quiet(p)
    flags.distributed(p)

    p = flags.command(subparsers, "pursuit", "select examples whose trajectories match a target (GTP)",
                      _cmd_pursuit)
    p.add_argument("--features", help="A.npy [N, Td]; may be larger than memory (or --store)")
    p.add_argument("--target", required=True, help="b.npy [Td]")
    flags.size(p, required=True, note=" (at most: the pursuit may stop sooner)")
    flags.choice(p, "--solver", flags.attr("jdps.gtp.pursuit", "METHODS"), "the pursuit solver", default="omp")
    p.add_argument("--signed", action="store_true", help="signed weights (omp, cosamp, gradmatch)")
    p.add_argument("--tol", type=flags.nonneg_float, default=0.0, help="stop once |residual| <= tol |b|")
    p.add_argument("--iterations", type=flags.positive_int, default=10, help="cosamp: the most rounds")
    p.add_argument("--ridge", type=flags.nonneg_float, help="gradmatch: the ridge (default: jdps.gtp.pursuit.GRADMATCH_RIDGE)")
    flags.choice(p, "--score", flags.attr("jdps.gtp.pursuit", "SCORES"), "topk: the ranking", default="correlation")
    p.add_argument("--max-memory-mb", type=flags.nonneg_float, default=1024, help="stream A from disk when it is larger")
    p.add_argument("--block-rows", type=flags.positive_int, help="rows per block when streaming (default: "
                                                  "jdps.gtp.pursuit.rows.STREAM_ROWS; a store's chunk)")
    flags.store(p, "read A [N, Td] and its ids from this store instead of --features")
    flags.out(p, "write indices, id (from A.ids.npy beside A.npy, else row numbers), weights, residual_norm, "
                 "stop_reason here (.npz)")
    flags.distributed(p)
