"""Datasets for nnchain: seeded toy problems, scikit-learn's bundled sets, CSV and NPZ files.

Imports numpy only; scikit-learn is imported inside the bundled loaders.
Every loader returns a `Dataset` (x (n, d) float64; y (n,) int64 labels or (n, m) float64).
"""

from __future__ import annotations

from nnchain.data.bundled import BUNDLED
from nnchain.data.dataset import TASKS, Dataset, describe
from nnchain.data.files import FILE_LOADERS
from nnchain.data.load import DATASET_NAMES, load_dataset
from nnchain.data.split import feature_stats, split, standardize
from nnchain.data.synthetic import GENERATORS
from nnchain.data.targets import dataset_output_widths, encode_targets, output_widths

__all__ = [
    "BUNDLED",
    "DATASET_NAMES",
    "FILE_LOADERS",
    "GENERATORS",
    "TASKS",
    "Dataset",
    "dataset_output_widths",
    "describe",
    "encode_targets",
    "feature_stats",
    "load_dataset",
    "output_widths",
    "split",
    "standardize",
]
