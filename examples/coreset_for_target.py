"""Pick a 5% coreset for a target: GTP chooses a few pool examples whose gradient trajectory matches that
of a small target set; train on them and compare with a random subset of the same size.

    python examples/coreset_for_target.py                      # MNIST 5k pool, target: digits 0-4 only
    python examples/coreset_for_target.py --dataset digits --fraction 0.05

The target here is a narrower task than the pool (only some classes), as when you want the pool's
examples that serve your task. Prints: the coreset's size, the share of it that comes from the target's
classes (the pool's share for reference), and accuracy on held-out target examples after training on the
coreset vs on a random subset of the same size.
"""

import argparse
import json

import numpy as np
import optax

from jdps import selectors
from jdps.data import load
from jdps.models import mlp_task
from jdps.train import evaluate, train


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist_5k", choices=("mnist_5k", "digits"))
    p.add_argument("--fraction", type=float, default=0.05, help="coreset size, a fraction of the pool")
    p.add_argument("--target-classes", default="0,1,2,3,4")
    p.add_argument("--warmup-epochs", type=int, default=3, help="warm-up epochs, one checkpoint each")
    p.add_argument("--epochs", type=int, default=30, help="epochs of training on the coreset")
    p.add_argument("--d", type=int, default=256, help="projection width per checkpoint")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    every = load(args.dataset, "all")
    x = np.asarray(every.x, np.float32).reshape(len(every), -1)
    y = np.asarray(every.y)
    classes = [int(c) for c in args.target_classes.split(",")]
    order = np.random.default_rng(args.seed).permutation(len(y))
    in_target = np.isin(y[order], classes)
    target_rows = order[in_target][:200]                      # a small target set, and held-out target data
    held_out = order[in_target][200:600]
    pool_rows = np.setdiff1d(order, np.concatenate([target_rows, held_out]))
    pool = {"x": x[pool_rows], "y": y[pool_rows]}
    target = {"x": x[target_rows], "y": y[target_rows]}
    test = {"x": x[held_out], "y": y[held_out]}

    task, params = mlp_task(args.seed, x.shape[1], (128,), 10)
    checkpoints, p_ = [], params
    for epoch in range(args.warmup_epochs):                   # a short warm-up on the pool
        p_ = train(task, p_, pool, key=epoch, epochs=1, batch_size=128).params
        checkpoints.append(p_)
    gtp = selectors.make("gtp", task, checkpoints, d=args.d, grad_form="factored")
    coreset = gtp.select(gtp.fit(pool, target, key=args.seed), fraction=args.fraction, solver="omp")
    k = len(coreset.indices)
    rand = np.random.default_rng(args.seed + 1).choice(len(pool_rows), k, replace=False)

    fit = dict(key=args.seed, epochs=args.epochs, batch_size=32, optimizer=optax.adam(1e-3))
    acc = {name: evaluate(task, train(task, params, pool, indices=rows, **fit).params, test)["accuracy"]
           for name, rows in (("gtp", coreset.indices), ("random", rand))}
    figures = {"pool": len(pool_rows), "coreset": k, "stop_reason": coreset.info["stop_reason"],
               "target_class_share_coreset": round(float(np.isin(pool["y"][coreset.indices], classes).mean()), 3),
               "target_class_share_pool": round(float(np.isin(pool["y"], classes).mean()), 3),
               "target_accuracy_gtp": round(acc["gtp"], 3), "target_accuracy_random": round(acc["random"], 3)}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
