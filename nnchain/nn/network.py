"""A feed-forward network: Dense layers, one activation after each, and a cost.

Layer i (1-based) maps a_{i-1}: (n, d_{i-1}) to z_i = a_{i-1} W_i + b_i and a_i = f_i(z_i);
a_0 = x. The last activation and the cost form the output head (fused for sigmoid + bce
and softmax + cross_entropy, see ``heads.py``). Parameters are named W1, b1, W2, b2, ...

Speed: the network moves every layer's params and grads into one ``ParameterSet`` (the
layers' dicts then hold views into it), and ``forward_backward`` runs on work buffers kept
per batch size, with a plan that binds those buffers and views once: per layer a step
makes numpy calls and no lookups.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from itertools import pairwise

import numpy as np

from nnchain.errors import SpecError
from nnchain.nn import diagnostics as diag
from nnchain.nn import fastmath
from nnchain.nn.activations import ACTIVATIONS, RECTIFIERS, Activation
from nnchain.nn.costs import COSTS, Cost
from nnchain.nn.heads import make_head
from nnchain.nn.init import INITIALIZERS
from nnchain.nn.layers import Dense
from nnchain.nn.params import ParameterSet
from nnchain.nn.registry import lookup

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_NO_KINDS: frozenset[str] = frozenset()
KEPT_WORKSPACES = 2  # batch sizes whose work buffers are kept (the batch and the remainder)


class Workspace:
    """Work buffers of ``forward_backward`` for one batch size n, and its per-layer plan.

    ``z[i]``: (n, d_{i+1}) holds layer i+1's pre-activation, then (in place) its
    activation; ``delta[i]``: (n, d_{i+1}) holds dL/da, then (in place) dL/dz, of the
    hidden layers. ``forward`` and ``backward`` bind each layer's arrays once (params and
    grads are views into the network's ``ParameterSet``, updated in place), so that a
    step of a small network spends its time in numpy, not in lookups.
    """

    def __init__(self, n: int, network: Network) -> None:
        widths, dtype = network.sizes[1:], network.dtype
        self.z = [np.empty((n, width), dtype=dtype) for width in widths]
        self.delta = [np.empty((n, width), dtype=dtype) for width in widths[:-1]]
        self.ones = fastmath.ones(n, dtype)
        layers, activations = network.layers, network.activations
        # (layer, activation, W, b, z buffer), layer 1 first; the last activation is the head's
        self.forward = [(layer, activation, layer.params["W"], layer.params["b"], z)
                        for layer, activation, z in zip(layers, activations, self.z,
                                                        strict=True)]
        # (layer, W^T, whether W^T is copied to C order first, dW, db, dx buffer, the
        # activation below), top layer first; layer 1 has no dx buffer nor activation below
        self.backward = [
            (layer, layer.params["W"].T, layer.params["W"].size <= fastmath.SMALL_MATRIX,
             layer.grads["W"], layer.grads["b"], self.delta[i - 1] if i else None,
             activations[i - 1] if i else None)
            for i, layer in reversed(list(enumerate(layers)))]


class Network:
    """Dense layers with activations and a cost.

    ``forward_backward(x, y)`` is the training step's calculus: it returns the batch cost
    and leaves dL/dW_i, dL/db_i in each layer's ``grads``.
    """

    def __init__(self, layers: list[Dense], activations: list[Activation], cost: Cost) -> None:
        if not layers or len(layers) != len(activations):
            raise SpecError("layers", "need one activation per layer and at least one layer, "
                            f"but got {len(layers)} layers and {len(activations)} activations")
        for i, (before, after) in enumerate(pairwise(layers), start=1):
            if before.shape[1] != after.shape[0]:
                raise SpecError("layers", f"layer {i} outputs {before.shape[1]} values but "
                                f"layer {i + 1} takes {after.shape[0]}")
        dtypes = {layer.params["W"].dtype for layer in layers}
        if len(dtypes) != 1:
            raise SpecError("dtype", f"all layers must share one dtype, but got {dtypes}")
        self.layers = layers
        self.activations = activations
        self.cost = cost
        self.head = make_head(activations[-1], cost)
        self.dtype: np.dtype = dtypes.pop()
        self.diagnostics: dict[str, float] = {}
        self.params = self._pack(layers, self.dtype)
        self._bind_layers()
        self._workspaces: dict[int, Workspace] = {}
        self._diagnostic_keys = [
            (diag.key("grad_norm", i), diag.key("delta_norm", i), diag.key("weight_norm", i),
             diag.key("dead_fraction", i) if activation.name in RECTIFIERS else None)
            for i, activation in enumerate(activations, start=1)]

    @staticmethod
    def _pack(layers: list[Dense], dtype: np.dtype) -> ParameterSet:
        """A ParameterSet holding copies of the layers' params and grads."""
        shapes = {f"{kind}{i}": layer.params[kind].shape
                  for i, layer in enumerate(layers, start=1) for kind in ("W", "b")}
        params = ParameterSet(shapes, dtype)
        for i, layer in enumerate(layers, start=1):
            for kind in ("W", "b"):
                np.copyto(params.value(f"{kind}{i}"), layer.params[kind])
                np.copyto(params.grad(f"{kind}{i}"), layer.grads[kind])
        return params

    def _bind_layers(self) -> None:
        """Point each layer's params and grads at their views in ``self.params``."""
        for i, layer in enumerate(self.layers, start=1):
            for kind in ("W", "b"):
                layer.params[kind] = self.params.value(f"{kind}{i}")
                layer.grads[kind] = self.params.grad(f"{kind}{i}")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_workspaces": {}}

    def __setstate__(self, state: dict) -> None:
        # pickle copies the layers' views apart from the flat arrays: bind them again
        self.__dict__.update(state)
        self._bind_layers()

    def _workspace(self, n: int) -> Workspace:
        workspace = self._workspaces.get(n)
        if workspace is None:
            if len(self._workspaces) >= KEPT_WORKSPACES:
                self._workspaces.pop(next(iter(self._workspaces)))
            workspace = Workspace(n, self)
            self._workspaces[n] = workspace
        return workspace

    @property
    def sizes(self) -> list[int]:
        """[n_inputs, *hidden widths, n_outputs]."""
        return [self.layers[0].shape[0]] + [layer.shape[1] for layer in self.layers]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Output a_L for x: (n, n_inputs) -> (n, n_outputs); caches for ``backward``."""
        a = self._as_input(x)
        for layer, activation in zip(self.layers, self.activations, strict=True):
            a = activation.forward(layer.forward(a))
        return a

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Accumulate grads for dout = dL/da_L: (n, n_outputs) after ``forward``; return dL/dx."""
        grad = dout
        for layer, activation in zip(reversed(self.layers), reversed(self.activations),
                                     strict=True):
            grad = layer.backward(activation.backward(grad))
        return grad

    def forward_backward(self, x: np.ndarray, y: np.ndarray, *, accumulate: bool = False,
                         diagnostics: bool | Collection[str] = False,
                         lowest_layer: int = 1) -> float:
        """Batch cost at x: (n, n_inputs), y: (n, n_outputs), both of the network's dtype.

        Writes dL/dparam into the layers' ``grads`` (adds to them with ``accumulate``).
        With ``lowest_layer`` k > 1 the backward pass stops at layer k (1-based): the grads
        of layers k..L are written, those below are left as they were (the layer-by-layer
        update orders need one layer's gradient a pass).
        With ``diagnostics`` (True for every kind, or the kinds wanted), also fills
        ``self.diagnostics`` (see ``diagnostics.py``) from this batch: grad, delta and weight
        norms and dead fractions (weight norms also for ``update_ratio``, which the step
        needs). The head's ``output`` keeps the batch predictions.
        """
        if x.dtype != self.dtype or y.dtype != self.dtype:
            raise SpecError("dtype", f"x and y must be {self.dtype}, but got {x.dtype} "
                            f"and {y.dtype}")
        depth = len(self.layers)
        if not 1 <= lowest_layer <= depth:
            raise SpecError("lowest_layer", f"must be in 1..{depth}, but got "
                            f"{lowest_layer!r}")
        work = self._workspaces.get(len(x)) or self._workspace(len(x))
        # The math of layers.py (dense_forward, weight_grad, bias_grad, input_grad) written
        # out on the plan's arrays: per layer, the step calls numpy and nothing else. The
        # caches of Dense.forward and Activation.forward are kept as those methods keep them.
        a = x
        for layer, activation, weight, bias, z in work.forward[:-1]:
            layer.input = a
            np.dot(a, weight, out=z)
            z += bias
            a = activation.output = activation.function(z, z)
        layer, _, weight, bias, z = work.forward[-1]
        layer.input = a
        np.dot(a, weight, out=z)
        z += bias
        cost, dz = self.head.loss_and_grad(z, y)

        kinds = diag.wanted(diagnostics) if diagnostics else _NO_KINDS
        with_deltas = "delta_norm" in kinds
        deltas = []
        ones, lowest = work.ones, self.layers[lowest_layer - 1]
        for layer, weight_t, small, grad_w, grad_b, delta, below in \
                work.backward[:depth - lowest_layer + 1]:
            if with_deltas:
                deltas.append(diag.delta_norm(dz))
            if accumulate:
                grad_w += np.dot(layer.input.T, dz)
                grad_b += np.dot(ones, dz)
            else:
                np.dot(layer.input.T, dz, out=grad_w)
                np.dot(ones, dz, out=grad_b)
            if layer is lowest:
                break
            # BLAS runs dz @ W^T on a small transposed W slower than on a C-ordered copy
            np.dot(dz, np.ascontiguousarray(weight_t) if small else weight_t, out=delta)
            dz = below.derivative(below.output, delta, delta)

        if kinds:
            self.diagnostics = self._layer_diagnostics(kinds, deltas[::-1], lowest_layer - 1)
        return cost

    def _layer_diagnostics(self, kinds: frozenset[str], delta_norms: list[float],
                           lowest: int = 0) -> dict[str, float]:
        """Diagnostics of layers lowest+1..L (``delta_norms`` of those layers only)."""
        frobenius = diag.frobenius
        grads, dead_units = "grad_norm" in kinds or "sensitivity" in kinds, \
            "dead_fraction" in kinds
        weights = "weight_norm" in kinds or "update_ratio" in kinds or "sensitivity" in kinds
        metrics: dict[str, float] = {}
        for i, ((grad, delta, weight, dead), layer, activation) in enumerate(zip(
                self._diagnostic_keys, self.layers, self.activations, strict=True)):
            if i < lowest:
                continue
            if grads:
                metrics[grad] = frobenius(layer.grads["W"])
            if delta_norms:
                metrics[delta] = delta_norms[i - lowest]
            if weights:
                metrics[weight] = frobenius(layer.params["W"])
            if dead is not None and dead_units:
                metrics[dead] = diag.dead_fraction(activation.output)
        return metrics

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Output for x: (n, n_inputs) -> (n, n_outputs), caching nothing."""
        return self.head.predict(self.logits(x))

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """Batch-mean cost at x against y, caching nothing."""
        y = np.asarray(y, dtype=self.dtype)
        return self.head.value(self.logits(x), y)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Pre-activations z_L: (n, n_outputs) of the output layer, caching nothing."""
        a = self._as_input(x)
        for layer, activation in zip(self.layers[:-1], self.activations[:-1], strict=True):
            a = activation.function(a @ layer.params["W"] + layer.params["b"])
        last = self.layers[-1].params
        return a @ last["W"] + last["b"]

    def _as_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise SpecError("x", f"must have shape (n, {self.sizes[0]}), but got {x.shape}")
        return x

    def zero_grad(self) -> None:
        self.params.grads.fill(0)

    def parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(name, param, grad) for W1, b1, W2, b2, ...; the arrays themselves, not copies."""
        return self.params.items()

    def get_weights(self) -> dict[str, np.ndarray]:
        """Copies of every parameter, keyed W1, b1, ...; W_i: (d_{i-1}, d_i), b_i: (d_i,)."""
        return {name: param.copy() for name, param, _ in self.parameters()}

    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Copy ``weights`` (keys and shapes as ``get_weights``) into the parameters.

        Everything is validated first: a missing or unexpected key, a wrong shape or a
        non-finite value raises SpecError(field="weights") and changes nothing.
        """
        expected = {name: param for name, param, _ in self.parameters()}
        unexpected = sorted(set(weights) - set(expected))
        if unexpected:
            raise SpecError("weights", f"unexpected key {unexpected[0]!r}; keys must be "
                            f"{', '.join(expected)}")
        arrays = {}
        for name, param in expected.items():
            if name not in weights:
                raise SpecError("weights", f"missing key {name!r} of shape {param.shape}")
            given = np.asarray(weights[name])
            if given.shape != param.shape:
                raise SpecError("weights", f"{name} must have shape {param.shape}, but got "
                                f"{given.shape}")
            if not np.all(np.isfinite(given)):
                raise SpecError("weights", f"{name} must be finite, but has "
                                f"{int(np.size(given) - np.count_nonzero(np.isfinite(given)))} "
                                "non-finite values")
            arrays[name] = given
        for name, param in expected.items():
            np.copyto(param, arrays[name], casting="unsafe")

    def __repr__(self) -> str:
        names = [activation.name for activation in self.activations]
        return (f"Network(sizes={self.sizes}, activations={names}, cost={self.cost.name}, "
                f"dtype={self.dtype})")


def build_network(sizes: list[int], *, activation: str, output: str, cost: str, init: str,
                  rng: np.random.Generator, dtype: np.dtype | type = np.float64) -> Network:
    """A network with layer widths ``sizes`` = [n_inputs, *hidden, n_outputs].

    ``activation`` follows every hidden layer, ``output`` the last one; weights are drawn
    from ``rng`` layer by layer with ``init``, biases are zero.
    """
    if (not isinstance(sizes, (list, tuple)) or len(sizes) < 2
            or not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes)):
        raise SpecError("sizes", f"must be a list of at least 2 positive integers, but got "
                        f"{sizes!r}")
    hidden_cls = lookup(ACTIVATIONS, activation, "activation")
    output_cls = lookup(ACTIVATIONS, output, "output")
    cost_cls = lookup(COSTS, cost, "cost")
    lookup(INITIALIZERS, init, "init")
    dtype = np.dtype(dtype)
    if dtype not in DTYPES:
        raise SpecError("dtype", f"must be float32 or float64, but got {dtype}")
    layers = [Dense(int(d_in), int(d_out), init=init, rng=rng, dtype=dtype)
              for d_in, d_out in pairwise(sizes)]
    activations = [hidden_cls() for _ in layers[:-1]] + [output_cls()]
    return Network(layers, activations, cost_cls())
