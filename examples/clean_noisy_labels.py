"""Clean my noisy labels: BADS weights every training example from a small clean set; the lowest weights
are the suspect labels. Then train on the examples BADS keeps and compare with training on everything.

    python examples/clean_noisy_labels.py                 # MNIST 5k, 3,000 images, 40% of the labels wrong
    python examples/clean_noisy_labels.py --dataset digits --noise 0.3 --epochs 5

Prints: the weights' AUROC for clean vs wrong labels, the share of wrong labels among the examples BADS
drops, and test accuracy after training on all examples vs on the kept ones.
"""

import argparse
import json

import numpy as np
import optax
from sklearn.metrics import roc_auc_score

from jdps import selectors
from jdps.data import corrupt_labels, load, meta_split
from jdps.models import mlp_task
from jdps.train import evaluate, train


def flat(d):
    return {"x": np.asarray(d.x, np.float32).reshape(len(d), -1), "y": np.asarray(d.y)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist_5k", choices=("mnist_5k", "digits"))
    p.add_argument("--n", type=int, default=3000, help="training examples")
    p.add_argument("--noise", type=float, default=0.4, help="fraction of labels made wrong (symmetric)")
    p.add_argument("--meta-per-class", type=int, default=15, help="clean examples a class you trust")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    every = load(args.dataset, "all")
    order = np.random.default_rng(args.seed).permutation(len(every))
    test, rest = every.take(order[:500]), every.take(order[500:])
    rest, meta = meta_split(rest, args.meta_per_class, seed=args.seed)
    pool = corrupt_labels(rest.take(np.arange(min(args.n, len(rest)))), args.noise, seed=args.seed)
    wrong = np.asarray(pool.columns["corrupted"], bool)
    p_, m_, t_ = flat(pool), flat(meta), flat(test)

    task, params = mlp_task(args.seed, p_["x"].shape[1], (128,), 10)
    sel = selectors.make("bads", task, params, epochs=args.epochs)
    state = sel.fit(p_, m_, key=args.seed)
    every_weight = sel.select(state)                          # no size: every example with its weight
    weights = np.empty(len(wrong))
    weights[every_weight.indices] = every_weight.weights      # the weight of example i
    kept = sel.select(state, fraction=1 - args.noise)                             # drop the expected share
    dropped = np.setdiff1d(np.arange(len(wrong)), kept.indices)

    steps = dict(key=args.seed, epochs=args.epochs, batch_size=128, optimizer=optax.adam(1e-3))
    on_all = train(task, params, p_, **steps).params
    on_kept = train(task, params, p_, indices=kept.indices, **steps).params
    figures = {"examples": len(wrong), "wrong_labels": round(float(wrong.mean()), 3),
               "auroc_clean_vs_wrong": round(float(roc_auc_score(~wrong, weights)), 3),
               "wrong_share_of_dropped": round(float(wrong[dropped].mean()), 3),
               "test_accuracy_all": round(evaluate(task, on_all, t_)["accuracy"], 3),
               "test_accuracy_kept": round(evaluate(task, on_kept, t_)["accuracy"], 3)}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
