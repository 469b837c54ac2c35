"""Data: offline real datasets, user arrays, tfds directories, corruptions, batching and text windows."""

from jdps.data.batching import (device_arrays, epoch_indices, gather, ids_of, scoring_indices,
                                stream)
from jdps.data.catalogue import CATALOGUE, install, load, minilm_model_dir, status_table
from jdps.data.corruptions import (corrupt_labels, long_tail, meta_split, pair_noise, step_imbalance,
                                   subsample_groups, symmetric_noise)
from jdps.data.dataset import Dataset, DatasetInfo, Document
from jdps.data.paths import data_dir
from jdps.data.text import VOCAB_SIZE, decode, encode, mixture, windows
from jdps.data.user_arrays import from_arrays, load_npz

__all__ = [
    "CATALOGUE", "Dataset", "DatasetInfo", "Document", "VOCAB_SIZE", "corrupt_labels", "data_dir",
    "decode", "device_arrays", "encode", "epoch_indices", "from_arrays", "gather", "ids_of", "install",
    "load", "load_npz", "long_tail", "meta_split", "minilm_model_dir", "mixture", "pair_noise",
    "scoring_indices", "status_table", "step_imbalance", "stream", "subsample_groups",
    "symmetric_noise", "windows",
]
