"""Update orders: which weights a mini-batch's gradient is taken at, and when each layer moves.

For a network of L dense layers with parameters theta_k = (W_k, b_k), a batch B, its
cost C_B and an optimizer update U_k (the same optimizer rule, with per-layer state):

- ``simultaneous`` (standard backpropagation): one forward and backward pass at theta,
  then every layer at once: theta_k <- theta_k + U_k(dC_B/dtheta_k (theta)), k = 1..L.
- ``output_first``: for k = L, L-1, ..., 1 in turn, a forward pass at the current weights
  (layers above k already moved in this batch), the gradient of layer k alone, and its
  update: theta_k <- theta_k + U_k(dC_B/dtheta_k (theta_1..theta_{k-1}, theta_k,
  theta_{k+1}', ..., theta_L')).
- ``input_first``: the same for k = 1, 2, ..., L.

A sequential order costs one forward pass and a backward pass down to layer k per layer,
about L times a simultaneous step. The optimizer counts one step per batch (Adam's t),
so each layer's state evolves exactly as under an optimizer of its own.

``layer_lr`` multiplies the learning rate of layer k by its k-th entry (input side first),
in every order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from nnchain.errors import SpecError
from nnchain.nn import diagnostics as diag
from nnchain.nn.network import Network
from nnchain.nn.optim import Optimizer

UPDATE_ORDERS = ("simultaneous", "output_first", "input_first")


def check_order(order: str, layer_lr: Sequence[float] | None, n_layers: int) -> None:
    """SpecError naming ``update_order`` or ``layer_lr`` unless both are usable."""
    if order not in UPDATE_ORDERS:
        raise SpecError("update_order", f"must be one of {', '.join(UPDATE_ORDERS)}, but got "
                        f"{order!r}")
    if layer_lr is None:
        return
    if len(layer_lr) != n_layers:
        raise SpecError("layer_lr", f"must have one multiplier per dense layer ({n_layers}), "
                        f"but got {len(layer_lr)}: {list(layer_lr)!r}")
    bad = [m for m in layer_lr if not (isinstance(m, (int, float)) and np.isfinite(m) and m > 0)]
    if bad:
        raise SpecError("layer_lr", f"each multiplier must be a finite number > 0, but got "
                        f"{bad[0]!r}")


def layer_sequence(order: str, n_layers: int) -> range:
    """The 1-based layers in the order a sequential order updates them."""
    if order == "output_first":
        return range(n_layers, 0, -1)
    return range(1, n_layers + 1)


def layer_rate(lr: float, layer_lr: Sequence[float] | None, layer: int) -> float:
    return lr if layer_lr is None else lr * float(layer_lr[layer - 1])


def layerwise_step(network: Network, optimizer: Optimizer, x: np.ndarray, y: np.ndarray, *,
                   lr: float, order: str, layer_lr: Sequence[float] | None = None,
                   diagnostics: Collection[str] = (), keep_output: bool = False
                   ) -> tuple[float, dict[str, float], np.ndarray | None]:
    """One mini-batch of a sequential order; returns (batch cost before any update,
    diagnostics or {}, the predictions before any update when ``keep_output``).

    With diagnostics, layer k's entries come from the pass that took its gradient and
    from its update; ``effect/layer{k}`` is the cost of that pass minus the cost of the
    next one (one more forward pass after the last layer).
    """
    kinds = diag.wanted(diagnostics)
    layers = layer_sequence(order, len(network.layers))
    metrics: dict[str, float] = {}
    first_cost = previous_cost = 0.0
    output = None
    previous_layer = 0
    for position, layer in enumerate(layers):
        cost = network.forward_backward(x, y, diagnostics=kinds, lowest_layer=layer)
        if position == 0:
            first_cost = cost
            if keep_output:
                output = network.head.output.copy()
        elif "effect" in kinds:
            metrics[diag.key("effect", previous_layer)] = previous_cost - cost
        delta = optimizer.step_layer(layer, layer_rate(lr, layer_lr, layer),
                                     advance=position == 0)
        if kinds:
            metrics.update(_layer_metrics(network, layer, kinds, delta))
        previous_cost, previous_layer = cost, layer
    if "effect" in kinds:
        metrics[diag.key("effect", previous_layer)] = previous_cost - network.loss(x, y)
    return first_cost, metrics, output


def _layer_metrics(network: Network, layer: int, kinds: frozenset[str],
                   delta: np.ndarray) -> dict[str, float]:
    """Layer ``layer``'s diagnostics after its update ``delta`` (flat [W, b])."""
    metrics = {name: value for name, value in network.diagnostics.items()
               if name.endswith(f"/layer{layer}")}
    grad_key, weight_key = diag.key("grad_norm", layer), diag.key("weight_norm", layer)
    weight_size = network.layers[layer - 1].params["W"].size
    if "update_ratio" in kinds:
        metrics[diag.key("update_ratio", layer)] = diag.update_ratio(
            diag.frobenius(delta[:weight_size]), metrics[weight_key])
    if "sensitivity" in kinds:
        metrics[diag.key("sensitivity", layer)] = metrics[grad_key] * metrics[weight_key]
    if "effect" in kinds:
        grad = network.params.grads[network.params.layer_span(layer)]
        metrics[diag.key(diag.FIRST_ORDER, layer)] = -float(np.vdot(grad, delta))
    _drop_unasked(metrics, layer, kinds)
    return metrics


def _drop_unasked(metrics: dict[str, float], layer: int, kinds: frozenset[str]) -> None:
    """Remove the norms computed only for another kind."""
    if "grad_norm" not in kinds:
        metrics.pop(diag.key("grad_norm", layer), None)
    if "weight_norm" not in kinds:
        metrics.pop(diag.key("weight_norm", layer), None)


def solo_effects(network: Network, x: np.ndarray, y: np.ndarray, cost: float,
                 before: np.ndarray) -> dict[str, float]:
    """``effect`` and its first-order prediction for every layer of a simultaneous step.

    ``before`` is a copy of the flat parameters before the step, ``cost`` the batch cost
    there, and the network holds the weights after it and the step's grads. Each layer's
    update is applied alone to the weights before the step, the batch cost measured,
    and the weights after the step put back: L more forward passes.
    """
    params = network.params
    after = params.values.copy()
    metrics: dict[str, float] = {}
    for layer in range(1, len(network.layers) + 1):
        part = params.layer_span(layer)
        delta = after[part] - before[part]
        metrics[diag.key(diag.FIRST_ORDER, layer)] = -float(np.vdot(params.grads[part], delta))
        np.copyto(params.values, before)
        params.values[part] = after[part]
        metrics[diag.key("effect", layer)] = cost - network.loss(x, y)
    np.copyto(params.values, after)
    return metrics
