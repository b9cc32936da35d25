"""The fully connected layer: z = x @ W + b, batch first.

Shapes: x: (n, d_in), W: (d_in, d_out), b: (d_out,), z: (n, d_out).
Backward, with dz = dL/dz: dW = x^T dz, db = sum over the batch of dz, dx = dz W^T.
"""

from __future__ import annotations

import numpy as np

from nnchain.errors import NnchainError
from nnchain.nn import fastmath
from nnchain.nn.init import INITIALIZERS
from nnchain.nn.registry import lookup


def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray,
                  out: np.ndarray | None = None) -> np.ndarray:
    """z = x @ W + b: (n, d_out), written into ``out`` when given."""
    z = np.dot(x, w, out=out)
    z += b
    return z


def weight_grad(x: np.ndarray, dz: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dW = x^T dz: (d_in, d_out), written into ``out`` when given."""
    return np.dot(x.T, dz, out=out)


def bias_grad(dz: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """db = dz summed over the batch: (d_out,), written into ``out`` when given."""
    return fastmath.column_sums(dz, out=out)


def input_grad(dz: np.ndarray, w: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dx = dz W^T: (n, d_in), written into ``out`` when given."""
    return fastmath.matmul_transposed(dz, w, out=out)


class Dense:
    """A fully connected layer owning ``params`` and ``grads`` ({"W", "b"}, same shapes).

    ``forward`` caches its input x; ``backward`` accumulates dW, db into ``grads`` and
    returns dx. ``zero_grad`` resets the accumulators.
    """

    def __init__(self, d_in: int, d_out: int, *, init: str, rng: np.random.Generator,
                 dtype: np.dtype | type = np.float64) -> None:
        dtype = np.dtype(dtype)
        initializer = lookup(INITIALIZERS, init, "init")
        self.params: dict[str, np.ndarray] = {
            "W": initializer(d_in, d_out, rng, dtype),
            "b": np.zeros(d_out, dtype=dtype),
        }
        self.grads: dict[str, np.ndarray] = {
            "W": np.zeros((d_in, d_out), dtype=dtype),
            "b": np.zeros(d_out, dtype=dtype),
        }
        self.input: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(d_in, d_out)."""
        return self.params["W"].shape

    def forward(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """z = x @ W + b for x: (n, d_in) -> (n, d_out), into ``out`` if given; caches x
        (not a copy)."""
        self.input = x
        return dense_forward(x, self.params["W"], self.params["b"], out)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Add dW, db of dout = dL/dz: (n, d_out) to ``grads``; return dx: (n, d_in)."""
        self.accumulate_grads(dout)
        return self.input_grad(dout)

    def input_grad(self, dout: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """dx = dout W^T: (n, d_in), into ``out`` if given; grads untouched."""
        return input_grad(dout, self.params["W"], out)

    def accumulate_grads(self, dout: np.ndarray, *, overwrite: bool = False) -> None:
        """Add (or, with ``overwrite``, write) dW and db of dout into ``grads``.

        Overwriting saves zero_grad's memset and a temporary when the caller wants the
        gradient of one batch; the network's training step uses it.
        """
        x = self.input
        if x is None:
            raise NnchainError("Dense.backward called before forward")
        grads = self.grads
        if overwrite:
            weight_grad(x, dout, out=grads["W"])
            bias_grad(dout, out=grads["b"])
        else:
            grads["W"] += weight_grad(x, dout)
            grads["b"] += bias_grad(dout)

    def zero_grad(self) -> None:
        for grad in self.grads.values():
            grad.fill(0)

    def __repr__(self) -> str:
        d_in, d_out = self.shape
        return f"Dense({d_in}, {d_out}, dtype={self.params['W'].dtype})"
