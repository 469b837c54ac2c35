"""The experiments: each a module run from the repository root, `python -m experiments.<name> ...`, sharing
`experiments.common`; their tables and figures are in experiments/results/."""
