"""Output heads: the last activation and the cost, seen from the pre-activation z.

A head turns z: (n, k) into the network's output and, given targets y: (n, k), into the
cost and dL/dz. ``ChainedHead`` applies the chain rule through any activation and cost;
the two fused heads skip the activation Jacobian where it cancels:

- ``SigmoidBCE``: sigmoid output + binary cross-entropy, dL/dz = (sigmoid(z) - y) / n.
- ``SoftmaxCrossEntropy``: softmax output + cross-entropy, dL/dz = (softmax(z) - y) / n.

Both compute the cost from z (softplus / log-sum-exp), so no log of a rounded 0 or 1.
"""

from __future__ import annotations

import numpy as np

from nnchain.nn import fastmath
from nnchain.nn.activations import Activation, sigmoid, softmax
from nnchain.nn.costs import Cost


def softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)), without overflow."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def sigmoid_bce_value(z: np.ndarray, y: np.ndarray) -> float:
    """Batch-mean BCE of p = sigmoid(z): per element -[y log p + (1-y) log(1-p)] =
    softplus(z) - y z."""
    return float(softplus(z).sum() - np.vdot(y, z)) / len(z)


def exp_shifted(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(shifted, e, s): shifted = z - shift, e = exp(shifted), s = row sums of e: (n,).

    softmax(z) = e / s[:, None] and log softmax(z) = shifted - log(s)[:, None].
    """
    shifted = z - fastmath.softmax_shift(z)
    e = np.exp(shifted)
    return shifted, e, fastmath.row_sums(e)


def softmax_ce_from_parts(shifted: np.ndarray, s: np.ndarray, y: np.ndarray) -> float:
    """Batch mean of -sum_j y_j log softmax(z)_j = log(s) - sum_j y_j shifted_j, for
    target rows y that sum to 1."""
    return float(np.log(s).sum() - np.vdot(y, shifted)) / len(y)


def softmax_ce_value(z: np.ndarray, y: np.ndarray) -> float:
    shifted, _, s = exp_shifted(z)
    return softmax_ce_from_parts(shifted, s, y)


def _batch_mean_error(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(p - y) / n: the fused dL/dz."""
    dz = p - y
    dz *= 1 / len(p)
    return dz


class Head:
    """Output activation + cost. ``output`` after ``loss_and_grad`` holds the predictions."""

    activation_name: str
    cost_name: str

    def __init__(self) -> None:
        self.output: np.ndarray | None = None

    def predict(self, z: np.ndarray) -> np.ndarray:
        """The network's output for pre-activations z: (n, k); nothing cached."""
        raise NotImplementedError

    def value(self, z: np.ndarray, y: np.ndarray) -> float:
        """The cost at z against targets y; nothing cached."""
        raise NotImplementedError

    def loss_and_grad(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """(cost, dL/dz: (n, k)); caches the output."""
        raise NotImplementedError


class ChainedHead(Head):
    """Any activation then any cost: dL/dz = activation.backward(cost.grad(a, y))."""

    def __init__(self, activation: Activation, cost: Cost) -> None:
        super().__init__()
        self.activation = activation
        self.cost = cost
        self.activation_name = activation.name
        self.cost_name = cost.name

    def predict(self, z: np.ndarray) -> np.ndarray:
        return self.activation.function(z)

    def value(self, z: np.ndarray, y: np.ndarray) -> float:
        return self.cost.value(self.activation.function(z), y)

    def loss_and_grad(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        a = self.activation.forward(z)
        self.output = a
        return self.cost.value(a, y), self.activation.backward(self.cost.grad(a, y))


class SigmoidBCE(Head):
    """Fused sigmoid output + binary cross-entropy: dL/dz = (sigmoid(z) - y) / n.

    The sigmoid's derivative p (1 - p) cancels the BCE's 1 / (p (1 - p)).
    """

    activation_name = "sigmoid"
    cost_name = "bce"

    def predict(self, z: np.ndarray) -> np.ndarray:
        return sigmoid(z)

    def value(self, z: np.ndarray, y: np.ndarray) -> float:
        return sigmoid_bce_value(z, y)

    def loss_and_grad(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        p = sigmoid(z)
        self.output = p
        return sigmoid_bce_value(z, y), _batch_mean_error(p, y)


class SoftmaxCrossEntropy(Head):
    """Fused softmax output + cross-entropy: dL/dz = (softmax(z) - y) / n.

    Targets are distributions (each row sums to 1: one-hot or soft labels). Then the
    softmax Jacobian diag(p) - p p^T applied to -y / p gives p - y, and the cost is
    log(sum_j exp z_j) - sum_j y_j z_j per sample.
    """

    activation_name = "softmax"
    cost_name = "cross_entropy"

    def predict(self, z: np.ndarray) -> np.ndarray:
        return softmax(z)

    def value(self, z: np.ndarray, y: np.ndarray) -> float:
        return softmax_ce_value(z, y)

    def loss_and_grad(self, z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        shifted, e, s = exp_shifted(z)
        cost = softmax_ce_from_parts(shifted, s, y)
        e /= s[:, None]
        self.output = e
        return cost, _batch_mean_error(e, y)


FUSED_HEADS: dict[tuple[str, str], type[Head]] = {
    ("sigmoid", "bce"): SigmoidBCE,
    ("softmax", "cross_entropy"): SoftmaxCrossEntropy,
}


def make_head(activation: Activation, cost: Cost) -> Head:
    """The fused head for (sigmoid, bce) and (softmax, cross_entropy), else the chain."""
    fused = FUSED_HEADS.get((activation.name, cost.name))
    return fused() if fused is not None else ChainedHead(activation, cost)
