"""Gradient checking: analytic gradients against central differences.

numeric_i = (L(theta + eps e_i) - L(theta - eps e_i)) / (2 eps), compared entry by entry
with the relative error |a - n| / max(|a|, |n|, floor). Use float64: in float32 the
rounding of L swamps differences of size eps.

The floor keeps numerical noise from passing for a bug. Each evaluation of L is rounded
by about u |L| (u the machine epsilon), so the numeric gradient carries an absolute error
of about u |L| / eps whatever the true gradient is (measured on every example and workflow
network: at most 3x that). On a cost near 1 a gradient of 1e-8 is then off by up to a
few percent from rounding alone, and its relative error says nothing about the code.
``noise_floor`` is the size below which the numeric gradient cannot be trusted to the
tolerance, with a margin of 10: 10 u |L| / (eps tol). Smaller gradients are judged
against that size instead of their own, that is by their absolute error; a wrong
derivative still shows on the large ones.

Layers, activations and costs are checked through a scalar L: a layer or activation
output is contracted with a fixed random upstream gradient g (L = sum(out * g), so
dL/dout = g); a cost or an output head is its own L.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nnchain.errors import GradientCheckError
from nnchain.nn.activations import Activation
from nnchain.nn.costs import Cost
from nnchain.nn.heads import Head
from nnchain.nn.layers import Dense
from nnchain.nn.network import Network

TINY = 1e-12  # floor when no loss scale is known (components checked in isolation)
DEFAULT_TOLERANCE = 1e-5  # largest relative error that passes (``nnchain gradcheck``)
DEFAULT_EPS = 1e-6  # central-difference step
NOISE_MARGIN = 10.0  # noise_floor: how far above the numeric noise a gradient is judged


@dataclass(frozen=True)
class GradReport:
    """The worst entry of one parameter's gradient check."""

    param: str
    rel_error: float
    index: tuple[int, ...]
    analytic: float
    numeric: float
    floor: float = TINY  # the denominator's floor (``noise_floor``)


def relative_error(analytic: np.ndarray, numeric: np.ndarray,
                   floor: float = TINY) -> np.ndarray:
    """|a - n| / max(|a|, |n|, floor), entry by entry."""
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
    return np.abs(analytic - numeric) / scale


def noise_floor(loss_value: float, *, eps: float = DEFAULT_EPS,
                tolerance: float = DEFAULT_TOLERANCE, dtype: np.dtype = np.float64) -> float:
    """The gradient size below which central differences of a loss of size ``loss_value``,
    computed in ``dtype``, are not accurate to ``tolerance``: NOISE_MARGIN u |L| / (eps tol)."""
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    rounding = float(np.finfo(dtype).eps) * abs(float(loss_value)) / eps
    return max(NOISE_MARGIN * rounding / tolerance, TINY)


def numeric_gradient(loss: Callable[[], float], array: np.ndarray,
                     eps: float = DEFAULT_EPS) -> np.ndarray:
    """Central differences of ``loss()`` with respect to each entry of ``array``.

    ``array`` (C-contiguous) is perturbed in place, one entry at a time, and restored.
    """
    flat = array.reshape(-1)
    if not np.shares_memory(flat, array):
        raise ValueError("numeric_gradient needs a contiguous array to perturb in place")
    grad = np.zeros(array.shape, dtype=np.float64)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = loss()
        flat[i] = original - eps
        minus = loss()
        flat[i] = original
        grad.flat[i] = (plus - minus) / (2 * eps)
    return grad


def compare(param: str, analytic: np.ndarray, numeric: np.ndarray,
            floor: float = TINY) -> GradReport:
    """The entry of worst relative error between two gradients of the same shape."""
    errors = relative_error(np.asarray(analytic, dtype=np.float64), numeric, floor)
    worst = int(np.argmax(errors)) if errors.size else 0
    index = tuple(int(i) for i in np.unravel_index(worst, errors.shape))
    if not errors.size:
        return GradReport(param, 0.0, index, 0.0, 0.0, floor)
    return GradReport(param, float(errors.flat[worst]), index,
                      float(np.asarray(analytic).flat[worst]), float(numeric.flat[worst]),
                      floor)


def check_gradients(loss: Callable[[], float], arrays: dict[str, np.ndarray],
                    analytic: dict[str, np.ndarray], *, eps: float = DEFAULT_EPS,
                    floor: float = TINY) -> dict[str, GradReport]:
    """Report per name: ``analytic[name]`` against central differences of ``loss()``
    in ``arrays[name]`` (which ``loss`` must read)."""
    return {name: compare(name, analytic[name], numeric_gradient(loss, arrays[name], eps),
                          floor)
            for name in arrays}


def check_network(network: Network, x: np.ndarray, y: np.ndarray, *,
                  eps: float = DEFAULT_EPS, tolerance: float = DEFAULT_TOLERANCE,
                  per_layer: bool = False) -> dict[str, GradReport]:
    """Check ``forward_backward``'s grads of every parameter (W1, b1, ...) at (x, y).

    With ``per_layer``, layer k's grads come from a pass whose backward stops at layer k,
    as the layer-by-layer update orders take them. Relative errors are floored at
    ``noise_floor`` of the batch cost for ``tolerance``, the tolerance the reports will
    be judged by.
    """
    x = np.asarray(x, dtype=network.dtype)
    y = np.asarray(y, dtype=network.dtype)
    cost = network.forward_backward(x, y)
    analytic = {name: grad.copy() for name, _, grad in network.parameters()}
    if per_layer:
        for layer in range(1, len(network.layers) + 1):
            network.forward_backward(x, y, lowest_layer=layer)
            for kind in ("W", "b"):
                analytic[f"{kind}{layer}"] = network.layers[layer - 1].grads[kind].copy()
    arrays = {name: param for name, param, _ in network.parameters()}
    return check_gradients(lambda: network.loss(x, y), arrays, analytic, eps=eps,
                           floor=noise_floor(cost, eps=eps, tolerance=tolerance,
                                             dtype=network.dtype))


def check_layer(layer: Dense, x: np.ndarray, *, rng: np.random.Generator,
                eps: float = DEFAULT_EPS) -> dict[str, GradReport]:
    """Check a layer's dW, db and returned dx (reported as "x") at input x: (n, d_in)."""
    x = np.array(x, dtype=np.float64)
    upstream = rng.standard_normal((len(x), layer.shape[1]))
    layer.zero_grad()
    layer.forward(x)
    dx = layer.backward(upstream)
    analytic = {**{k: g.copy() for k, g in layer.grads.items()}, "x": dx}
    arrays = {**layer.params, "x": x}
    return check_gradients(lambda: float(np.vdot(layer.forward(x), upstream)), arrays,
                           analytic, eps=eps)


def check_activation(activation: Activation, z: np.ndarray, *, rng: np.random.Generator,
                     eps: float = DEFAULT_EPS) -> dict[str, GradReport]:
    """Check an activation's backward (reported as "z") at pre-activations z: (n, d)."""
    z = np.array(z, dtype=np.float64)
    upstream = rng.standard_normal(z.shape)
    activation.forward(z)
    analytic = {"z": activation.backward(upstream)}
    return check_gradients(lambda: float(np.vdot(activation.forward(z), upstream)),
                           {"z": z}, analytic, eps=eps)


def check_cost(cost: Cost, pred: np.ndarray, target: np.ndarray, *,
               eps: float = DEFAULT_EPS) -> dict[str, GradReport]:
    """Check ``cost.grad`` (reported as "pred") at pred, target: (n, k)."""
    pred = np.array(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    return check_gradients(lambda: cost.value(pred, target), {"pred": pred},
                           {"pred": cost.grad(pred, target)}, eps=eps)


def check_head(head: Head, z: np.ndarray, target: np.ndarray, *,
               eps: float = DEFAULT_EPS) -> dict[str, GradReport]:
    """Check an output head's dL/dz (reported as "z") at pre-activations z: (n, k)."""
    z = np.array(z, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    _, dz = head.loss_and_grad(z, target)
    return check_gradients(lambda: head.value(z, target), {"z": z}, {"z": dz}, eps=eps)


def assert_gradients(reports: dict[str, GradReport], tol: float = DEFAULT_TOLERANCE) -> None:
    """Raise GradientCheckError for the worst report whose relative error exceeds ``tol``."""
    failing = [report for report in reports.values() if not report.rel_error <= tol]
    if failing:
        worst = max(failing, key=lambda report: report.rel_error)
        raise GradientCheckError(worst.param, worst.index, worst.analytic, worst.numeric,
                                 worst.rel_error)
