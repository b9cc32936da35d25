"""Targets shaped for a network's output layer."""

from __future__ import annotations

import numpy as np

from nnchain.data.dataset import Dataset
from nnchain.errors import SpecError


def output_widths(task: str, n_classes: int, n_targets: int = 1) -> tuple[int, ...]:
    """The output widths a network may have for this task.

    binary: 1 (one sigmoid unit) or 2 (softmax); multiclass: k; regression: m targets.
    """
    if task == "regression":
        return (n_targets,)
    if task == "binary":
        return (1, 2)
    return (n_classes,)


def dataset_output_widths(dataset: Dataset) -> tuple[int, ...]:
    """`output_widths` for a loaded dataset."""
    n_targets = dataset.y.shape[1] if dataset.task == "regression" else 1
    return output_widths(dataset.task, dataset.n_classes, n_targets)


def encode_targets(y: np.ndarray, task: str, n_classes: int, width: int,
                   dtype: np.dtype | type = np.float64) -> np.ndarray:
    """y as the (n, width) array a network of output width `width` is trained against.

    binary with width 1: (n, 1) of 0/1; classification with width k: one-hot (n, k);
    regression: y (n, m) (or (n,) read as m = 1) cast to dtype, width must equal m.
    A width the task cannot use is a SpecError on "model" naming the allowed widths.
    """
    n_targets = 1 if y.ndim == 1 else y.shape[1]
    allowed = output_widths(task, n_classes, n_targets)
    if width not in allowed:
        raise SpecError("model", f"the output width must be {' or '.join(map(str, allowed))} "
                                 f"for {task} data"
                                 f"{f' with {n_classes} classes' if n_classes else ''}, "
                                 f"got {width}")
    if task == "regression":
        return np.asarray(y, dtype=dtype).reshape(len(y), width)
    if width == 1:
        return np.asarray(y, dtype=dtype).reshape(len(y), 1)
    return np.eye(width, dtype=dtype)[y]
