"""Score my training data's influence on a query set: which training examples help the model on the query
examples, and which hurt? Here a few training labels are wrong on purpose, so the answer can be checked.

    python examples/influence_on_query.py                   # MNIST 5k, 2,000 training images, 10% mislabelled
    python examples/influence_on_query.py --dataset digits

Influence I(z, Q) = grad L(Q)^T (C + lambda I)^{-1} grad l(z) with EK-FAC curvature (higher: training on z
lowers the query loss more). Prints: the ids of the most helpful and most harmful training examples, and
the share of mislabelled examples among the 5% most harmful (the base rate for reference).
"""

import argparse
import json

import jax
import numpy as np

from jdps import influence
from jdps.data import corrupt_labels, from_arrays, load
from jdps.influence import ihvp
from jdps.models import mlp_task
from jdps.train import train


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist_5k", choices=("mnist_5k", "digits"))
    p.add_argument("--n", type=int, default=2000, help="training examples")
    p.add_argument("--noise", type=float, default=0.1, help="share of training labels made wrong")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--damping", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    every = load(args.dataset, "all")
    order = np.random.default_rng(args.seed).permutation(len(every))
    x = np.asarray(every.x, np.float32).reshape(len(every), -1)
    n = min(args.n, len(order) - 200)
    train_rows, query_rows = order[:n], order[n:n + 200]
    data = corrupt_labels(from_arrays(x[train_rows], np.asarray(every.y)[train_rows], ids=train_rows),
                          args.noise, seed=args.seed)                    # ids: rows of the whole data set
    wrong = np.asarray(data.columns["corrupted"], bool)
    pool = {"x": data.x, "y": data.y}
    query = {"x": x[query_rows], "y": np.asarray(every.y)[query_rows]}

    task, params = mlp_task(args.seed, x.shape[1], (64,), 10)
    params = train(task, params, pool, key=args.seed, epochs=args.epochs, batch_size=64).params
    fitted = influence.fit(task, params, pool, ihvp=ihvp.ekfac(args.damping, key=jax.random.key(args.seed)))
    scores = np.asarray(influence.query_scores(fitted, query, pool))     # [n]: on the query set's mean loss
    ranked = np.argsort(-scores)
    harmful = ranked[-max(1, n // 20):]
    figures = {"train": n, "query": len(query_rows),
               "most_helpful_ids": data.ids[ranked[:5]].tolist(), "most_harmful_ids": data.ids[ranked[-5:]].tolist(),
               "mislabelled_share_of_most_harmful_5pct": round(float(wrong[harmful].mean()), 3),
               "mislabelled_share_overall": round(float(wrong.mean()), 3)}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
