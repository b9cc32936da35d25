"""Train/validation split and feature scaling fitted on the training part only."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nnchain.data.checks import check_fraction
from nnchain.data.dataset import Dataset
from nnchain.errors import SpecError


def split(dataset: Dataset, val_fraction: float,
          rng: np.random.Generator) -> tuple[Dataset, Dataset | None]:
    """Shuffle with `rng` and hold out ceil(val_fraction * n) rows for validation.

    val_fraction 0 returns (dataset, None) untouched. Classification is stratified: each
    class gives its share of the validation rows (largest remainders round the shares),
    so class proportions match in both parts. Both parts are shuffled, hence not grouped
    by class. A split that would leave the training part empty is a SpecError.
    """
    val_fraction = check_fraction(val_fraction)
    if val_fraction == 0:
        return dataset, None
    n_samples = dataset.n_samples
    # the epsilon keeps 0.1 * 30 = 3.0000000000000004 from rounding up to 4
    n_val = math.ceil(val_fraction * n_samples - 1e-9)
    if n_val >= n_samples:
        raise SpecError("data.val_fraction",
                        f"must leave at least 1 training sample, got {val_fraction} of "
                        f"{n_samples} samples = {n_val} for validation")
    if dataset.task == "regression":
        order = rng.permutation(n_samples)
        val_rows, train_rows = order[:n_val], order[n_val:]
    else:
        val_rows, train_rows = _stratified_rows(dataset.y, dataset.n_classes, n_val, rng)
    return _take(dataset, rng.permutation(train_rows)), _take(dataset, rng.permutation(val_rows))


def standardize(train: Dataset, val: Dataset | None) -> tuple[Dataset, Dataset | None]:
    """Scale features to zero mean and unit std, with statistics of `train` only.

    Constant training columns get std 1, so they map to 0 instead of dividing by zero.
    Targets are left as they are. Returns new datasets; the inputs are not modified.
    """
    mean, std = feature_stats(train.x)
    scaled_train = dataclasses.replace(train, x=(train.x - mean) / std)
    if val is None:
        return scaled_train, None
    return scaled_train, dataclasses.replace(val, x=(val.x - mean) / std)


def feature_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean (d,) and std (d,) of x (n, d); std is 1 where a column is constant."""
    mean = x.mean(axis=0)
    # exact test for constant columns: a computed std of a constant can be ~1e-17, not 0
    constant = np.ptp(x, axis=0) == 0
    std = np.where(constant, 1.0, x.std(axis=0))
    return mean, std


def _stratified_rows(y: np.ndarray, n_classes: int, n_val: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(val_rows, train_rows): each class's shuffled rows split by its share of n_val."""
    counts = np.bincount(y, minlength=n_classes)
    quota = n_val * counts / len(y)
    per_class = np.floor(quota).astype(np.int64)
    # stable sort: ties go to the lower class index, so the split is deterministic
    by_remainder = np.argsort(-(quota - per_class), kind="stable")
    per_class[by_remainder[: n_val - per_class.sum()]] += 1
    val_parts, train_parts = [], []
    for label in range(n_classes):
        rows = rng.permutation(np.flatnonzero(y == label))
        val_parts.append(rows[: per_class[label]])
        train_parts.append(rows[per_class[label]:])
    return np.concatenate(val_parts), np.concatenate(train_parts)


def _take(dataset: Dataset, rows: np.ndarray) -> Dataset:
    return dataclasses.replace(dataset, x=dataset.x[rows], y=dataset.y[rows])
