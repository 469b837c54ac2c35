"""Data: offline real datasets, user arrays, tfds directories, corruptions, batching and text windows.

Every name is imported on first use (PEP 562), so reading and checking a user's npz files
(`jdps.data.user_arrays`) loads no jax.
"""

import importlib

# public name -> the module that defines it
_LAZY = {
    **dict.fromkeys(("device_arrays", "epoch_indices", "gather", "ids_of", "scoring_indices", "stream"),
                    "jdps.data.batching"),
    **dict.fromkeys(("CATALOGUE", "install", "load", "minilm_model_dir", "status_table"), "jdps.data.catalogue"),
    **dict.fromkeys(("corrupt_labels", "long_tail", "meta_split", "pair_noise", "step_imbalance",
                     "subsample_groups", "symmetric_noise"), "jdps.data.corruptions"),
    **dict.fromkeys(("Dataset", "DatasetInfo", "Document"), "jdps.data.dataset"),
    "data_dir": "jdps.data.paths",
    **dict.fromkeys(("VOCAB_SIZE", "decode", "encode", "mixture", "windows"), "jdps.data.text"),
    **dict.fromkeys(("from_arrays", "load_npz"), "jdps.data.user_arrays"),
}

__all__ = [
    "CATALOGUE", "Dataset", "DatasetInfo", "Document", "VOCAB_SIZE", "corrupt_labels", "data_dir", "decode",
    "device_arrays", "encode", "epoch_indices", "from_arrays", "gather", "ids_of", "install", "load",
    "load_npz", "long_tail", "meta_split", "minilm_model_dir", "mixture", "pair_noise", "scoring_indices",
    "status_table", "step_imbalance", "stream", "subsample_groups", "symmetric_noise", "windows",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'jdps.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
