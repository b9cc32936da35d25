"""Small real datasets that ship inside scikit-learn, so loading them needs no download.

scikit-learn is imported inside each loader, keeping `import nnchain.data` numpy-only.
These sets are fixed: they take no arguments, and `load_dataset` ignores n_samples,
noise and classes for them. Features are raw (digits are pixel intensities 0..16);
`standardize` scales them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnchain.data.dataset import Dataset, classification_task


def digits() -> Dataset:
    """8x8 handwritten digits: x (1797, 64), 10 classes '0'..'9'."""
    from sklearn.datasets import load_digits
    return _from_bunch(load_digits())


def iris() -> Dataset:
    """Iris flowers: x (150, 4), 3 classes (setosa, versicolor, virginica)."""
    from sklearn.datasets import load_iris
    return _from_bunch(load_iris())


def wine() -> Dataset:
    """Wine cultivars: x (178, 13), 3 classes (class_0, class_1, class_2)."""
    from sklearn.datasets import load_wine
    return _from_bunch(load_wine())


def breast_cancer() -> Dataset:
    """Wisconsin breast cancer: x (569, 30), binary (0 = malignant, 1 = benign)."""
    from sklearn.datasets import load_breast_cancer
    return _from_bunch(load_breast_cancer())


BUNDLED: dict[str, Callable[[], Dataset]] = {
    "breast_cancer": breast_cancer,
    "digits": digits,
    "iris": iris,
    "wine": wine,
}


def _from_bunch(bunch: object) -> Dataset:
    """scikit-learn's Bunch (data, target, feature_names, target_names) as a Dataset."""
    class_names = tuple(str(name) for name in bunch.target_names)
    return Dataset(x=np.ascontiguousarray(bunch.data, dtype=np.float64),
                   y=np.asarray(bunch.target, dtype=np.int64),
                   task=classification_task(len(class_names)), n_classes=len(class_names),
                   feature_names=tuple(str(name) for name in bunch.feature_names),
                   class_names=class_names)
