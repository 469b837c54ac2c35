"""Screening of Quad's settings on a pool draw that is not reported (seed 10 by default), for `quad_lm`.

Every variant selects from the same pool with the same fitted state (proxy, MiniLM embeddings, EK-FAC
curvature, v, k-means) and the same influence scores, trains the same fresh LM as `experiments.quad_lm`
and is measured on that seed's own held-out validation windows (the reported seeds 0-2 are not touched).
The expensive part of a seed is cached in `--cache` (a pickle), so a re-run only selects and trains.

    python -m experiments.quad_screen --variants quad paper random influence --fractions 0.1 0.25

Variants: the names in VARIANTS (each a dict of `jdps.quad.select` options or a baseline); writes
`<out>.md` and `<out>.json`, appending to the records already there (one record per seed, variant, fraction).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
from pathlib import Path

import jax
import numpy as np

from experiments import quad_lm
from experiments.common import (
    RESULTS,
    adam,
    fit_selector,
    lm_task,
    markdown_table,
    timed,
    train_subset,
    warmup_checkpoints,
)
from jdps.data.text import decode
from jdps.models.minilm import MiniLM
from jdps.outputs import write_text

OUT = RESULTS / "quad_screen"


def prepare(seed: int, setup, cache: Path) -> dict:
    """The seed's data, proxy, embeddings, Quad's fitted state and influence scores (cached)."""
    path = cache / f"quad_screen_seed{seed}.pkl"
    if path.exists():
        with open(path, "rb") as f:
            return pickle.load(f)
    data = quad_lm.make_data(setup, seed)
    pool, ref = {"x": data["x"]}, {"x": data["reference"]}
    task, params = lm_task(setup, seed)
    checkpoints = warmup_checkpoints(task, params, pool, epochs=setup.warmup_epochs, seed=seed,
                                     batch_size=quad_lm.WARMUP_BATCH_SIZE, optimizer=adam(setup.lr))
    embeddings = MiniLM.load().encode([decode(row) for row in pool["x"]])
    key = jax.random.key(seed)
    k_fit = jax.random.fold_in(key, 0)
    quad = fit_selector("quad", task, checkpoints[-1], pool, ref, key=k_fit, embeddings=embeddings)
    infl = fit_selector("influence", task, checkpoints[-1], pool, ref, key=jax.random.split(k_fit)[1],
                        fit_options={"curvature_on": "reference", "normalize": True})
    out = {"data": data, "proxy": jax.device_get(checkpoints[-1]), "embeddings": np.asarray(embeddings),
           "quad_tree": jax.device_get(quad.selector.state_tree(quad.state)),
           "influence": np.asarray(infl.state.scores)}
    cache.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(out, f)
    return out


def cluster_facts(seed: int, path: Path) -> str:
    """The scales behind Quad's settings on a screened seed: cluster sizes, neighbours within the paper's
    radius, the spread of the influence cosines within and between clusters, the planted copies' clusters."""
    from jdps.quad import bandit
    with open(path, "rb") as f:
        prep = pickle.load(f)
    labels = np.asarray(prep["quad_tree"]["clusters"]["labels"])
    centroids = np.asarray(prep["quad_tree"]["clusters"]["centroids"])
    s, kind = prep["influence"], prep["data"]["kind"]
    size = np.bincount(labels)
    d = np.asarray(bandit.distances(centroids))
    neighbours = (d < 0.2).sum(1) - 1
    means = np.array([s[labels == c].mean() for c in range(len(size))])
    dup = np.bincount(labels[kind == 2], minlength=len(size))
    small = size <= 12
    return (f"Seed {seed}: K = {len(size)} clusters of {size.min()}-{size.max()} windows (median {np.median(size):.0f}); "
            f"neighbours within the paper's radius 0.2 (cosine distance of centroids): median {np.median(neighbours):.0f}, "
            f"max {neighbours.max()}, {int((neighbours > 0).sum())} clusters with any; influence cosine: pool mean "
            f"{s.mean():.3f}, std {s.std():.3f}, cluster means {means.min():.3f} to {means.max():.3f} (std "
            f"{means.std():.3f}); {int(small.sum())} clusters of at most 12 windows hold {int(dup[small].sum())} "
            f"of the {int((kind == 2).sum())} planted copies ({int(size[small].sum())} windows in all).\n")


def main(argv=None) -> int:
    from jdps import selectors
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[10])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25])
    parser.add_argument("--variants", nargs="*", default=[],
                        help="name=json of select options, or a baseline (none: rewrite the report from the .json)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/jdps_quad_screen"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    setup = quad_lm.FULL
    json_path = args.out.with_suffix(".json")
    records = json.loads(json_path.read_text())["records"] if json_path.exists() else []
    for seed in args.seeds if args.variants else []:
        prep = prepare(seed, setup, args.cache)
        data = prep["data"]
        pool = {"x": data["x"]}
        n = len(pool["x"])
        task, proxy = lm_task(setup, seed)[0], prep["proxy"]
        sel = selectors.make("quad", task, proxy)
        state = sel.state_from_tree(prep["quad_tree"])
        labels = np.asarray(state.clusters.labels)
        k_select = jax.random.fold_in(jax.random.key(seed), 1)
        task_lm, init = lm_task(setup, seed + 1000)
        for spec in args.variants:
            name, _, opts = spec.partition("=")
            opts = json.loads(opts) if opts else {}
            for f in args.fractions:
                k = math.ceil(f * n)
                info = {}
                if name == "random":
                    idx = np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
                    scored = 0.0
                elif name == "influence":
                    idx, scored = np.argsort(-prep["influence"], kind="stable")[:k], 1.0
                else:
                    s = sel.select(state, key=k_select, fraction=f, **opts)
                    idx, scored = s.indices, s.info["fraction_scored"]
                    info = {key: s.info[key] for key in ("stop_reason", "rounds", "clusters_pulled")}
                    info["settings"] = {key: v for key, v in s.info["settings"].items()}
                params, train_s = timed(train_subset, task_lm, init, pool, idx, None, seed=seed, steps=setup.steps,
                                        batch_size=setup.batch_size, optimizer=adam(setup.lr), repeat=True)
                losses = quad_lm.validation_losses(task_lm, params, data["validation"], setup.target)
                others = [losses[d] for d in setup.domains if d not in setup.target]
                kinds = np.bincount(data["kind"][idx], minlength=4)
                rec = {"seed": seed, "variant": spec, "fraction": f, "count": len(idx),
                       "ref_loss": losses["reference mix"], "other_loss": float(np.mean(others)),
                       "scored": scored, "covered": quad_lm.coverage(labels, idx), "K": int(labels.max() + 1),
                       "low_quality": kinds[1:].tolist(), "info": info}
                print(json.dumps({k_: v for k_, v in rec.items() if k_ != "info"}), info.get("stop_reason"),
                      f"{train_s:.0f}s", flush=True)
                records = [r for r in records if (r["seed"], r["variant"], r["fraction"]) != (seed, spec, f)] + [rec]
                write_text(json_path, json.dumps({"records": records}, indent=1, default=str))
    facts = []
    for seed in args.seeds:
        path = args.cache / f"quad_screen_seed{seed}.pkl"
        if path.exists():
            facts.append(cluster_facts(seed, path))
    rows = [[r["seed"], f"`{r['variant']}`", f"{100 * r['fraction']:g}%", r["count"], f"{r['ref_loss']:.3f}",
             f"{r['other_loss']:.3f}", f"{100 * r['scored']:.1f}", f"{r['covered']}/{r['K']}",
             "/".join(map(str, r["low_quality"])), r["info"].get("stop_reason", "-")]
            for r in sorted(records, key=lambda r: (r["seed"], r["fraction"], r["variant"]))]
    write_text(args.out.with_suffix(".md"), "\n".join([
        "# Quad screening on an unreported pool draw", "",
        ("Command: `python -m experiments.quad_screen --variants ...` (each row's variant is its argument). "
         "Validation windows of the screened seed; 'other' is the mean loss over the domains outside the "
         "reference mix; low quality: header/duplicate/shuffled windows selected."), "",
        markdown_table(["seed", "variant", "fraction", "windows", "ref-mix loss", "other loss", "% scored",
                        "clusters", "low quality", "stop"], rows), "", *facts]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
