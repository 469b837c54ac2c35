"""`jdps features` and `jdps pursuit`: GTP's trajectory features and the pursuit, on files.

    jdps features --pool POOL.npz [--target TARGET.npz] --model mlp|cnn --checkpoints C1 [C2 ...]
                  --d D [--seed S] [--normalize] [--shared-projection] --out A.npy --target-out b.npy
    jdps pursuit --features A.npy --target b.npy --budget K [--method omp|cosamp|topk|gradmatch]
                 [--signed] --out SEL.npz

POOL.npz and TARGET.npz hold `x` float [N, ...] and `y` int [N] (`jdps.data.user_arrays.load_npz`).
A checkpoint is a `.npz` file of the model's parameters keyed by their '/'-joined paths, written by
`np.savez(path, **jdps.gradients.param_filter.flat(params))`, or a directory of `jdps.checkpoint.Checkpoints` whose
saved steps (each the params pytree) are taken in order. A.npy is [N, T d], row i for example i of
POOL.npz; b.npy [T d] is the mean target row (the mean pool row without --target).

`jdps pursuit` reads A.npy as a memmap and streams it in row blocks when it is larger than --max-memory-mb
(else loads it), and writes SEL.npz: `indices` int64 [count] (rows of A), `weights` float32 [count]
(non-negative unless --signed), `residual_norm` float64 [], `stop_reason` str [], `iterations` int64 [];
a one-line JSON summary goes to stdout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jdps.gtp import pursuit
from jdps.checkpoint import load_params
from jdps.errors import InputError

MLP_HIDDEN = "256,128"


def _csv(text: str, kind, flag: str) -> list:
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def _task(args, x_shape: tuple[int, ...], num_classes: int):
    from jdps.models.cnn import cnn_task
    from jdps.models.mlp import mlp_task

    if args.model == "mlp":
        hidden = tuple(_csv(args.hidden, int, "--hidden"))
        return mlp_task(args.seed, int(np.prod(x_shape)), hidden, num_classes)
    in_shape = (*x_shape, 1) if len(x_shape) == 2 else tuple(x_shape)
    if len(in_shape) != 3:
        raise InputError(f"--model cnn needs images shaped [N, H, W] or [N, H, W, C], got examples of shape "
                         f"{x_shape}; use --model mlp")
    return cnn_task(args.seed, in_shape, num_classes)


def _cmd_features(args) -> int:
    from jdps.gtp import trajectory
    from jdps.data.user_arrays import load_npz

    pool = load_npz(args.pool)
    target = load_npz(args.target) if args.target else None
    for flag, data in (("--pool", pool), ("--target", target)):
        if data is not None and data.y is None:
            raise InputError(f"{flag} has no labels y; the loss needs them: np.savez(path, x=..., y=...)")
    if target is not None and target.x.shape[1:] != pool.x.shape[1:]:
        raise InputError(f"--target examples have shape {target.x.shape[1:]} but --pool examples have "
                         f"{pool.x.shape[1:]}; both need inputs of one shape")
    labels = [pool.y] + ([target.y] if target is not None else [])
    num_classes = args.num_classes or 1 + max(int(y.max()) for y in labels)
    task, template = _task(args, pool.x.shape[1:], num_classes)
    checkpoints = load_params(args.checkpoints, template)
    weights = _csv(args.checkpoint_weights, float, "--checkpoint-weights") if args.checkpoint_weights else None
    options = {"d": args.d, "key": args.seed, "checkpoint_weights": weights, "shared_projection": args.shared_projection,
               "normalize": args.normalize, "method": args.method, "param_filter": args.param_filter,
               "batch_size": args.batch_size}
    arrays = lambda data: {"x": data.x, "y": data.y}
    traj = trajectory.trajectory_features(task, checkpoints, arrays(pool), out=args.out, **options)
    b = (trajectory.target_trajectory(task, checkpoints, arrays(target), **options) if target is not None
         else trajectory.mean_row(traj.features))
    np.save(args.target_out, b)
    print(json.dumps({"features": args.out, "target": args.target_out, "examples": len(pool),
                      "checkpoints": len(checkpoints), "columns": int(traj.features.shape[1]),
                      "target_kind": "target-domain" if target is not None else "in-domain"}))
    return 0


def _load_npy(path: str, flag: str):
    if not Path(path).is_file():
        raise InputError(f"no file {path} for {flag}; write it with np.save (e.g. by `jdps features`)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise InputError(f"{flag} {path} is not a readable .npy array ({err}); write it with np.save") from None


def _cmd_pursuit(args) -> int:
    if args.signed and args.method == "topk":
        raise InputError("--signed applies to omp, cosamp and gradmatch; top-k ranks rows and fits no weights")
    a = _load_npy(args.features, "--features")
    b = np.asarray(_load_npy(args.target, "--target"))
    streamed = a.nbytes > args.max_memory_mb * 2**20
    if not streamed:
        a = np.asarray(a)
    options = {"ridge": args.ridge} if args.method == "gradmatch" and args.ridge is not None else {}
    if args.method == "cosamp":
        options["iterations"] = args.iterations
    if args.method == "topk":
        options["score"] = args.score
    else:
        options.update(nonneg=not args.signed, tol=args.tol)
    result = pursuit.solve(a, b, args.budget, method=args.method, block_rows=args.block_rows if streamed else None,
                           **options)
    np.savez(args.out, indices=result.indices.astype(np.int64), weights=result.weights.astype(np.float32),
             residual_norm=np.float64(result.residual_norm), stop_reason=np.str_(result.stop_reason),
             iterations=np.int64(result.iterations))
    print(json.dumps({"method": args.method, "signed": bool(args.signed), "budget": args.budget,
                      "count": len(result.indices), "stop_reason": result.stop_reason,
                      "residual_norm": result.residual_norm, "streamed": streamed, "out": args.out}))
    return 0


def add_pursuit_parsers(subparsers) -> None:
    """Add the `features` and `pursuit` subcommands to `subparsers` (argparse's add_subparsers())."""
    p = subparsers.add_parser("features", help="GTP trajectory features A.npy and target b.npy from npz files")
    p.add_argument("--pool", required=True, help="candidate npz: x float [N, ...], y int [N]")
    p.add_argument("--target", help="target-domain npz (x, y); without it the target is the mean pool row")
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    p.add_argument("--hidden", default=MLP_HIDDEN, help="MLP hidden widths, comma-separated")
    p.add_argument("--num-classes", type=int, default=0, help="classes of the model (default: max label + 1)")
    p.add_argument("--checkpoints", nargs="+", required=True,
                   help=".npz parameter files (np.savez(path, **jdps.gradients.param_filter.flat(params))) or "
                        "jdps.checkpoint.Checkpoints directories, in trajectory order")
    p.add_argument("--checkpoint-weights", help="c_t per checkpoint, comma-separated (default 1)")
    p.add_argument("--d", type=int, default=256, help="projection dimension per checkpoint")
    p.add_argument("--seed", type=int, default=0, help="seed of the model template and the projections")
    p.add_argument("--shared-projection", action="store_true", help="one projection for all checkpoints (LESS)")
    p.add_argument("--normalize", action="store_true", help="unit-norm rows per checkpoint (LESS)")
    p.add_argument("--method", choices=("vmap", "factored"), default="vmap", help="per-example gradient form")
    p.add_argument("--param-filter", help="glob of the parameters to take gradients of (default: all)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", required=True, help="write A [N, T d] here (.npy)")
    p.add_argument("--target-out", required=True, help="write b [T d] here (.npy)")
    p.set_defaults(run=_cmd_features)

    p = subparsers.add_parser("pursuit", help="select examples whose trajectories match a target (GTP)")
    p.add_argument("--features", required=True, help="A.npy [N, Td]; may be larger than memory")
    p.add_argument("--target", required=True, help="b.npy [Td]")
    p.add_argument("--budget", type=int, required=True, help="K, the most examples to select")
    p.add_argument("--method", choices=pursuit.METHODS, default="omp")
    p.add_argument("--signed", action="store_true", help="signed weights (omp, cosamp, gradmatch)")
    p.add_argument("--tol", type=float, default=0.0, help="stop once |residual| <= tol |b|")
    p.add_argument("--iterations", type=int, default=10, help="cosamp: the most rounds")
    p.add_argument("--ridge", type=float, help=f"gradmatch: the ridge (default {pursuit.GRADMATCH_RIDGE})")
    p.add_argument("--score", choices=pursuit.SCORES, default="correlation", help="topk: the ranking")
    p.add_argument("--max-memory-mb", type=float, default=1024, help="stream A from disk when it is larger")
    p.add_argument("--block-rows", type=int, default=pursuit.STREAM_ROWS, help="rows per block when streaming")
    p.add_argument("--out", required=True, help="write indices, weights, residual_norm, stop_reason here (.npz)")
    p.set_defaults(run=_cmd_pursuit)
