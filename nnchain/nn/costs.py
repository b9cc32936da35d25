"""Costs: the MEAN over the batch of a per-sample loss, with its gradient.

``value(pred, target) -> float`` and ``grad(pred, target) -> dL/dpred`` for
pred, target: (n, k). Because the cost is a batch mean, every gradient carries a 1/n.

- mse: per-sample 1/2 sum_j (p_j - y_j)^2, so grad = (p - y) / n.
- bce: per-sample -sum_j [y_j log p_j + (1 - y_j) log(1 - p_j)] (k independent outputs).
- cross_entropy: per-sample -sum_j y_j log p_j (p a distribution over k classes).

Logarithms clip p to [eps, 1 - eps], eps the dtype's machine epsilon; the fused output
heads in ``heads.py`` work from the pre-activation z and need no clipping.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np


def _clip(p: np.ndarray) -> np.ndarray:
    eps = np.finfo(p.dtype).eps
    return np.clip(p, eps, 1 - eps)


def mse_value(p: np.ndarray, y: np.ndarray) -> float:
    diff = p - y
    return float(np.vdot(diff, diff)) / (2 * len(p))


def mse_grad(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    diff = p - y
    diff *= 1 / len(p)
    return diff


def bce_value(p: np.ndarray, y: np.ndarray) -> float:
    p = _clip(p)
    return -float(np.vdot(y, np.log(p)) + np.vdot(1 - y, np.log1p(-p))) / len(p)


def bce_grad(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dp = (p - y) / (p (1 - p)) / n."""
    p = _clip(p)
    return (p - y) / (p * (1 - p) * len(p))


def cross_entropy_value(p: np.ndarray, y: np.ndarray) -> float:
    return -float(np.vdot(y, np.log(_clip(p)))) / len(p)


def cross_entropy_grad(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dL/dp = -y / p / n."""
    return y / (_clip(p) * -len(p))


class Cost:
    """A batch-mean cost; ``value`` and ``grad`` are the pure functions above."""

    name: ClassVar[str]

    def value(self, pred: np.ndarray, target: np.ndarray) -> float:
        raise NotImplementedError

    def grad(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MSE(Cost):
    name = "mse"
    value = staticmethod(mse_value)
    grad = staticmethod(mse_grad)


class BCE(Cost):
    name = "bce"
    value = staticmethod(bce_value)
    grad = staticmethod(bce_grad)


class CrossEntropy(Cost):
    name = "cross_entropy"
    value = staticmethod(cross_entropy_value)
    grad = staticmethod(cross_entropy_grad)


COSTS: dict[str, type[Cost]] = {cls.name: cls for cls in (MSE, BCE, CrossEntropy)}
