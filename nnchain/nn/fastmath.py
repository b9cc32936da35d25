"""Numpy idioms that take numpy's fast paths, measured on small batches.

Each helper computes the textbook expression in its docstring; it exists because that
expression, written directly, runs several times slower for the narrow arrays of small
networks (a 512x2 row max takes ~18 us as ``z.max(axis=1)``, ~1 us as a global max).
Products go through ``np.dot``, whose call overhead is below ``np.matmul``'s; with ``out``
it also refuses a result of another dtype rather than upcasting.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Transposed right-hand operands up to this many elements are copied to C order first:
# BLAS runs ``dz @ W.T`` on a small W markedly slower than on a contiguous copy.
SMALL_MATRIX = 16384
# ReLU inputs up to this many elements get a cached zeros array of their shape (16 shapes
# are kept). Large ones are never written, so the kernel backs them with its shared zero
# page: they cost address space, not memory.
ZEROS_LIMIT = 1 << 22


@lru_cache(maxsize=64)
def ones(n: int, dtype: np.dtype) -> np.ndarray:
    """Read-only vector of ``n`` ones, shared between calls."""
    vector = np.ones(n, dtype=dtype)
    vector.flags.writeable = False
    return vector


@lru_cache(maxsize=16)
def zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Read-only zeros, shared between calls (``np.maximum`` against an array is vectorised)."""
    array = np.zeros(shape, dtype=dtype)
    array.flags.writeable = False
    return array


def column_sums(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a.sum(axis=0)`` for a: (n, d) -> (d,), as a BLAS product with a ones vector."""
    return np.dot(ones(a.shape[0], a.dtype), a, out=out)


def row_sums(a: np.ndarray) -> np.ndarray:
    """``a.sum(axis=1)`` for a: (n, k) -> (n,), as a BLAS product with a ones vector."""
    return np.dot(a, ones(a.shape[1], a.dtype))


def matmul_transposed(a: np.ndarray, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ w.T`` for a: (n, d_out), w: (d_in, d_out) -> (n, d_in)."""
    if w.size <= SMALL_MATRIX:
        return np.dot(a, np.ascontiguousarray(w.T), out=out)
    return np.dot(a, w.T, out=out)


def relu(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.maximum(z, 0)``, against a cached zeros array: the scalar form takes a loop
    that is not vectorised and costs 2-3 times as long."""
    if z.size <= ZEROS_LIMIT:
        return np.maximum(z, zeros(z.shape, z.dtype), out=out)
    return np.maximum(z, 0, out=out)


def softmax_shift(z: np.ndarray) -> np.ndarray | float:
    """A shift s with ``exp(z - s)`` free of overflow and of all-zero rows.

    The per-row max is the textbook shift. When the whole batch spans less than half the
    dtype's exponent range, the global max does the same job (every row keeps an entry
    ``>= exp(-range)``, a normal number) at a fraction of the cost; NaN or inf fall back
    to the per-row max.
    """
    high = z.max()
    if high - z.min() <= _SAFE_SPAN[z.dtype.char]:
        return high
    return z.max(axis=1, keepdims=True)


_SAFE_SPAN = {
    "f": float(-np.log(np.finfo(np.float32).tiny) / 2),
    "d": float(-np.log(np.finfo(np.float64).tiny) / 2),
}
