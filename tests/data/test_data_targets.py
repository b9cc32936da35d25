from __future__ import annotations

import numpy as np
import pytest

from nnchain.data import dataset_output_widths, encode_targets, load_dataset
from nnchain.errors import SpecError


def test_binary_width_one() -> None:
    encoded = encode_targets(np.array([0, 1, 1]), "binary", 2, 1, np.float64)
    assert encoded.shape == (3, 1) and encoded.dtype == np.float64
    np.testing.assert_array_equal(encoded[:, 0], [0, 1, 1])


@pytest.mark.parametrize(("task", "n_classes"), [("binary", 2), ("multiclass", 4)])
def test_one_hot(task: str, n_classes: int) -> None:
    y = np.arange(n_classes)[::-1].copy()
    encoded = encode_targets(y, task, n_classes, n_classes, np.float32)
    assert encoded.shape == (n_classes, n_classes) and encoded.dtype == np.float32
    np.testing.assert_array_equal(encoded.argmax(axis=1), y)
    np.testing.assert_array_equal(encoded.sum(axis=1), 1)


def test_regression() -> None:
    y = np.arange(6.0).reshape(3, 2)
    encoded = encode_targets(y, "regression", 0, 2, np.float32)
    assert encoded.shape == (3, 2) and encoded.dtype == np.float32
    assert encode_targets(y[:, :1], "regression", 0, 1, np.float64).shape == (3, 1)


@pytest.mark.parametrize(("y", "task", "n_classes", "width"), [
    (np.array([0, 1, 2]), "multiclass", 3, 1),
    (np.array([0, 1]), "binary", 2, 3),
    (np.zeros((3, 2)), "regression", 0, 1),
])
def test_width_mismatch(y: np.ndarray, task: str, n_classes: int, width: int) -> None:
    with pytest.raises(SpecError) as caught:
        encode_targets(y, task, n_classes, width, np.float64)
    assert caught.value.field == "model"


def test_dataset_output_widths() -> None:
    rng = np.random.default_rng(0)
    assert dataset_output_widths(load_dataset(name="moons", rng=rng)) == (1, 2)
    assert dataset_output_widths(load_dataset(name="spirals", classes=5, rng=rng)) == (5,)
