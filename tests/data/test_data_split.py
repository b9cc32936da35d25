from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnchain.data import GENERATORS, Dataset, feature_stats, split, standardize
from nnchain.errors import SpecError


def indexed(n_samples: int = 100, classes: int = 3) -> Dataset:
    """Blobs whose first feature is the row index, so rows can be traced through a split."""
    dataset = GENERATORS["blobs"](n_samples=n_samples, classes=classes,
                                  rng=np.random.default_rng(0))
    x = np.column_stack([np.arange(n_samples, dtype=np.float64), dataset.x[:, 1]])
    return dataclasses.replace(dataset, x=x)


def rows(dataset: Dataset) -> set[int]:
    return set(dataset.x[:, 0].astype(int))


def test_sizes_and_no_overlap() -> None:
    train, val = split(indexed(100), 0.2, np.random.default_rng(1))
    assert val is not None
    assert (train.n_samples, val.n_samples) == (80, 20)
    assert rows(train).isdisjoint(rows(val))
    assert rows(train) | rows(val) == set(range(100))


def test_rows_keep_their_labels() -> None:
    dataset = indexed(50)
    train, val = split(dataset, 0.3, np.random.default_rng(2))
    for part in (train, val):
        np.testing.assert_array_equal(part.y, dataset.y[part.x[:, 0].astype(int)])


def test_stratified_by_class() -> None:
    train, val = split(indexed(90, classes=3), 0.2, np.random.default_rng(3))
    np.testing.assert_array_equal(np.bincount(val.y), [6, 6, 6])
    np.testing.assert_array_equal(np.bincount(train.y), [24, 24, 24])


def test_split_shuffles() -> None:
    train, val = split(indexed(100), 0.2, np.random.default_rng(4))
    assert not (np.diff(train.y) >= 0).all()
    assert not (np.diff(val.y) >= 0).all()


def test_deterministic_under_seed_and_seed_matters() -> None:
    first = split(indexed(), 0.25, np.random.default_rng(5))
    second = split(indexed(), 0.25, np.random.default_rng(5))
    other = split(indexed(), 0.25, np.random.default_rng(6))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(first[1].x, other[1].x)


def test_regression_split() -> None:
    x = np.arange(10, dtype=np.float64).reshape(10, 1)
    dataset = Dataset(x=x, y=x * 2.0, task="regression", n_classes=0,
                      feature_names=("a",), class_names=())
    train, val = split(dataset, 0.3, np.random.default_rng(0))
    assert (train.n_samples, val.n_samples) == (7, 3)
    np.testing.assert_array_equal(val.y, val.x * 2.0)


def test_zero_fraction_returns_none() -> None:
    dataset = indexed()
    train, val = split(dataset, 0.0, np.random.default_rng(0))
    assert train is dataset and val is None


def test_tiny_fraction_still_gives_one_validation_sample() -> None:
    _, val = split(indexed(100), 0.001, np.random.default_rng(0))
    assert val.n_samples == 1


def test_float_product_does_not_round_up() -> None:
    _, val = split(indexed(30), 0.1, np.random.default_rng(0))
    assert val.n_samples == 3


@pytest.mark.parametrize("fraction", [1.0, -0.1, 1.5, float("nan"), "0.2", True])
def test_bad_fraction(fraction: object) -> None:
    with pytest.raises(SpecError) as caught:
        split(indexed(), fraction, np.random.default_rng(0))
    assert caught.value.field == "data.val_fraction"


def test_fraction_leaving_no_training_sample() -> None:
    with pytest.raises(SpecError) as caught:
        split(indexed(4, classes=2), 0.9, np.random.default_rng(0))
    assert caught.value.field == "data.val_fraction"


def test_standardize_uses_train_statistics_only() -> None:
    train, val = split(indexed(100), 0.2, np.random.default_rng(0))
    train = dataclasses.replace(train, x=train.x * 3.0 + 5.0)
    val = dataclasses.replace(val, x=val.x * 100.0)
    mean, std = train.x.mean(axis=0), train.x.std(axis=0)
    scaled_train, scaled_val = standardize(train, val)
    np.testing.assert_allclose(scaled_train.x.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled_train.x.std(axis=0), 1.0)
    np.testing.assert_allclose(scaled_val.x, (val.x - mean) / std)
    assert scaled_train.y is train.y
    assert train.x.mean() > 1  # inputs untouched


def test_standardize_constant_column_gets_std_one() -> None:
    x = np.column_stack([np.full(5, 0.1), np.arange(5.0)])
    dataset = Dataset(x=x, y=np.array([0, 1, 0, 1, 0]), task="binary", n_classes=2,
                      feature_names=("c", "v"), class_names=("0", "1"))
    mean, std = feature_stats(x)
    assert std[0] == 1.0 and mean[1] == 2.0
    scaled, val = standardize(dataset, None)
    assert val is None
    np.testing.assert_allclose(scaled.x[:, 0], 0.0, atol=1e-15)
    assert np.isfinite(scaled.x).all()
