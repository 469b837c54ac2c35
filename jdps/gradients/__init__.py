"""Per-example gradients: the engine every attribution and pursuit method builds on.

    per_example   chunked vmap(grad), flattening, finite checks
    factored      exact forms for Dense layers: ghost norms, LoGra-style factored projections
    projection    blockwise random projections (Gaussian / Rademacher), one matrix per (key, shapes, d)
    features      projected per-example features of a dataset, in global-index order
    param_filter  which parameters count: path globs, last layers, predicates
"""
