"""Seeded two-dimensional toy problems, drawn only from the injected generator.

Every generator takes the same keywords (n_samples, noise, classes, rng) so `load_dataset`
calls them alike; the binary ones (xor, moons, circles) ignore `classes`. The same rng state
gives identical arrays. Rows come grouped by class; `split` shuffles.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nnchain.data.checks import check_int, check_noise
from nnchain.data.dataset import Dataset, classification_task
from nnchain.errors import SpecError

MIN_SAMPLES = 4
SPIRAL_TURNS = 1.0
CIRCLES_FACTOR = 0.5
FEATURE_NAMES = ("x0", "x1")


def xor(*, n_samples: int = 500, noise: float = 0.1, classes: int = 2,
        rng: np.random.Generator) -> Dataset:
    """The corners (0,0), (0,1), (1,0), (1,1) cycled to n_samples rows, each jittered.

    Label = x0 XOR x1 of the corner. Gaussian jitter has std `noise`; with noise 0 and
    n_samples 4 this is the classic four-point problem. x: (n, 2), y: (n,).
    """
    n_samples, noise = _check(n_samples, noise)
    corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    corner_labels = np.array([0, 1, 1, 0], dtype=np.int64)
    which = np.arange(n_samples) % 4
    x = corners[which] + noise * rng.standard_normal((n_samples, 2))
    return _binary(x, corner_labels[which])


def spirals(*, n_samples: int = 500, noise: float = 0.1, classes: int = 2,
            rng: np.random.Generator) -> Dataset:
    """`classes` interleaved arms whose radius grows from 0 to 1 with the angle.

    Arm j starts at angle 2*pi*j/classes and turns SPIRAL_TURNS times; arms share
    n_samples as evenly as possible. Gaussian noise of std `noise` on both coordinates.
    x: (n, 2), y: (n,) in 0..classes-1.
    """
    n_samples, noise, classes = _check_classes(n_samples, noise, classes)
    sizes = _class_sizes(n_samples, classes)
    y = np.repeat(np.arange(classes, dtype=np.int64), sizes)
    # position along each arm in (0, 1): arange within the arm, centred in its slot
    along = (np.arange(n_samples) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 0.5)
    along = along / np.repeat(sizes, sizes)
    angle = 2 * np.pi * (y / classes + SPIRAL_TURNS * along)
    x = along[:, None] * np.column_stack([np.cos(angle), np.sin(angle)])
    x = x + noise * rng.standard_normal((n_samples, 2))
    return _classes(x, y, classes)


def moons(*, n_samples: int = 500, noise: float = 0.1, classes: int = 2,
          rng: np.random.Generator) -> Dataset:
    """Two interleaving half circles of radius 1 (as scikit-learn's make_moons).

    Class 0 is the upper arc centred at (0, 0), class 1 the lower arc centred at (1, 0.5).
    Gaussian noise of std `noise`. x: (n, 2), y: (n,).
    """
    n_samples, noise = _check(n_samples, noise)
    n_upper = n_samples // 2
    upper = np.linspace(0, np.pi, n_upper)
    lower = np.linspace(0, np.pi, n_samples - n_upper)
    x = np.concatenate([
        np.column_stack([np.cos(upper), np.sin(upper)]),
        np.column_stack([1 - np.cos(lower), 0.5 - np.sin(lower)]),
    ])
    x = x + noise * rng.standard_normal((n_samples, 2))
    return _binary(x, np.repeat(np.array([0, 1], dtype=np.int64), [n_upper, n_samples - n_upper]))


def circles(*, n_samples: int = 500, noise: float = 0.1, classes: int = 2,
            rng: np.random.Generator) -> Dataset:
    """Two concentric circles: class 0 of radius 1, class 1 of radius CIRCLES_FACTOR.

    Points evenly spaced in angle; gaussian noise of std `noise`. x: (n, 2), y: (n,).
    """
    n_samples, noise = _check(n_samples, noise)
    n_outer = n_samples // 2
    outer = np.linspace(0, 2 * np.pi, n_outer, endpoint=False)
    inner = np.linspace(0, 2 * np.pi, n_samples - n_outer, endpoint=False)
    x = np.concatenate([
        np.column_stack([np.cos(outer), np.sin(outer)]),
        CIRCLES_FACTOR * np.column_stack([np.cos(inner), np.sin(inner)]),
    ])
    x = x + noise * rng.standard_normal((n_samples, 2))
    return _binary(x, np.repeat(np.array([0, 1], dtype=np.int64), [n_outer, n_samples - n_outer]))


def blobs(*, n_samples: int = 500, noise: float = 0.1, classes: int = 2,
          rng: np.random.Generator) -> Dataset:
    """`classes` isotropic gaussian blobs of std `noise`, centred evenly on the unit circle.

    Fixed centres keep every class apart for any `classes`; the rng draws only the spread.
    x: (n, 2), y: (n,) in 0..classes-1.
    """
    n_samples, noise, classes = _check_classes(n_samples, noise, classes)
    y = np.repeat(np.arange(classes, dtype=np.int64), _class_sizes(n_samples, classes))
    angle = 2 * np.pi * np.arange(classes) / classes
    centres = np.column_stack([np.cos(angle), np.sin(angle)])
    x = centres[y] + noise * rng.standard_normal((n_samples, 2))
    return _classes(x, y, classes)


GENERATORS: dict[str, Callable[..., Dataset]] = {
    "blobs": blobs,
    "circles": circles,
    "moons": moons,
    "spirals": spirals,
    "xor": xor,
}


def _check(n_samples: object, noise: object) -> tuple[int, float]:
    return check_int(n_samples, MIN_SAMPLES, "data.n_samples"), check_noise(noise)


def _check_classes(n_samples: object, noise: object, classes: object) -> tuple[int, float, int]:
    n_samples, noise = _check(n_samples, noise)
    classes = check_int(classes, 2, "data.classes")
    if n_samples < classes:
        raise SpecError("data.n_samples", f"must be >= classes ({classes}) so every class has "
                                          f"a sample, got {n_samples}")
    return n_samples, noise, classes


def _class_sizes(n_samples: int, classes: int) -> np.ndarray:
    """Rows per class, as even as possible: (classes,) int summing to n_samples."""
    return n_samples // classes + (np.arange(classes) < n_samples % classes)


def _binary(x: np.ndarray, y: np.ndarray) -> Dataset:
    return _classes(x, y, 2)


def _classes(x: np.ndarray, y: np.ndarray, classes: int) -> Dataset:
    return Dataset(x=np.ascontiguousarray(x, dtype=np.float64), y=y,
                   task=classification_task(classes), n_classes=classes,
                   feature_names=FEATURE_NAMES,
                   class_names=tuple(str(label) for label in range(classes)))
