from __future__ import annotations

import numpy as np
import pytest

from nnchain.data import BUNDLED, load_dataset


@pytest.mark.parametrize(("name", "shape", "n_classes", "task"), [
    ("digits", (1797, 64), 10, "multiclass"),
    ("iris", (150, 4), 3, "multiclass"),
    ("wine", (178, 13), 3, "multiclass"),
    ("breast_cancer", (569, 30), 2, "binary"),
])
def test_bundled_shapes(name: str, shape: tuple[int, int], n_classes: int, task: str) -> None:
    dataset = BUNDLED[name]()
    assert dataset.x.shape == shape and dataset.x.dtype == np.float64
    assert dataset.y.shape == (shape[0],) and dataset.y.dtype == np.int64
    assert dataset.n_classes == n_classes and dataset.task == task
    assert len(np.unique(dataset.y)) == n_classes
    assert len(dataset.class_names) == n_classes
    assert len(dataset.feature_names) == shape[1]


def test_bundled_ignore_generator_options() -> None:
    dataset = load_dataset(name="iris", n_samples=10, noise=5.0, classes=7,
                           rng=np.random.default_rng(0))
    assert dataset.x.shape == (150, 4) and dataset.n_classes == 3
    assert dataset.class_names == ("setosa", "versicolor", "virginica")
