"""Pick pretraining data from a pool: Quad takes a share of a mixed pool by influence on a small reference
set of the data you care about, scoring only part of the pool (clusters as bandit arms).

    python examples/pretraining_from_pool.py                 # MNIST 5k pool: half good, half junk
    python examples/pretraining_from_pool.py --dataset digits --fraction 0.1

The pool mixes two sources: a good one (images with their labels) and a junk one (images whose labels are
random, as scraped text paired with the wrong topic). Prints: how much of the pool Quad scored, the share
of good examples in its choice (the pool's share for reference), and the clusters it covered.
"""

import argparse
import json

import numpy as np

from jdps import selectors
from jdps.data import load
from jdps.models import mlp_task
from jdps.train import train


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist_5k", choices=("mnist_5k", "digits"))
    p.add_argument("--fraction", type=float, default=0.1, help="share of the pool to pick")
    p.add_argument("--clusters", type=int, default=20, help="k-means clusters (bandit arms)")
    p.add_argument("--acceptance", default="instance", choices=("block", "instance", "top_share"),
                   help="how a pulled cluster's examples are accepted (block: the paper's, without scoring each)")
    p.add_argument("--epochs", type=int, default=3, help="brief training of the scoring model on the pool")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    every = load(args.dataset, "all")
    x = np.asarray(every.x, np.float32).reshape(len(every), -1)
    y = np.asarray(every.y)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y))
    reference_rows, pool_rows = order[:100], order[100:]
    junk = rng.random(len(pool_rows)) < 0.5                      # half the pool from the junk source
    pool_y = y[pool_rows].copy()
    pool_y[junk] = rng.integers(0, 10, junk.sum())
    pool = {"x": x[pool_rows], "y": pool_y}
    reference = {"x": x[reference_rows], "y": y[reference_rows]}

    task, params = mlp_task(args.seed, x.shape[1], (64,), 10)
    params = train(task, params, pool, key=args.seed, epochs=args.epochs, batch_size=128).params
    quad = selectors.make("quad", task, params, n_clusters=args.clusters)
    chosen = quad.select(quad.fit(pool, reference, key=args.seed), key=args.seed + 1, fraction=args.fraction,
                         acceptance=args.acceptance)
    figures = {"pool": len(pool_rows), "picked": len(chosen.indices),
               "fraction_scored": round(float(chosen.info["fraction_scored"]), 3),
               "good_share_picked": round(float((~junk[chosen.indices]).mean()), 3),
               "good_share_pool": round(float((~junk).mean()), 3),
               "clusters_covered": int(chosen.info["clusters_covered"])}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
