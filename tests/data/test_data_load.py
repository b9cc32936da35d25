from __future__ import annotations

import numpy as np
import pytest

from nnchain.data import BUNDLED, DATASET_NAMES, GENERATORS, Dataset, describe, load_dataset
from nnchain.errors import SpecError


def test_names_are_sorted_union() -> None:
    assert DATASET_NAMES == tuple(sorted([*GENERATORS, *BUNDLED]))
    assert set(GENERATORS) == {"xor", "spirals", "moons", "circles", "blobs"}
    assert set(BUNDLED) == {"digits", "iris", "wine", "breast_cancer"}


def test_generator_options_pass_through() -> None:
    dataset = load_dataset(name="spirals", n_samples=60, noise=0.0, classes=4,
                           rng=np.random.default_rng(0))
    assert dataset.x.shape == (60, 2) and dataset.n_classes == 4


@pytest.mark.parametrize("options", [{}, {"name": "xor", "path": "a.csv"}])
def test_exactly_one_source(options: dict) -> None:
    with pytest.raises(SpecError) as caught:
        load_dataset(rng=np.random.default_rng(0), **options)
    assert caught.value.field == "data"


def test_unknown_name_suggests() -> None:
    with pytest.raises(SpecError) as caught:
        load_dataset(name="spiral", rng=np.random.default_rng(0))
    assert caught.value.field == "data.name"
    assert caught.value.message == (f"must be one of {', '.join(DATASET_NAMES)}, got 'spiral'; "
                                    "did you mean 'spirals'?")


def test_unknown_name_without_suggestion() -> None:
    with pytest.raises(SpecError) as caught:
        load_dataset(name="zzzz", rng=np.random.default_rng(0))
    assert "did you mean" not in caught.value.message


def test_target_refused_for_named_sets() -> None:
    with pytest.raises(SpecError) as caught:
        load_dataset(name="iris", target="label", rng=np.random.default_rng(0))
    assert caught.value.field == "data.target"


def test_spec_error_pickles() -> None:
    import pickle
    with pytest.raises(SpecError) as caught:
        load_dataset(name="spiral", rng=np.random.default_rng(0))
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.field, copy.message) == (caught.value.field, caught.value.message)


def test_describe() -> None:
    summary = describe(load_dataset(name="blobs", n_samples=10, classes=3,
                                    rng=np.random.default_rng(0)))
    assert summary == {"n_samples": 10, "n_features": 2, "task": "multiclass", "n_classes": 3,
                       "class_counts": {"0": 4, "1": 3, "2": 3}}


def test_dataset_refuses_inconsistent_arrays() -> None:
    with pytest.raises(ValueError):
        Dataset(x=np.zeros((3, 2)), y=np.zeros(2, dtype=np.int64), task="binary", n_classes=2,
                feature_names=("a", "b"), class_names=("0", "1"))
    with pytest.raises(ValueError):
        Dataset(x=np.zeros((2, 1)), y=np.array([0, 5]), task="binary", n_classes=2,
                feature_names=("a",), class_names=("0", "1"))
