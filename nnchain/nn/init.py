"""Weight initialisers: ``fn(d_in, d_out, rng, dtype) -> W: (d_in, d_out)``; biases start at zero.

Glorot (Xavier) keeps the variance of activations and gradients roughly constant through
tanh/sigmoid layers: Var(W) = 2 / (d_in + d_out). He keeps it through ReLU layers, which
zero half their inputs: Var(W) = 2 / d_in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Initializer = Callable[[int, int, np.random.Generator, np.dtype], np.ndarray]


def _uniform(limit: float, d_in: int, d_out: int, rng: np.random.Generator,
             dtype: np.dtype) -> np.ndarray:
    """U(-limit, limit) drawn directly in ``dtype``."""
    w = rng.random((d_in, d_out), dtype=dtype)
    w *= 2 * limit
    w -= limit
    return w


def _normal(std: float, d_in: int, d_out: int, rng: np.random.Generator,
            dtype: np.dtype) -> np.ndarray:
    """N(0, std^2) drawn directly in ``dtype``."""
    w = rng.standard_normal((d_in, d_out), dtype=dtype)
    w *= std
    return w


def glorot_uniform(d_in: int, d_out: int, rng: np.random.Generator,
                   dtype: np.dtype = np.float64) -> np.ndarray:
    """U(-sqrt(6 / (d_in + d_out)), +sqrt(6 / (d_in + d_out)))."""
    return _uniform(math.sqrt(6.0 / (d_in + d_out)), d_in, d_out, rng, dtype)


def glorot_normal(d_in: int, d_out: int, rng: np.random.Generator,
                  dtype: np.dtype = np.float64) -> np.ndarray:
    """N(0, 2 / (d_in + d_out))."""
    return _normal(math.sqrt(2.0 / (d_in + d_out)), d_in, d_out, rng, dtype)


def he_normal(d_in: int, d_out: int, rng: np.random.Generator,
              dtype: np.dtype = np.float64) -> np.ndarray:
    """N(0, 2 / d_in)."""
    return _normal(math.sqrt(2.0 / d_in), d_in, d_out, rng, dtype)


def he_uniform(d_in: int, d_out: int, rng: np.random.Generator,
               dtype: np.dtype = np.float64) -> np.ndarray:
    """U(-sqrt(6 / d_in), +sqrt(6 / d_in))."""
    return _uniform(math.sqrt(6.0 / d_in), d_in, d_out, rng, dtype)


def small_normal(d_in: int, d_out: int, rng: np.random.Generator,
                 dtype: np.dtype = np.float64) -> np.ndarray:
    """N(0, 0.01^2), whatever the layer size."""
    return _normal(0.01, d_in, d_out, rng, dtype)


INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "small_normal": small_normal,
    # aliases
    "xavier_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "he": he_normal,
}
