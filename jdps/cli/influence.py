"""`jdps influence` and `jdps quad`: influence scores and Quad's selection, on files (docs/cli.md).

    jdps influence --train TRAIN --query QUERY [--params P] [--ihvp NAME] --out SCORES.npz
    jdps quad --pool POOL --reference REF [--embeddings E.npy] --budget K | --fraction F --out SEL.npz

The files are npz (a classifier, mlp by default) or text, one document per line cut into byte-token
windows (the causal transformer LM). P is an npz of the parameters keyed by their '/'-joined paths or a
`jdps.checkpoint.Checkpoints` directory (its latest step); without it the model is trained briefly on
TRAIN or POOL. The iHVP methods are `jdps.influence.ihvp.NAMES`, made by `jdps.influence.ihvp.by_name`.
"""

from __future__ import annotations

import json
from pathlib import Path

from jdps.cli import flags


def _run(args, first: str, second: str, checkpoint_dir=None):
    """The run (jdps.cli.io.Run) of --first and --second: --out (and --checkpoint-dir) checked and locked
    before any work."""
    from jdps.cli.io import Run

    files = {first: getattr(args, first[2:]), second: getattr(args, second[2:]), "--params": args.params,
             "--embeddings": getattr(args, "embeddings", None)}
    return Run(args, inputs=files, outputs={"--out": (args.out, ".npz")}, checkpoint_dir=checkpoint_dir)


def _load(args, first: str, second: str):
    """Sets: the files --first and --second loaded (npz or text) and checked against each other, and the
    flags that depend on their kind."""
    from jdps.cli.io import load_sets
    from jdps.errors import InputError

    s = load_sets({first: getattr(args, first[2:]), second: getattr(args, second[2:])}, args.num_classes,
                  window=args.window)
    model = args.model or ("transformer" if s.text else "mlp")
    if s.text != (model == "transformer"):
        raise InputError(f"--model {model} does not fit {'text' if s.text else 'npz'} files: text needs "
                         "--model transformer, npz arrays --model mlp or cnn")
    if s.text and args.num_classes is not None:
        raise InputError("--num-classes sets a classifier's classes; text files train the language model")
    if s.text and args.window < 2:
        raise InputError(f"--window {args.window} is too short for a language model: a window needs at least "
                         "2 tokens (one input, one target)")
    if s.text and args.d_model % args.heads:
        raise InputError(f"--d-model {args.d_model} must be a multiple of --heads {args.heads}")
    if args.params is not None and not Path(args.params).exists():
        raise InputError(f"no file or folder {args.params} for --params; pass an .npz of parameters or a "
                         "jdps.checkpoint.Checkpoints directory")
    return s


def _model(args, s, data, checkpoints=None, mesh=None):
    """(task, params): the transformer LM on text, else the classifier --model; its parameters read from
    --params, else trained briefly on `data` (resumable with `checkpoints`, a jdps.checkpoint.Checkpoints)."""
    from jdps.models.build import build_task

    model = args.model or ("transformer" if s.text else "mlp")
    lm = {"d_model": args.d_model, "n_heads": args.heads, "n_layers": args.layers} if s.text else {}
    task, params = build_task(model, data.x.shape[1:], s.num_classes, seed=args.seed, hidden=flags.hidden(args), **lm)
    if args.params:
        from jdps.checkpoint import load_params

        return task, load_params([args.params], params, latest=True)[0]
    import optax

    from jdps.train import train

    return task, train(task, params, _arrays(data, s.text), key=args.seed, **flags.length(args),
                       batch_size=min(args.batch_size, len(data)), optimizer=optax.adam(args.lr),
                       checkpoints=checkpoints, mesh=mesh,
                       progress=not args.quiet and "brief training").params


def _arrays(data, text: bool) -> dict:
    return {"x": data.x} if text else {"x": data.x, "y": data.y}


def _cmd_influence(args) -> int:
    flags.length(args)
    if args.method == "trak":
        if args.store is not None:
            from jdps.errors import InputError

            raise InputError("--store writes influence score matrices; trak's are written to --out")
        return _cmd_trak(args)
    with _run(args, "--train", "--query") as run:
        s = _load(args, "--train", "--query")
        train, query, text = s.sets["--train"], s.sets["--query"], s.text
        import jax
        import numpy as np

        from jdps import influence
        from jdps.influence.ihvp import by_name

        task, params = _model(args, s, train, mesh=run.mesh())
        fitted = influence.fit(task, params, _arrays(train, text),
                               ihvp=by_name(args.ihvp, args.damping, key=jax.random.key(args.seed)),
                               param_filter=args.param_filter, batch_size=args.batch_size, mesh=run.mesh(),
                               progress=not args.quiet)
        options = {"normalize": args.normalize, "batch_size": args.batch_size}
        mean = influence.query_scores(fitted, _arrays(query, text), _arrays(train, text), **options)
        if args.store is not None:
            _scores_to_store(args, run, fitted, _arrays(query, text), _arrays(train, text), train.ids, query.ids)
            matrix = {"store": np.str_(str(args.store))}
        else:
            matrix = {"scores": influence.scores(fitted, _arrays(query, text), _arrays(train, text),
                                                 **options).astype(np.float32)}
        path = run.write_npz("--out", **matrix, mean_scores=mean.astype(np.float32),
                             train_id=train.ids, query_id=query.ids)
        print(json.dumps({"command": "influence", "ihvp": args.ihvp, "damping": args.damping, "train": len(train),
                          "query": len(query), "parameters": len(fitted.paths), "normalize": args.normalize,
                          "out": str(path)}))
    return 0


def _scores_to_store(args, run, fitted, query, train, train_ids, query_ids):
    """The score matrix S^T [n_train, n_query] written into the store --store row chunk by row chunk (each
    process its own chunks, with the query vectors V computed once): never whole in memory."""
    import dataclasses

    import jax

    from jdps import distributed as dist
    from jdps import influence
    from jdps import store as fs

    v = dist.to_host(influence.query_vectors(fitted, query, batch_size=args.batch_size))
    if fitted.mesh is not None and jax.process_count() > 1:   # chunks differ per process: no collectives
        fitted = dataclasses.replace(fitted, params=jax.tree.map(dist.to_host, fitted.params),
                                     state=jax.tree.map(dist.to_host, fitted.state), mesh=fs.local_mesh())
    writer = fs.StoreWriter(args.store, (len(train_ids), len(query_ids)), ids=train_ids, column_ids=query_ids,
                            kind="scores", fingerprint=run.identity(exclude=("store",)), provenance=run.provenance(),
                            attributes={"ihvp": args.ihvp, "damping": args.damping, "normalize": args.normalize,
                                        "layout": "rows: training examples (ids), columns: queries (column_ids)"})
    rows = lambda a, b: influence.train_scores(fitted, v, {k: x[a:b] for k, x in train.items()},
                                               normalize=args.normalize, batch_size=args.batch_size)
    try:
        writer.fill(rows, not args.quiet and "scores")
    except BaseException:
        writer.close()
        raise
    return writer.finish()


def _cmd_trak(args) -> int:
    """jdps influence --method trak: TRAK scores (jdps.influence.trak) of an ensemble of --models models trained
    on --train (different inits), of --params alone, or of --sgld-samples theta samples of one SGLD chain."""
    from jdps.errors import InputError

    if args.sgld_samples and args.models > 1:
        raise InputError("--sgld-samples draws the ensemble from one chain: leave --models at 1")
    with _run(args, "--train", "--query") as run:
        s = _load(args, "--train", "--query")
        if s.text:
            raise InputError("trak projects the gradients of a classifier's correct-class margin: pass npz files "
                             "(x, y), not text")
        train, query = s.sets["--train"], s.sets["--query"]
        if args.params and args.models > 1:
            raise InputError("--params gives one model; drop --models, or train the ensemble (without --params)")
        import numpy as np
        import optax

        from jdps import selectors
        from jdps.metrics import train_many, unstack
        from jdps.models.build import build_task

        task, params = _model(args, s, train)
        models = [params]
        if args.models > 1:
            inits = [build_task(args.model or "mlp", train.x.shape[1:], s.num_classes, seed=args.seed + m,
                                hidden=flags.hidden(args))[1] for m in range(1, args.models)]
            full = np.tile(np.arange(len(train), dtype=np.int32), (args.models - 1, 1))
            models += unstack(train_many(task, inits, _arrays(train, False), full, key=args.seed + 1,
                                         **flags.length(args), batch_size=min(args.batch_size, len(train)),
                                         optimizer=optax.adam(args.lr)))
        sel = selectors.make("trak", task, models if not args.sgld_samples else params, d=args.proj_dim,
                             damping=args.damping, sgld_samples=args.sgld_samples, param_filter=args.param_filter,
                             batch_size=args.batch_size)
        state = sel.fit(_arrays(train, False), _arrays(query, False), key=args.seed)
        scores = sel.scores(state, _arrays(query, False))
        path = run.write_npz("--out", scores=scores.astype(np.float32), mean_scores=state.scores.astype(np.float32),
                             train_id=train.ids, query_id=query.ids)
        print(json.dumps({"command": "influence", "method": "trak", "models": args.sgld_samples or args.models,
                          "ensemble": "sgld" if args.sgld_samples else "trained", "d": args.proj_dim,
                          "damping": args.damping, "train": len(train), "query": len(query), "out": str(path)}))
    return 0


def _embeddings(args, pool, text: bool):
    """E.npy [N, F] if given; else None for npz (Quad flattens the inputs), or MiniLM on the text windows."""
    import numpy as np

    from jdps.cli.io import read_npy
    from jdps.errors import InputError, MissingDatasetError

    if args.embeddings:
        e = np.asarray(read_npy(args.embeddings, "--embeddings", ndim=2))
        if len(e) != len(pool):
            raise InputError(f"--embeddings {args.embeddings} has shape {e.shape} but the pool has {len(pool)} "
                             "examples; give one row per pool example (for text: per window, in order)")
        if not np.isfinite(e).all():
            raise InputError(f"--embeddings {args.embeddings} holds NaN or Inf; recompute or repair those rows")
        return e
    if not text:
        return None
    from jdps.data.text import decode
    from jdps.models.minilm import MiniLM

    try:
        encoder = MiniLM.load()
    except MissingDatasetError as err:
        raise MissingDatasetError(f"{err}; or pass --embeddings E.npy, one row per pool window") from None
    return encoder.encode([decode(row) for row in pool.x])


def _cmd_quad(args) -> int:
    from jdps.errors import InputError

    flags.length(args)
    with _run(args, "--pool", "--reference", args.checkpoint_dir) as run:
        s = _load(args, "--pool", "--reference")
        pool, reference, text = s.sets["--pool"], s.sets["--reference"], s.text
        from jdps.validate import budget_from

        budget_from(len(pool), budget=args.budget, fraction=args.fraction)      # before any work
        if args.clusters is not None and args.clusters > len(pool):
            raise InputError(f"--clusters {args.clusters} is more than the {len(pool)} pool examples; pass at most "
                             f"{len(pool)}")
        embeddings = _embeddings(args, pool, text) if args.embeddings else None   # checked before any work
        rounds = run.checkpoints("rounds")             # a --checkpoint-dir of another run is refused here
        training = run.checkpoints("train") if rounds is not None and not args.params else None
        done = max(rounds.steps(), default=0) if rounds is not None else 0
        import jax
        import numpy as np

        from jdps import quad
        from jdps.influence.ihvp import by_name

        task, params = _model(args, s, pool, training, mesh=run.mesh())
        if embeddings is None:
            embeddings = _embeddings(args, pool, text)
        key = jax.random.key(args.seed)
        state = quad.fit(task, params, _arrays(pool, text), _arrays(reference, text), key=jax.random.fold_in(key, 0),
                         embeddings=embeddings, n_clusters=args.clusters,
                         ihvp=by_name(args.ihvp, args.damping, key=jax.random.fold_in(key, 2)),
                         param_filter=args.param_filter, kmeans_restarts=args.kmeans_restarts,
                         batch_size=args.batch_size, mesh=run.mesh())
        sel = quad.select(state, key=jax.random.fold_in(key, 1), budget=args.budget, fraction=args.fraction,
                          score=args.score, alpha=args.alpha, tau=args.tau, clusters_per_round=args.clusters_per_round,
                          samples_per_pull=args.samples_per_pull, block_size=args.block_size, radius=args.radius,
                          metric=args.metric, acceptance=args.acceptance, share=args.share,
                          max_rounds=args.max_rounds, projection_dim=args.projection_dim, reward=args.reward,
                          arms=args.arms, checkpoints=rounds)
        info = sel.info
        path = run.write_npz("--out", indices=sel.indices, id=pool.ids[sel.indices],
                             scores=sel.scores.astype(np.float32), scored=np.isfinite(sel.scores),
                             cluster=state.clusters.labels.astype(np.int32),
                             fraction_scored=np.float64(info["fraction_scored"]),
                             clusters_covered=np.int64(info["clusters_covered"]),
                             clusters_pulled=np.int64(info["clusters_pulled"]), rounds=np.int64(info["rounds"]),
                             stop_reason=np.str_(info["stop_reason"]), settings=np.str_(json.dumps(info["settings"])),
                             log=np.str_(json.dumps(info["log"])))
        report = {"command": "quad", "pool": len(pool), "reference": len(reference), "budget": info["budget"],
                  "count": len(sel), "fraction_scored": round(info["fraction_scored"], 4),
                  "clusters": info["settings"]["n_clusters"], "clusters_covered": info["clusters_covered"],
                  "rounds": info["rounds"], "stop_reason": info["stop_reason"], "out": str(path)}
        if done:
            report["resumed_from_round"] = done
        print(json.dumps(report))
    return 0


def _model_flags(p, ihvp_help: str) -> None:
    flags.model(p, ("mlp", "cnn", "transformer"), None,
                "the model (default: mlp for npz files, transformer for text files)")
    flags.num_classes(p)
    p.add_argument("--window", type=flags.positive_int, default=64, help="text: tokens per window (the transformer's max_len)")
    p.add_argument("--d-model", type=flags.positive_int, default=64, help="transformer width")
    p.add_argument("--heads", type=flags.positive_int, default=4, help="transformer attention heads")
    p.add_argument("--layers", type=flags.positive_int, default=2, help="transformer blocks")
    p.add_argument("--params", help="the model's parameters: an .npz (np.savez(path, **jdps.gradients.param_filter.flat("
                                    "params))) or a jdps.checkpoint.Checkpoints directory (latest step)")
    flags.run_length(p, 2, "without --params, brief training")
    flags.lr(p, 1e-3, "without --params: Adam learning rate")
    p.add_argument("--param-filter", help="glob of the parameters to take gradients of (default: all; "
                                          "kfac/ekfac: the Dense layers)")
    flags.choice(p, "--ihvp", flags.attr("jdps.influence.ihvp", "NAMES"), ihvp_help, default="ekfac")
    p.add_argument("--damping", type=flags.nonneg_float, default=1e-3, help="lambda in (C + lambda I)^{-1}")
    flags.batch_size(p, 128)
    flags.seed(p, "model init, training order, Fisher sampling, Quad")


def add_influence_parsers(subparsers) -> None:
    """Add the `influence` and `quad` subcommands to `subparsers` (argparse's add_subparsers())."""
    p = flags.command(subparsers, "influence", "influence scores of training examples on query examples",
                      _cmd_influence)
    p.add_argument("--train", required=True, help="training npz (x, y) or text file (one document per line)")
    p.add_argument("--query", required=True, help="query npz or text file, of the same kind as --train")
    _model_flags(p, "the inverse curvature (identity: gradient dots)")
    p.add_argument("--normalize", action="store_true", help="cosines instead of influences")
    p.add_argument("--method", choices=("influence", "trak"), default="influence",
                   help="influence: the iHVP --ihvp; trak: TRAK over an ensemble (--damping then relative)")
    p.add_argument("--models", type=flags.positive_int, default=1, help="trak: independently trained models")
    p.add_argument("--sgld-samples", type=flags.nonneg_int, default=0,
                   help="trak: the ensemble from this many theta samples of one SGLD chain (0: off)")
    p.add_argument("--proj-dim", type=flags.positive_int, default=1024, help="trak: projected features per layer")
    flags.out(p, "write scores [n_query, n_train], mean_scores [n_train] here (.npz)")
    flags.store(p, "write the scores [n_train, n_query] (the transpose, row chunk by row chunk) here instead of "
                   "into --out, which then holds mean_scores and the ids")
    flags.quiet(p)
    flags.distributed(p)

    p = flags.command(subparsers, "quad", "select pool examples by influence and clusters (Quad)", _cmd_quad)
    p.add_argument("--pool", required=True, help="candidate npz (x, y) or text file (one document per line)")
    p.add_argument("--reference", required=True, help="reference npz or text file, of the same kind as --pool")
    p.add_argument("--embeddings", help="E.npy [N, F] to cluster (default: flattened x; text: MiniLM)")
    flags.size(p, required=True)
    _model_flags(p, "the inverse curvature, fitted on --reference")
    paper = "(default: the paper's, jdps.quad.PAPER)"
    flags.choice(p, "--score", flags.attr("jdps.quad.selector", "SCORES"), "the document score", default="cosine")
    p.add_argument("--clusters", type=flags.positive_int, help="K (default: round(sqrt N), at most 10,000)")
    p.add_argument("--kmeans-restarts", type=flags.positive_int, default=4, help="k-means restarts")
    p.add_argument("--alpha", type=flags.nonneg_float,
                   help="UCB exploration constant (default 1 in units of the scores' spread; with --reward absolute "
                        "the paper's 1e-4)")
    p.add_argument("--tau", type=flags.finite_float, help=f"reward threshold {paper}")
    p.add_argument("--clusters-per-round", type=flags.positive_int, help="default: round(K / 200), at least 1")
    p.add_argument("--samples-per-pull", type=flags.positive_int,
                   help="documents scored a pull (default: half of each block; the paper's 10 with --reward absolute)")
    p.add_argument("--block-size", type=flags.positive_int,
                   help="documents a pull takes (default: a share k / 2N of each cluster; the paper's: ceil(N / 4K))")
    p.add_argument("--radius", type=flags.nonneg_float, help=f"neighbour radius, 0: no sharing {paper}")
    p.add_argument("--metric", choices=("cosine", "l2"), default="cosine", help="distance between centroids")
    flags.choice(p, "--acceptance", flags.attr("jdps.quad.selector", "ACCEPTANCE"),
                 "what a pull accepts (default: hybrid; with --reward absolute the paper's block)")
    flags.choice(p, "--reward", flags.attr("jdps.quad.selector", "REWARDS"),
                 "the bandit's reward: standardised by the running spread of the scores, or the paper's absolute "
                 "one (with the paper's scaled settings)", default="standardised")
    flags.choice(p, "--arms", flags.attr("jdps.quad.selector", "ARMS"), "clusters pulled by UCB or at random",
                 default="ucb")
    p.add_argument("--share", type=flags.fraction, default=0.5, help="top_share: the part of a pull's scored documents")
    p.add_argument("--max-rounds", type=flags.positive_int, help="round limit (default: at least 200, scaled to the budget)")
    p.add_argument("--projection-dim", type=flags.positive_int, default=8192, help="--score projected: the dimension")
    flags.out(p, "write indices, scores and diagnostics here (.npz)")
    flags.checkpoint_dir(p, "the bandit's state after every round, and the brief training's after every epoch")
    flags.quiet(p)
    flags.distributed(p)
