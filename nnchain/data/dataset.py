"""The `Dataset` value every loader returns, and the label bookkeeping they share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nnchain.errors import SpecError, shown
from nnchain.limits import MAX_MAGNITUDE

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and targets with what a network needs to know about them.

    x: (n, d) float64.
    y: (n,) int64 labels 0..k-1 for "binary"/"multiclass"; (n, m) float64 for "regression".
    n_classes: k for classification, 0 for regression.
    class_names: the original label of class i at position i (empty for regression).

    Compared by identity (eq=False): element-wise array equality has no single truth value.
    """

    x: np.ndarray
    y: np.ndarray
    task: str
    n_classes: int
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.x.ndim != 2 or self.x.dtype != np.float64:
            raise ValueError(f"x must be (n, d) float64, got {self.x.shape} {self.x.dtype}")
        if len(self.y) != len(self.x):
            raise ValueError(f"x and y must have the same rows, "
                             f"got {len(self.x)} and {len(self.y)}")
        if len(self.feature_names) != self.x.shape[1]:
            raise ValueError(f"feature_names must name {self.x.shape[1]} columns, "
                             f"got {len(self.feature_names)}")
        if self.task == "regression":
            if self.y.ndim != 2 or self.y.dtype != np.float64 or self.n_classes != 0:
                raise ValueError(f"regression y must be (n, m) float64 with n_classes 0, "
                                 f"got {self.y.shape} {self.y.dtype}, n_classes {self.n_classes}")
            return
        if self.n_classes < 2 or classification_task(self.n_classes) != self.task:
            expected = "2" if self.task == "binary" else ">= 3"
            raise ValueError(f"{self.task} needs n_classes {expected}, got {self.n_classes}")
        if len(self.class_names) != self.n_classes:
            raise ValueError(f"class_names must name {self.n_classes} classes, "
                             f"got {len(self.class_names)}")
        if self.y.ndim != 1 or self.y.dtype != np.int64:
            raise ValueError(f"{self.task} y must be (n,) int64, got {self.y.shape} {self.y.dtype}")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.n_classes):
            raise ValueError(f"labels must lie in 0..{self.n_classes - 1}, "
                             f"got {self.y.min()}..{self.y.max()}")

    @property
    def n_samples(self) -> int:
        return len(self.x)


def classification_task(n_classes: int) -> str:
    """'binary' for 2 classes, 'multiclass' for more."""
    return "binary" if n_classes == 2 else "multiclass"


def encode_labels(values: np.ndarray, field: str, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map original labels (n,) to int64 codes 0..k-1 in sorted label order.

    Returns (codes (n,), class_names (k,)). Integral floats are named without '.0'.
    Fewer than two distinct labels is a SpecError on `field`; `where` names the source.
    """
    uniques, codes = np.unique(values, return_inverse=True)
    if len(uniques) < 2:
        label = f" ({shown(_label_name(uniques[0]))})" if len(uniques) else ""
        raise SpecError(field, f"labels must hold at least 2 classes, got {len(uniques)}{label} "
                               f"in {where}")
    names = tuple(_label_name(value) for value in uniques)
    return codes.reshape(-1).astype(np.int64), names


def _label_name(value: object) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def check_features(x: np.ndarray, feature_names: Sequence[str], field: str, where: str) -> None:
    """Refuse NaN/inf features, magnitudes beyond ``MAX_MAGNITUDE`` (standardising them would
    overflow) and fewer than 2 samples: x (n, d) float64."""
    if len(x) < 2:
        raise SpecError(field, f"data must hold at least 2 samples, got {len(x)} in {where}")
    bad = ~np.isfinite(x)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise SpecError(field, f"features must be finite, got {x[row, column]} in column "
                               f"{shown(feature_names[column])} (row {row}) of {where}")
    magnitude = np.abs(x)
    if x.size and magnitude.max() > MAX_MAGNITUDE:
        row, column = np.unravel_index(np.argmax(magnitude), x.shape)
        raise SpecError(field, f"features must have magnitude <= {MAX_MAGNITUDE:g} so that "
                               f"standardising cannot overflow, got {x[row, column]:g} in "
                               f"column {shown(feature_names[column])} (row {row}) of {where}")


def describe(dataset: Dataset) -> dict[str, object]:
    """A plain, JSON-ready summary: sizes, task, and per-class counts for classification."""
    summary: dict[str, object] = {
        "n_samples": dataset.n_samples,
        "n_features": int(dataset.x.shape[1]),
        "task": dataset.task,
        "n_classes": dataset.n_classes,
    }
    if dataset.task == "regression":
        summary["n_targets"] = int(dataset.y.shape[1])
    else:
        counts = np.bincount(dataset.y, minlength=dataset.n_classes)
        summary["class_counts"] = {name: int(count)
                                   for name, count in zip(dataset.class_names, counts, strict=True)}
    return summary
