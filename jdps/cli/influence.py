"""`jdps influence` and `jdps quad`: influence scores and Quad's selection, on files.

    jdps influence --train TRAIN --query QUERY [--model mlp|cnn|transformer] [--params P]
                   [--ihvp exact|cg|lissa|kfac|ekfac|identity] [--damping D] [--normalize] --out SCORES.npz
    jdps quad --pool POOL --reference REF [--embeddings E.npy] --budget K | --fraction F [--params P]
              [Quad's options] --out SEL.npz

TRAIN, QUERY, POOL and REF are npz files (`x` float [N, ...], `y` int [N], optional `id` [N], as
`jdps.data.user_arrays.load_npz` reads them; the model is a classifier, mlp by default) or text files, one
document per line, cut into byte-token windows of --window tokens (`jdps.data.text.windows`; the model is
the small causal transformer and the loss the next-token loss). P is a `.npz` of the parameters keyed by
their '/'-joined paths (`np.savez(path, **jdps.gradients.param_filter.flat(params))`) or a `jdps.checkpoint.Checkpoints`
directory (its latest step); without it the model is trained briefly (--epochs) on TRAIN or POOL.

`jdps influence` fits the curvature on TRAIN and writes `scores` float32 [n_query, n_train] (S_ij: the
influence of training example j on query example i, `jdps.influence.scores`), `mean_scores` float32 [n_train]
(against the query set's mean gradient, `jdps.influence.query_scores`), `train_id` and `query_id`.

`jdps quad` runs `jdps.quad` (curvature on REF; embeddings: E.npy [N, F], else the flattened inputs of an
npz pool, or the MiniLM embeddings of each text window) and writes `indices` int64 [k] (rows of POOL, in
the order accepted), `id` [k] (their ids), `scores` float32 [N] (NaN where not scored), `scored` bool [N],
`cluster` int32 [N], and the diagnostics `fraction_scored`, `clusters_covered`, `clusters_pulled`,
`rounds`, `stop_reason`, `settings` and `log` (JSON text). Each command prints a one-line JSON summary.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from jdps.errors import InputError, MissingDatasetError
from jdps.validate import budget_from

IHVPS = ("exact", "cg", "lissa", "kfac", "ekfac", "identity")


def _csv_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{flag} takes comma-separated integers, got {text!r}") from None


def _is_text(path: str) -> bool:
    return not str(path).endswith(".npz")


def _read_text(path: str, flag: str, window: int):
    """One document per non-empty line -> byte-token windows (a Dataset with x int32 [N, window])."""
    from jdps.data.dataset import Document
    from jdps.data.text import windows

    p = Path(path)
    if not p.is_file():
        raise InputError(f"no file {p} for {flag}; pass an npz file (x, y) or a text file, one document per line")
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    docs = [Document(line, p.stem, f"{p.stem}:{i + 1}") for i, line in enumerate(lines) if line.strip()]
    if not docs:
        raise InputError(f"{flag} {p} holds no text; write one document per line")
    return windows(docs, window)


def _load(args, pairs: dict[str, str]) -> tuple[dict, bool]:
    """{flag: Dataset} for the given files, all npz or all text, checked against each other."""
    from jdps.data.user_arrays import load_npz

    kinds = {_is_text(path) for path in pairs.values()}
    if len(kinds) > 1:
        raise InputError(f"{' and '.join(pairs)} must all be npz files or all text files; got {list(pairs.values())}")
    text = kinds.pop()
    sets = {flag: _read_text(path, flag, args.window) if text else load_npz(path) for flag, path in pairs.items()}
    if text:
        return sets, True
    first = next(iter(sets))
    for flag, d in sets.items():
        if d.y is None:
            raise InputError(f"{flag} {pairs[flag]} has no labels y; the classifier's loss needs them: "
                             "np.savez(path, x=..., y=...)")
        if d.x.shape[1:] != sets[first].x.shape[1:]:
            raise InputError(f"{flag} examples have shape {d.x.shape[1:]} but {first} examples have "
                             f"{sets[first].x.shape[1:]}; every file needs inputs of one shape")
    return sets, False


def _arrays(data, text: bool) -> dict:
    return {"x": data.x} if text else {"x": data.x, "y": data.y}


def _task(args, sets: dict, text: bool):
    """(task, initial params) for the data: the transformer LM on text, else the classifier --model."""
    model = args.model or ("transformer" if text else "mlp")
    if text != (model == "transformer"):
        raise InputError(f"--model {model} does not fit {'text' if text else 'npz'} files: text needs "
                         "--model transformer, npz arrays --model mlp or cnn")
    if text:
        from jdps.data.text import VOCAB_SIZE
        from jdps.models.transformer import transformer_lm_task

        return transformer_lm_task(args.seed, VOCAB_SIZE, d_model=args.d_model, n_heads=args.heads,
                                   n_layers=args.layers, max_len=args.window)
    from jdps.models.cnn import cnn_task
    from jdps.models.mlp import mlp_task

    shape = next(iter(sets.values())).x.shape[1:]
    num_classes = args.num_classes or 1 + max(int(d.y.max()) for d in sets.values())
    if model == "mlp":
        return mlp_task(args.seed, int(np.prod(shape)), _csv_ints(args.hidden, "--hidden"), num_classes)
    in_shape = (*shape, 1) if len(shape) == 2 else tuple(shape)
    if len(in_shape) != 3:
        raise InputError(f"--model cnn needs images shaped [N, H, W] or [N, H, W, C], got examples of shape "
                         f"{shape}; use --model mlp")
    return cnn_task(args.seed, in_shape, num_classes)


def _params(args, task, template, data: dict):
    """The parameters of --params (an npz or the latest step of a Checkpoints directory), else `template`
    trained for --epochs on `data`."""
    if args.params:
        from jdps.checkpoint import load_params

        return load_params([args.params], template, latest=True)[0]
    import optax

    from jdps.train import train

    if args.epochs < 1:
        raise InputError(f"--epochs must be at least 1 without --params, got {args.epochs}")
    n = len(data["x"])
    return train(task, template, data, key=args.seed, epochs=args.epochs, batch_size=min(args.batch_size, n),
                 optimizer=optax.adam(args.lr)).params


def _ihvp(args, key):
    from jdps.influence import ihvp as ih
    if args.ihvp == "identity":
        return ih.identity()
    if args.ihvp in ("exact", "cg"):
        return getattr(ih, args.ihvp)(args.damping)
    if args.ihvp == "lissa":
        return ih.lissa(args.damping, key)
    return getattr(ih, args.ihvp)(args.damping, key=key)


def _ids(data) -> np.ndarray:
    return data.ids if data.ids is not None else np.arange(len(data))


def _cmd_influence(args) -> int:
    from jdps import influence
    sets, text = _load(args, {"--train": args.train, "--query": args.query})
    train, query = sets["--train"], sets["--query"]
    task, template = _task(args, sets, text)
    params = _params(args, task, template, _arrays(train, text))
    fitted = influence.fit(task, params, _arrays(train, text), ihvp=_ihvp(args, jax.random.key(args.seed)),
                           param_filter=args.param_filter, batch_size=args.batch_size)
    options = {"normalize": args.normalize, "batch_size": args.batch_size}
    scores = influence.scores(fitted, _arrays(query, text), _arrays(train, text), **options)
    mean = influence.query_scores(fitted, _arrays(query, text), _arrays(train, text), **options)
    np.savez(args.out, scores=scores.astype(np.float32), mean_scores=mean.astype(np.float32),
             train_id=_ids(train), query_id=_ids(query))
    print(json.dumps({"command": "influence", "ihvp": args.ihvp, "damping": args.damping, "train": len(train),
                      "query": len(query), "parameters": len(fitted.paths), "normalize": args.normalize,
                      "out": args.out}))
    return 0


def _embeddings(args, pool, text: bool):
    """E.npy [N, F] if given; else None for npz (Quad flattens the inputs), or MiniLM on the text windows."""
    if args.embeddings:
        path = Path(args.embeddings)
        if not path.is_file():
            raise InputError(f"no file {path} for --embeddings; write the [N, F] matrix with np.save")
        e = np.load(path, allow_pickle=False)
        if e.ndim != 2 or len(e) != len(pool):
            raise InputError(f"--embeddings {path} has shape {e.shape} but the pool has {len(pool)} examples; "
                             "give one row per pool example (for text: per window, in order)")
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
    from jdps import quad
    sets, text = _load(args, {"--pool": args.pool, "--reference": args.reference})
    pool, reference = sets["--pool"], sets["--reference"]
    budget_from(len(pool), budget=args.budget, fraction=args.fraction)      # before any work
    task, template = _task(args, sets, text)
    embeddings = _embeddings(args, pool, text)
    params = _params(args, task, template, _arrays(pool, text))
    key = jax.random.key(args.seed)
    k_fit, k_select = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    state = quad.fit(task, params, _arrays(pool, text), _arrays(reference, text), key=k_fit, embeddings=embeddings,
                     n_clusters=args.clusters, ihvp=_ihvp(args, jax.random.fold_in(key, 2)),
                     param_filter=args.param_filter, kmeans_restarts=args.kmeans_restarts,
                     batch_size=args.batch_size)
    sel = quad.select(state, key=k_select, budget=args.budget, fraction=args.fraction, score=args.score,
                      alpha=args.alpha, tau=args.tau, clusters_per_round=args.clusters_per_round,
                      samples_per_pull=args.samples_per_pull, block_size=args.block_size, radius=args.radius,
                      metric=args.metric, acceptance=args.acceptance, share=args.share,
                      max_rounds=args.max_rounds, projection_dim=args.projection_dim)
    info = sel.info
    np.savez(args.out, indices=sel.indices, id=_ids(pool)[sel.indices], scores=sel.scores.astype(np.float32),
             scored=np.isfinite(sel.scores), cluster=state.clusters.labels.astype(np.int32),
             fraction_scored=np.float64(info["fraction_scored"]), clusters_covered=np.int64(info["clusters_covered"]),
             clusters_pulled=np.int64(info["clusters_pulled"]), rounds=np.int64(info["rounds"]),
             stop_reason=np.str_(info["stop_reason"]), settings=np.str_(json.dumps(info["settings"])),
             log=np.str_(json.dumps(info["log"])))
    print(json.dumps({"command": "quad", "pool": len(pool), "reference": len(reference), "budget": info["budget"],
                      "count": len(sel), "fraction_scored": round(info["fraction_scored"], 4),
                      "clusters": info["settings"]["n_clusters"], "clusters_covered": info["clusters_covered"],
                      "rounds": info["rounds"], "stop_reason": info["stop_reason"], "out": args.out}))
    return 0


def _model_flags(p) -> None:
    p.add_argument("--model", choices=("mlp", "cnn", "transformer"),
                   help="default: mlp for npz files, transformer for text files")
    p.add_argument("--hidden", default="256,128", help="MLP hidden widths, comma-separated ('' for none)")
    p.add_argument("--num-classes", type=int, default=0, help="classes of the classifier (default: max label + 1)")
    p.add_argument("--window", type=int, default=64, help="text: tokens per window (the transformer's max_len)")
    p.add_argument("--d-model", type=int, default=64, help="transformer width")
    p.add_argument("--heads", type=int, default=4, help="transformer attention heads")
    p.add_argument("--layers", type=int, default=2, help="transformer blocks")
    p.add_argument("--params", help="the model's parameters: an .npz (np.savez(path, **jdps.gradients.param_filter.flat("
                                    "params))) or a jdps.checkpoint.Checkpoints directory (latest step)")
    p.add_argument("--epochs", type=int, default=2, help="without --params: epochs of brief training")
    p.add_argument("--lr", type=float, default=1e-3, help="without --params: Adam learning rate")
    p.add_argument("--param-filter", help="glob of the parameters to take gradients of (default: all; "
                                          "kfac/ekfac: the Dense layers)")
    p.add_argument("--damping", type=float, default=1e-3, help="lambda in (C + lambda I)^{-1}")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0, help="model init, training order, Fisher sampling, Quad")


def add_influence_parsers(subparsers) -> None:
    """Add the `influence` and `quad` subcommands to `subparsers` (argparse's add_subparsers())."""
    from jdps import quad
    p = subparsers.add_parser("influence", help="influence scores of training examples on query examples")
    p.add_argument("--train", required=True, help="training npz (x, y) or text file (one document per line)")
    p.add_argument("--query", required=True, help="query npz or text file, of the same kind as --train")
    _model_flags(p)
    p.add_argument("--ihvp", choices=IHVPS, default="ekfac", help="the inverse curvature (identity: gradient dots)")
    p.add_argument("--normalize", action="store_true", help="cosines instead of influences")
    p.add_argument("--out", required=True, help="write scores [n_query, n_train], mean_scores [n_train] here (.npz)")
    p.set_defaults(run=_cmd_influence)

    p = subparsers.add_parser("quad", help="select pool examples by influence and clusters (Quad)")
    p.add_argument("--pool", required=True, help="candidate npz (x, y) or text file (one document per line)")
    p.add_argument("--reference", required=True, help="reference npz or text file, of the same kind as --pool")
    p.add_argument("--embeddings", help="E.npy [N, F] to cluster (default: flattened x; text: MiniLM)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--budget", type=int, help="k, the number of examples to select")
    size.add_argument("--fraction", type=float, help="select ceil(fraction N) examples")
    _model_flags(p)
    p.add_argument("--ihvp", choices=IHVPS, default="ekfac", help="the inverse curvature, fitted on --reference")
    p.add_argument("--score", choices=quad.SCORES, default="cosine")
    p.add_argument("--clusters", type=int, help="K (default: round(sqrt N), at most 10,000)")
    p.add_argument("--kmeans-restarts", type=int, default=4)
    p.add_argument("--alpha", type=float, help=f"UCB exploration constant (default {quad.PAPER['alpha']})")
    p.add_argument("--tau", type=float, help=f"reward threshold (default {quad.PAPER['tau']})")
    p.add_argument("--clusters-per-round", type=int, help="default: round(K / 200), at least 1")
    p.add_argument("--samples-per-pull", type=int, help=f"default {quad.PAPER['samples_per_pull']}")
    p.add_argument("--block-size", type=int, help="documents a positive pull accepts (default: ceil(N / 4K))")
    p.add_argument("--radius", type=float, help=f"neighbour radius (default {quad.PAPER['radius']})")
    p.add_argument("--metric", choices=("cosine", "l2"), default="cosine", help="distance between centroids")
    p.add_argument("--acceptance", choices=quad.ACCEPTANCE, default="block")
    p.add_argument("--share", type=float, default=0.5, help="top_share: the part of a pull's scored documents")
    p.add_argument("--max-rounds", type=int, help="round limit (default: at least 200, scaled to the budget)")
    p.add_argument("--projection-dim", type=int, default=8192, help="--score projected: the dimension")
    p.add_argument("--out", required=True, help="write indices, scores and diagnostics here (.npz)")
    p.set_defaults(run=_cmd_quad)
