"""`jdps evaluate`: how good a method's attribution is, by the metrics the field uses (docs/attribution.md).

    jdps evaluate --method influence|tracin|trak --train T.npz --query Q.npz [--metrics lds,noisy,loo] --out R.json

lds     the model is retrained on --subsets random --subset-fraction subsets of T (`jdps.metrics.train_many`,
        vmapped, resumable with --checkpoint-dir); LDS of the method's scores [Q, N] against the query
        margins of those models, with its standard error
noisy   --noise of T's labels flipped (seeded), the method fitted on the noisy set; AUROC of its self-influence
loo     softmax regression only (--hidden ''): full-batch training to the optimum (L2 --l2), --loo-removed
        points each left out and the model retrained from the optimum; Pearson of scores and effects

Methods without per-query scores (bads, gtp, quad, random and the BADS baselines) are refused before any
work: their selections carry one score per pool example, not one per (query, pool) pair.
"""

from __future__ import annotations

import json

from jdps.cli import flags

ATTRIBUTION = ("influence", "tracin", "trak")    # the methods of jdps.selectors with scores(state, query)
METRICS = ("lds", "noisy", "loo")


def _check(args) -> list[str]:
    """The metrics asked, checked with the method, before anything is read or imported."""
    from jdps.errors import InputError

    if args.method not in ATTRIBUTION:
        raise InputError(f"{args.method} has no per-query attribution: its selection scores each pool example once, "
                         f"not each (query, pool) pair, so LDS, leave-one-out and noisy-label AUROC do not apply; "
                         f"evaluate one of {', '.join(ATTRIBUTION)}")
    metrics = [m for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown or not metrics:
        raise InputError(f"--metrics takes a comma-separated list of {', '.join(METRICS)}; got {args.metrics!r}")
    if "loo" in metrics and flags.hidden(args):
        raise InputError("leave-one-out correlation is meaningful on convex models only: pass --hidden '' (softmax "
                         "regression), or drop loo from --metrics")
    if "loo" in metrics and args.loo_removed < 40:
        raise InputError(f"--loo-removed {args.loo_removed}: a leave-one-out correlation needs at least 40 removed "
                         "points (the correlation of a few is noise); pass --loo-removed 40 or more")
    if "loo" in metrics and args.method == "tracin":
        raise InputError("tracin's checkpoints come from the training trajectory, which leave-one-out's full-batch "
                         "optimum does not have; drop loo from --metrics or evaluate influence or trak")
    return metrics


class _Method:
    """The method's models and selector: make(method, task, models, **options)."""

    def __init__(self, args, task, template, num_classes):
        self.args, self.task, self.template = args, task, template

    def models(self, data, key_offset: int = 0):
        """The parameters the method needs, trained on `data`: one model (influence), its per-epoch checkpoints
        (tracin), --models independently trained models (trak)."""
        import numpy as np
        import optax

        from jdps.metrics import train_many, unstack
        from jdps.models.build import build_task
        from jdps.train import train

        a = self.args
        n = len(data["x"])
        opt = optax.adam(a.lr)
        if a.method == "trak" and a.models > 1 and not a.sgld_samples:
            inits = [build_task(a.model, data["x"].shape[1:], self.template[1], seed=a.seed + key_offset + m,
                                hidden=flags.hidden(a))[1] for m in range(a.models)]
            stacked = train_many(self.task, inits, data, np.tile(np.arange(n, dtype=np.int32), (a.models, 1)),
                                 key=a.seed + key_offset, **flags.length(a), batch_size=a.batch_size, optimizer=opt)
            return unstack(stacked)
        kept = []
        result = train(self.task, self.template[0], data, key=a.seed + key_offset, **flags.length(a),
                       batch_size=min(a.batch_size, n), optimizer=opt, on_epoch=lambda e, p: kept.append(p))
        return kept if a.method == "tracin" else result.params

    def selector(self, models):
        from jdps import selectors

        a = self.args
        if a.method == "influence":
            options = {"ihvp": a.ihvp, "damping": a.damping, "batch_size": a.batch_size}
        elif a.method == "tracin":
            options = {"batch_size": a.batch_size}
        else:
            options = {"d": a.proj_dim, "sgld_samples": a.sgld_samples}
        return selectors.make(a.method, self.task, models, **options)


def _cmd_evaluate(args) -> int:
    from jdps.cli.io import Run, load_sets

    metrics_asked = _check(args)
    flags.length(args)
    with Run(args, inputs={"--train": args.train, "--query": args.query}, outputs={"--out": (args.out, ".json")},
             checkpoint_dir=args.checkpoint_dir) as run:
        s = load_sets({"--train": args.train, "--query": args.query}, args.num_classes)
        train_set, query_set = s.sets["--train"], s.sets["--query"]
        from jdps.errors import InputError
        from jdps.validate import check_fraction

        check_fraction(args.noise, "--noise")
        if "loo" in metrics_asked and args.loo_removed > len(train_set):
            raise InputError(f"--loo-removed {args.loo_removed} is more than the {len(train_set)} training examples")
        import time

        import numpy as np
        import optax

        from jdps import metrics
        from jdps.models.build import build_task

        train = {"x": train_set.x, "y": train_set.y}
        query = {"x": query_set.x, "y": query_set.y}
        task, params = build_task(args.model, train_set.x.shape[1:], s.num_classes, seed=args.seed,
                                  hidden=flags.hidden(args))
        method = _Method(args, task, (params, s.num_classes), s.num_classes)
        report = {"command": "evaluate", "method": args.method, "train": len(train_set), "query": len(query_set)}
        start = time.perf_counter()
        if "lds" in metrics_asked:
            sel = method.selector(method.models(train))
            scores = sel.scores(sel.fit(train, query, key=args.seed), query)
            subsets = metrics.random_subsets(len(train_set), args.subsets, args.subset_fraction, seed=args.seed)
            inits = [build_task(args.model, train_set.x.shape[1:], s.num_classes, seed=args.seed + 1000 + m,
                                hidden=flags.hidden(args))[1] for m in range(args.subsets)]
            stacked = metrics.train_many(task, inits, train, subsets, key=args.seed + 1000, **flags.length(args),
                                         batch_size=args.batch_size, optimizer=optax.adam(args.lr),
                                         checkpoints=run.checkpoints("subsets", max_to_keep=1))
            r = metrics.lds(scores, subsets, metrics.margins(task, stacked, query))
            report["lds"] = {**r.as_dict(), "subsets": args.subsets, "subset_fraction": args.subset_fraction}
        if "noisy" in metrics_asked:
            rng = np.random.default_rng(args.seed + 2)
            noisy = rng.random(len(train_set)) < args.noise
            y = np.where(noisy, (train["y"] + rng.integers(1, s.num_classes, len(noisy))) % s.num_classes, train["y"])
            data = {"x": train["x"], "y": y.astype(np.int32)}
            if not noisy.any():
                raise InputError(f"--noise {args.noise} flipped no label of the {len(train_set)} examples; raise it")
            sel = method.selector(method.models(data, key_offset=2))
            state = sel.fit(data, query, key=args.seed)
            report["noisy"] = {"auroc": metrics.noisy_label_auroc(metrics.self_scores(sel, state, data), noisy),
                               "flipped": int(noisy.sum())}
        if "loo" in metrics_asked:
            n = len(train_set)
            opt = optax.chain(optax.add_decayed_weights(args.l2), optax.sgd(args.loo_lr, momentum=0.9, nesterov=True))
            from jdps.train import train as train_loop

            theta = train_loop(task, params, train, key=args.seed, epochs=args.loo_steps, batch_size=n,
                               optimizer=opt).params
            removed = np.random.default_rng(args.seed + 1).choice(n, args.loo_removed, replace=False)
            without = metrics.leave_one_out(task, theta, train, removed, key=args.seed, epochs=args.loo_steps,
                                            optimizer=opt)
            effects = metrics.margins(task, theta, query, stacked=False)[None] - metrics.margins(task, without, query)
            sel = method.selector(theta if args.method == "influence" else [theta])
            if args.method == "influence" and args.damping != args.l2:
                report["loo_note"] = (f"the influence damping {args.damping} differs from --l2 {args.l2}: the exact "
                                      "leave-one-out prediction needs damping = l2")
            scores = sel.scores(sel.fit(train, query, key=args.seed), query)
            report["loo"] = {**metrics.loo_correlation(scores, removed, effects).as_dict(), "removed": len(removed)}
        report["seconds"] = round(time.perf_counter() - start, 1)
        report["out"] = str(run.write_json("--out", report))
        print(json.dumps(report))
    return 0


def add_evaluate_parser(subparsers) -> None:
    """Add the `evaluate` subcommand to `subparsers` (argparse's add_subparsers())."""
    p = flags.command(subparsers, "evaluate", "measure a method's attribution: LDS, noisy-label AUROC, leave-one-out",
                      _cmd_evaluate, __doc__)
    p.add_argument("--method", required=True, help="a method of jdps.selectors.names(); only influence, tracin "
                                                    "and trak give per-query scores")
    p.add_argument("--train", required=True, help="training npz (x, y)")
    p.add_argument("--query", required=True, help="query npz (x, y), examples of the training file's shape")
    p.add_argument("--metrics", default="lds", help=f"comma-separated, of {', '.join(METRICS)}")
    flags.model(p, ("mlp", "cnn"), "mlp")
    flags.num_classes(p)
    flags.run_length(p, 10, "each model's training")
    flags.batch_size(p, 128)
    flags.lr(p, 1e-3)
    flags.choice(p, "--ihvp", flags.attr("jdps.influence.ihvp", "NAMES"), "influence: the inverse curvature",
                 default="ekfac")
    p.add_argument("--damping", type=flags.nonneg_float, default=1e-3, help="influence: lambda in (C + lambda I)^{-1}")
    p.add_argument("--models", type=flags.positive_int, default=1, help="trak: independently trained models")
    p.add_argument("--sgld-samples", type=flags.nonneg_int, default=0,
                   help="trak: theta samples of one SGLD chain from the trained model instead (0: off)")
    p.add_argument("--proj-dim", type=flags.positive_int, default=1024, help="trak: projected features per layer")
    p.add_argument("--subsets", type=flags.positive_int, default=100, help="lds: retrained models, one per subset")
    p.add_argument("--subset-fraction", type=flags.fraction, default=0.5, help="lds: each subset's share of --train")
    p.add_argument("--noise", type=flags.fraction, default=0.1, help="noisy: share of training labels flipped")
    p.add_argument("--loo-removed", type=flags.positive_int, default=40, help="loo: points left out (at least 40)")
    p.add_argument("--loo-steps", type=flags.positive_int, default=300, help="loo: full-batch Nesterov steps")
    p.add_argument("--loo-lr", type=flags.positive_float, default=0.05, help="loo: their learning rate")
    p.add_argument("--l2", type=flags.positive_float, default=1e-2, help="loo: L2 on the mean loss")
    flags.seed(p, "model inits, subsets, label noise, projections")
    flags.out(p, "write the metrics as JSON here")
    flags.checkpoint_dir(p, "lds: the retrained models after every epoch")
