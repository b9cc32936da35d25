"""Contract suite: every generator goes through the same checks."""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.data import GENERATORS, Dataset
from nnchain.errors import SpecError

NAMES = sorted(GENERATORS)
MULTICLASS = ("spirals", "blobs")


def generate(name: str, seed: int = 0, **options: object) -> Dataset:
    return GENERATORS[name](rng=np.random.default_rng(seed), **options)


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_and_labels(name: str) -> None:
    dataset = generate(name, n_samples=101)
    assert dataset.x.shape == (101, 2) and dataset.x.dtype == np.float64
    assert dataset.y.shape == (101,) and dataset.y.dtype == np.int64
    assert dataset.task == "binary" and dataset.n_classes == 2
    assert set(np.unique(dataset.y)) == {0, 1}
    assert dataset.class_names == ("0", "1")
    assert dataset.feature_names == ("x0", "x1")
    assert np.isfinite(dataset.x).all()


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_arrays(name: str) -> None:
    first, second = generate(name, seed=7), generate(name, seed=7)
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.y, second.y)


@pytest.mark.parametrize("name", NAMES)
def test_different_seeds_differ(name: str) -> None:
    assert not np.array_equal(generate(name, seed=1).x, generate(name, seed=2).x)


@pytest.mark.parametrize("name", NAMES)
def test_uses_only_the_injected_rng(name: str) -> None:
    np.random.seed(0)
    first = generate(name, seed=3)
    np.random.seed(1)
    second = generate(name, seed=3)
    np.testing.assert_array_equal(first.x, second.x)


@pytest.mark.parametrize("name", NAMES)
def test_noise_zero_is_deterministic_and_spread_grows_with_noise(name: str) -> None:
    np.testing.assert_array_equal(generate(name, seed=1, noise=0.0).x,
                                  generate(name, seed=2, noise=0.0).x)
    clean = generate(name, noise=0.0).x
    assert (np.abs(generate(name, noise=0.5).x - clean).mean()
            > np.abs(generate(name, noise=0.05).x - clean).mean())


@pytest.mark.parametrize("name", MULTICLASS)
@pytest.mark.parametrize("classes", [3, 5])
def test_classes_respected(name: str, classes: int) -> None:
    dataset = generate(name, n_samples=100, classes=classes)
    assert dataset.task == "multiclass" and dataset.n_classes == classes
    counts = np.bincount(dataset.y, minlength=classes)
    assert len(counts) == classes and counts.max() - counts.min() <= 1
    assert dataset.class_names == tuple(str(label) for label in range(classes))


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(MULTICLASS)))
def test_binary_sets_ignore_classes(name: str) -> None:
    assert generate(name, classes=5).n_classes == 2
    assert generate(name, classes=1).n_classes == 2


def test_xor_classic_four_points() -> None:
    dataset = generate("xor", n_samples=4, noise=0.0)
    np.testing.assert_array_equal(dataset.x, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(dataset.y, [0, 1, 1, 0])


def test_spiral_radius_grows_along_each_arm() -> None:
    dataset = generate("spirals", n_samples=60, noise=0.0, classes=3)
    for label in range(3):
        radius = np.linalg.norm(dataset.x[dataset.y == label], axis=1)
        assert (np.diff(radius) > 0).all()


def test_circles_radii() -> None:
    dataset = generate("circles", n_samples=40, noise=0.0)
    radius = np.linalg.norm(dataset.x, axis=1)
    np.testing.assert_allclose(radius[dataset.y == 0], 1.0)
    assert (radius[dataset.y == 1] < 1.0).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("options", "field"), [
    ({"n_samples": 3}, "data.n_samples"),
    ({"n_samples": 100.0}, "data.n_samples"),
    ({"n_samples": True}, "data.n_samples"),
    ({"noise": -0.1}, "data.noise"),
    ({"noise": float("nan")}, "data.noise"),
    ({"noise": "0.1"}, "data.noise"),
])
def test_bad_numbers_raise_spec_error(name: str, options: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        generate(name, **options)
    assert caught.value.field == field


@pytest.mark.parametrize("name", MULTICLASS)
@pytest.mark.parametrize(("options", "field"), [
    ({"classes": 1}, "data.classes"),
    ({"classes": 2.5}, "data.classes"),
    ({"classes": 10, "n_samples": 6}, "data.n_samples"),
])
def test_bad_classes_raise_spec_error(name: str, options: dict, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        generate(name, **options)
    assert caught.value.field == field
