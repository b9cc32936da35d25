"""Element-wise activations a = f(z) and their backward passes dz = f'(z) * da.

Each backward pure function takes the cached *output* a (every derivative here can be
written in terms of a) and the upstream gradient da: (n, d), and returns dz: a new array,
or ``out`` when given. da is never written into unless the caller passes ``out=da``.
Forward functions likewise accept ``out`` (which may be z itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np

from nnchain.errors import NnchainError
from nnchain.nn import fastmath

LEAKY_SLOPE = 0.01


def identity(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return z
    np.copyto(out, z)
    return out


def identity_backward(a: np.ndarray, da: np.ndarray,
                      out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return da.copy()
    np.copyto(out, da)
    return out


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-z)), as 0.5 + 0.5 tanh(z/2): no overflow for large |z|."""
    a = np.multiply(z, 0.5, out=out)
    np.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def sigmoid_backward(a: np.ndarray, da: np.ndarray,
                     out: np.ndarray | None = None) -> np.ndarray:
    """dz = da * a (1 - a)."""
    return np.multiply(da, a * (1 - a), out=out)


def tanh(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return np.tanh(z, out=out)


def tanh_backward(a: np.ndarray, da: np.ndarray,
                  out: np.ndarray | None = None) -> np.ndarray:
    """dz = da * (1 - a^2)."""
    return np.multiply(da, 1 - a * a, out=out)


def relu(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    return fastmath.relu(z, out=out)


def relu_backward(a: np.ndarray, da: np.ndarray,
                  out: np.ndarray | None = None) -> np.ndarray:
    """dz = da where z > 0 (equivalently a > 0), else 0; the kink at 0 gets slope 0."""
    return np.multiply(da, a > 0, out=out)


def leaky_relu(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """z for z > 0, 0.01 z otherwise (max(z, 0.01 z) since the slope is below 1)."""
    return np.maximum(z, z * LEAKY_SLOPE, out=out)


def leaky_relu_backward(a: np.ndarray, da: np.ndarray,
                        out: np.ndarray | None = None) -> np.ndarray:
    """dz = da where a > 0, else 0.01 da."""
    slope = np.where(a > 0, a.dtype.type(1), a.dtype.type(LEAKY_SLOPE))
    return np.multiply(da, slope, out=out)


def softmax(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Row-wise exp(z) / sum exp(z) for z: (n, k), shifted for stability."""
    e = np.subtract(z, fastmath.softmax_shift(z), out=out)
    np.exp(e, out=e)
    e /= fastmath.row_sums(e)[:, None]
    return e


def softmax_backward(p: np.ndarray, da: np.ndarray,
                     out: np.ndarray | None = None) -> np.ndarray:
    """dz = p * (da - sum_j da_j p_j) row by row (the softmax Jacobian applied to da)."""
    dz = np.multiply(da, p, out=out)
    dz -= p * fastmath.row_sums(dz)[:, None]
    return dz


class Activation:
    """A stateful wrapper: ``forward`` caches the output a, ``backward`` uses it.

    Subclasses set ``name``, ``function`` and ``derivative`` (the pure functions above).
    """

    name: ClassVar[str]
    function: ClassVar[Callable[..., np.ndarray]]
    derivative: ClassVar[Callable[..., np.ndarray]]

    def __init__(self) -> None:
        self.output: np.ndarray | None = None

    def forward(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """a = f(z), z: (n, d) -> a: (n, d), into ``out`` if given; caches a."""
        a = self.function(z, out)
        self.output = a
        return a

    def backward(self, da: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """dL/dz from dL/da: (n, d), using the output cached by the last ``forward``.

        A new array unless ``out`` is given; da itself is written only if ``out`` is da.
        """
        if self.output is None:
            raise NnchainError(f"{self.name}.backward called before forward")
        return self.derivative(self.output, da, out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Identity(Activation):
    name = "identity"
    function = staticmethod(identity)
    derivative = staticmethod(identity_backward)


class Sigmoid(Activation):
    name = "sigmoid"
    function = staticmethod(sigmoid)
    derivative = staticmethod(sigmoid_backward)


class Tanh(Activation):
    name = "tanh"
    function = staticmethod(tanh)
    derivative = staticmethod(tanh_backward)


class ReLU(Activation):
    name = "relu"
    function = staticmethod(relu)
    derivative = staticmethod(relu_backward)


class LeakyReLU(Activation):
    name = "leaky_relu"
    function = staticmethod(leaky_relu)
    derivative = staticmethod(leaky_relu_backward)


class Softmax(Activation):
    """Row-wise softmax; its backward applies the full (k, k) Jacobian per row."""

    name = "softmax"
    function = staticmethod(softmax)
    derivative = staticmethod(softmax_backward)


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls for cls in (Identity, Sigmoid, Tanh, ReLU, LeakyReLU, Softmax)
}

# Activations whose units can "die" (output <= 0 for every input); diagnostics track them.
RECTIFIERS = frozenset({"relu", "leaky_relu"})
