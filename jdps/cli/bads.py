"""`jdps bads` and `jdps baseline` on a user's own npz arrays (docs/cli.md).

    jdps bads --train T.npz --meta M.npz [--test TEST.npz] [--preset NAME] --out W.npz    jdps.bads.fit
    jdps baseline --method NAME (the same flags)                  jdps.baselines.run_baseline

W.npz: `weights` float32 [N] in the order of T.npz, `id` [N] and, with --test, `test_accuracy` [].
"""

from __future__ import annotations

import json
import time

from jdps.cli import flags


def _presets() -> tuple[str, ...]:
    """jdps.bads.PRESETS's names and 'default', read from jdps/bads/config.py's source (--help imports no jax)."""
    return (*sorted(flags.literal_names("jdps.bads.config", "PRESETS")), "default")


# the baselines of jdps.baselines.NAMES the command runs (oracle needs the clean labels); a test checks the list
BASELINES = ("uniform", "meta_only", "dup_meta", "random", "cds", "l2rw", "mwn")


def _baselines() -> tuple[str, ...]:
    return BASELINES


def _files(args) -> dict:
    return {"--train": args.train, "--meta": args.meta, "--test": args.test}


def _run(args):
    """The run's Run (jdps.cli.io): --out and --checkpoint-dir checked and locked before any work."""
    from jdps.cli.io import Run

    return Run(args, inputs=_files(args), outputs={"--out": (args.out, ".npz")}, checkpoint_dir=args.checkpoint_dir)


def _prepare(args):
    """(train, meta, test, task, params): the files loaded and checked, then the model built."""
    from jdps.cli.io import load_sets

    s = load_sets(_files(args), args.num_classes, same_classes=("--meta",))
    train = s.sets["--train"]
    from jdps.models.build import build_task

    task, params = build_task(args.model, train.x.shape[1:], s.num_classes, seed=args.seed, hidden=flags.hidden(args))
    return train, s.sets["--meta"], s.sets.get("--test"), task, params


def _resumed(run, checkpoints, epochs: int, quiet: bool) -> int:
    """The epochs a resumed run finds done in --checkpoint-dir (0 for a new run), said unless quiet."""
    done = max(checkpoints.steps(), default=0) if checkpoints is not None else 0
    if done and not quiet:
        print(f"resuming from epoch {done} of {epochs} ({run.checkpoint_dir})", flush=True)
    return done


def _finish(run, train, weights, report: dict) -> int:
    import numpy as np

    arrays = {"weights": np.asarray(weights, np.float32), "id": train.ids}
    if "test_accuracy" in report:
        arrays["test_accuracy"] = np.float32(report["test_accuracy"])
    print(json.dumps({**report, "out": str(run.write_npz("--out", **arrays))}))
    return 0


def _cmd_bads(args) -> int:
    run_length = flags.length(args)
    with _run(args) as run:
        train, meta, test, task, params = _prepare(args)
        import numpy as np

        from jdps import bads, loop

        plan = loop.schedule(len(train), min(args.batch_size, len(train)), **run_length, remainder="pad")
        per_epoch, total = plan.steps_per_epoch, plan.steps        # ceil(N / b) steps an epoch, the last padded
        changes = {k: getattr(args, k) for k in ("lr", "weight_lr") if getattr(args, k) is not None}
        config = bads.preset(None if args.preset == "default" else args.preset, **changes,
                             burn_in=min(args.burn_in * per_epoch, max(total - per_epoch, 0)))
        checkpoints = run.checkpoints()
        done = _resumed(run, checkpoints, plan.epochs, args.quiet)
        start = time.perf_counter()

        def progress(epoch: int, epochs: int, step: int, info) -> None:   # a line an epoch: rate and ETA
            if not args.quiet:
                spent = time.perf_counter() - start
                rate = spent / max(epoch - done, 1)
                print(f"epoch {epoch}/{epochs}  step {step}  loss {float(np.mean(info.loss)):.4f}  "
                      f"meta loss {float(np.mean(info.meta_loss)):.4f}  mean weight "
                      f"{float(np.mean(info.batch_weight)):.4f}  ({spent:.1f} s, {rate:.2f} s/epoch, "
                      f"~{rate * (epochs - epoch):.0f} s left)", flush=True)

        state = bads.fit(task, params, train, meta, key=args.seed, **run_length, batch_size=args.batch_size,
                         meta_batch_size=args.meta_batch_size, config=config, progress=progress,
                         checkpoints=checkpoints, mesh=run.mesh())
        weights = bads.posterior_mean_weights(state)
        report = {"method": "bads", "preset": args.preset, "examples": len(train), "meta_examples": len(meta),
                  "epochs": plan.epochs, "steps": total, "mean_weight": round(float(weights.mean()), 4)}
        if done:
            report["resumed_from_epoch"] = done
        if test is not None:
            report["test_accuracy"] = float((bads.predict(task, state, test.x).argmax(1) == test.y).mean())
        return _finish(run, train, weights, report)


def _cmd_baseline(args) -> int:
    from jdps.errors import InputError

    if args.method == "cds" and args.checkpoint_dir is not None:
        raise InputError("--method cds does not resume (its base, tuned and final trainings run from scratch); "
                         "run it without --checkpoint-dir")
    takes = ("budget", "fraction") if args.method == "random" else ()
    if "budget" in takes and (args.budget is None) == (args.fraction is None):
        raise InputError(f"--method {args.method} trains on a random subset of the training set: give its size "
                         "with --budget K or --fraction F (e.g. the number of examples BADS keeps)")
    if "budget" not in takes and (args.budget, args.fraction) != (None, None):
        raise InputError(f"--budget and --fraction size the subset of --method random; {args.method} takes neither")
    run_length = flags.length(args)
    with _run(args) as run:
        train, meta, test, task, params = _prepare(args)
        from jdps import loop

        per_epoch = loop.steps_per_epoch(len(train), min(args.batch_size, len(train)), "pad")
        epochs = run_length["epochs"]
        if epochs is None:  # the baselines take the step budget as epochs * ceil(N / batch size)
            epochs, rest = divmod(run_length["steps"], per_epoch)
            if rest or not epochs:
                raise InputError(f"jdps baseline runs whole epochs of {per_epoch} steps (ceil(N / batch size)); "
                                 f"give --steps as a multiple of {per_epoch}, or --epochs")
        if args.budget is not None and args.budget > len(train):
            raise InputError(f"--budget {args.budget} is larger than the {len(train)} training examples; pass "
                             f"--budget {len(train)} or less")
        import numpy as np
        import optax

        from jdps.baselines import options as baseline_options
        from jdps.baselines import run_baseline
        from jdps.train import evaluate

        accepted = baseline_options(args.method)
        options = {k: v for k, v in (("budget", args.budget), ("fraction", args.fraction),
                                     ("meta_batch_size", args.meta_batch_size)) if k in accepted}
        checkpoints = run.checkpoints()
        done = _resumed(run, checkpoints, epochs, args.quiet)
        from jdps.progress import bar

        # a bar over the final training's passes (meta_only passes over the meta set: as many steps, more passes)
        passes = None if args.method == "cds" else epochs - done
        if args.method == "meta_only":
            passes = -(-(epochs - done) * per_epoch // loop.steps_per_epoch(len(meta), min(args.batch_size, len(meta)),
                                                                            "pad"))
        shown = bar(not args.quiet and f"{args.method}", total=passes, unit="epoch")
        result = run_baseline(args.method, task, params, train, meta, key=args.seed, epochs=epochs,
                              batch_size=args.batch_size, optimizer=optax.adam(args.lr), checkpoints=checkpoints,
                              on_epoch=lambda epoch, p: shown.update(1), **options)
        shown.close()
        if not args.quiet:
            history = result.history
            for i, loss in enumerate(history["loss"]):
                meta_loss = f"  meta loss {float(history['meta_loss'][i]):.4f}" if "meta_loss" in history else ""
                print(f"epoch {done + i + 1}/{done + len(history['loss'])}  loss {float(np.mean(loss)):.4f}"
                      f"{meta_loss}")
        report = {"method": args.method, "examples": len(train), "meta_examples": len(meta), "epochs": epochs,
                  "steps": int(result.info["steps"])}
        if done:
            report["resumed_from_epoch"] = done
        if test is not None:
            report["test_accuracy"] = evaluate(task, result.params, test)["accuracy"]
        return _finish(run, train, result.weights, report)


def _common(p, lr: float | None, lr_help: str) -> None:
    p.add_argument("--train", required=True, help="training npz: x float [N, ...], y int [N], optional id [N]")
    p.add_argument("--meta", required=True, help="curated meta npz (the same classes): x, y")
    p.add_argument("--test", help="test npz: x, y; adds test_accuracy to the output")
    flags.model(p, ("mlp", "cnn"), "mlp")
    flags.num_classes(p)
    flags.run_length(p, 20)
    flags.seed(p)
    flags.batch_size(p, 128)
    flags.lr(p, lr, lr_help)
    p.add_argument("--meta-batch-size", type=flags.positive_int, default=100, help="meta examples a step (bads, l2rw, mwn)")
    flags.quiet(p)
    flags.out(p, "write weights [N], id [N] (and test_accuracy) to this npz")
    flags.checkpoint_dir(p, "the sampler or training state after every epoch; --method cds does not resume")
    flags.distributed(p)


def add_bads_parsers(subparsers) -> None:
    """Add the `bads` and `baseline` subcommands to `subparsers` (argparse's add_subparsers())."""
    p = flags.command(subparsers, "bads", "BADS weights for your npz training set, from a curated meta set",
                      _cmd_bads)
    flags.choice(p, "--preset", flags.Lazy(_presets), "jdps.bads.PRESETS entry ('default': BADSConfig())",
                 default="default")
    _common(p, None, "theta's step size (pSGLD's RMSprop step for the default; default: the preset's)")
    p.add_argument("--weight-lr", type=flags.positive_float, help="step of one visit to a weight (default: the preset's)")
    p.add_argument("--burn-in", type=flags.nonneg_int, default=0, help="epochs before the weights' posterior means start")

    p = flags.command(subparsers, "baseline", "a BADS baseline on your npz arrays (same flags as bads)",
                      _cmd_baseline)
    flags.choice(p, "--method", flags.Lazy(_baselines), "the baseline (a selector of jdps.selectors)",
                 required=True)
    _common(p, 1e-3, "Adam learning rate")
    flags.size(p, required=False, note=" (--method random)")
