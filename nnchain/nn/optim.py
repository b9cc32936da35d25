"""First-order optimizers. They own their state and never compute gradients.

``step(lr)`` reads the grads g of a ``ParameterSet`` and adds an update Delta to the
parameters in place, all parameters at once through the set's flat arrays. L2 weight
decay adds ``weight_decay * W`` to the gradient of weight matrices only (names starting
with "W"; biases are not decayed); the grads themselves are left unchanged.

- sgd:      Delta = -lr g
- momentum: v = mu v - lr g;  Delta = v  (mu: the `momentum` setting)
- nesterov: v = mu v - lr g;  Delta = mu v - lr g  (the look-ahead form of Sutskever et al.)
- rmsprop:  s = rho s + (1 - rho) g^2;  Delta = -lr g / (sqrt(s) + eps)
- adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
            Delta = -lr m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from nnchain.errors import SpecError
from nnchain.nn.diagnostics import frobenius
from nnchain.nn.params import ParameterSet
from nnchain.nn.registry import lookup

BLOCK_BYTES = 1 << 18  # the update's block: a few of them fit in a core's L2 cache


class Optimizer:
    """Base class over a ``ParameterSet``: whole-array updates of its flat ``values``.

    State arrays are flat like the values; ``state_dict`` names their per-parameter parts
    ``f"{state}.{param}"``. Subclasses set ``name``, ``state_names``, ``defaults``
    (hyperparameters) and ``update(grad, lr, out, state) -> Delta`` (written into ``out``,
    a scratch array, or a state array); ``state`` holds the state arrays over the same
    entries as ``grad``: all of them for ``step``, one layer's for ``step_layer``.
    """

    name: ClassVar[str]
    state_names: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, float]] = {}

    def __init__(self, params: ParameterSet, *, lr: float, weight_decay: float = 0.0,
                 **hyper: float) -> None:
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            allowed = ", ".join(self.defaults) or "none"
            raise SpecError("optimizer", f"{self.name} takes hyperparameters {allowed}, "
                            f"but got {unknown[0]!r}")
        _check_positive("lr", lr)
        if not (isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay)
                and weight_decay >= 0):
            raise SpecError("weight_decay", f"must be >= 0, but got {weight_decay!r}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.hyper = {**self.defaults, **{k: float(v) for k, v in hyper.items()}}
        for key, value in self.hyper.items():
            if not (math.isfinite(value) and value >= 0):
                raise SpecError("optimizer", f"{self.name} {key} must be >= 0, but got {value}")
        self.params = params
        self.t = 0
        self.state = {state: np.zeros_like(params.values) for state in self.state_names}
        self._scratch = np.empty_like(params.values)
        self._weights = [(name, params.slices[name]) for name in params.weight_names()]
        if self.weight_decay:
            self._decay = params.weight_mask() * self.weight_decay
            self._decayed_grad = np.empty_like(params.values)
        # A large set is updated a block at a time, so that the update's passes over a
        # block (grad, state, scratch, values) find it in cache; None: all at once.
        block = max(1, BLOCK_BYTES // params.values.itemsize)
        size = params.values.size
        self._blocks = (None if size <= block else
                        [slice(start, start + block) for start in range(0, size, block)])

    def update(self, grad: np.ndarray, lr: float, out: np.ndarray,
               state: dict[str, np.ndarray]) -> np.ndarray:
        """The step Delta for the flat (decayed) gradient; may use ``out`` as scratch."""
        raise NotImplementedError

    def step(self, lr: float | None = None, *,
             update_norms: bool = False) -> dict[str, float] | None:
        """Update every parameter in place with learning rate ``lr`` (default ``self.lr``).

        With ``update_norms``, returns ||Delta W||_F for each weight matrix, by name.
        """
        lr = self.lr if lr is None else float(lr)
        self.t += 1
        if update_norms or self._blocks is None:
            delta = self._update(None, lr)
        else:
            for block in self._blocks:
                self._update(block, lr)
            return None
        if not update_norms:
            return None
        return {name: frobenius(delta[part]) for name, part in self._weights}

    def step_layer(self, layer: int, lr: float, *, advance: bool) -> np.ndarray:
        """Update layer ``layer``'s W and b alone (1-based), from their grads; return its
        Delta: the flat part [W, b] (a view, valid until the next step).

        ``advance`` counts a new step (t += 1, Adam's bias correction): a caller updating
        the layers one after another counts one step per batch, so every layer's state
        moves exactly as under its own optimizer.
        """
        if advance:
            self.t += 1
        return self._update(self.params.layer_span(layer), float(lr))

    def _update(self, part: slice | None, lr: float) -> np.ndarray:
        """Add the step Delta to the flat values in ``part`` (None: all of them); return
        Delta over that part."""
        params = self.params
        if part is None:
            values, grad, scratch, state = (params.values, params.grads, self._scratch,
                                            self.state)
        else:
            values, grad, scratch = params.values[part], params.grads[part], self._scratch[part]
            state = {name: flat[part] for name, flat in self.state.items()}
        if self.weight_decay:
            decay = self._decay if part is None else self._decay[part]
            decayed = self._decayed_grad if part is None else self._decayed_grad[part]
            grad = np.add(np.multiply(values, decay, out=decayed), grad, out=decayed)
        delta = self.update(grad, lr, scratch, state)
        values += delta
        return delta

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state: ``"{state}.{param}"`` arrays and ``"t"`` (0-d int64)."""
        out = {"t": np.array(self.t, dtype=np.int64)}
        for state, flat in self.state.items():
            for name in self.params.names:
                out[f"{state}.{name}"] = self.params.view(flat, name).copy()
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` gave; keys and shapes must match (SpecError if not)."""
        expected = self.state_dict()
        if set(state) != set(expected):
            missing = sorted(set(expected) - set(state))
            extra = sorted(set(state) - set(expected))
            raise SpecError("optimizer_state", f"keys must be {sorted(expected)}, but "
                            f"missing {missing} and unexpected {extra}")
        for key, array in state.items():
            if np.shape(array) != expected[key].shape:
                raise SpecError("optimizer_state", f"{key} must have shape "
                                f"{expected[key].shape}, but got {np.shape(array)}")
        self.t = int(state["t"])
        for name_state, flat in self.state.items():
            for name in self.params.names:
                np.copyto(self.params.view(flat, name), state[f"{name_state}.{name}"],
                          casting="unsafe")

    def __repr__(self) -> str:
        hyper = "".join(f", {k}={v}" for k, v in self.hyper.items())
        return f"{type(self).__name__}(lr={self.lr}, weight_decay={self.weight_decay}{hyper})"


class SGD(Optimizer):
    name = "sgd"

    def update(self, grad: np.ndarray, lr: float, out: np.ndarray,
               state: dict[str, np.ndarray]) -> np.ndarray:
        return np.multiply(grad, -lr, out=out)


class Momentum(Optimizer):
    name = "momentum"
    state_names = ("v",)
    defaults = {"momentum": 0.9}

    def update(self, grad: np.ndarray, lr: float, out: np.ndarray,
               state: dict[str, np.ndarray]) -> np.ndarray:
        velocity = state["v"]
        velocity *= self.hyper["momentum"]
        velocity -= np.multiply(grad, lr, out=out)
        return velocity


class Nesterov(Optimizer):
    name = "nesterov"
    state_names = ("v",)
    defaults = {"momentum": 0.9}

    def update(self, grad: np.ndarray, lr: float, out: np.ndarray,
               state: dict[str, np.ndarray]) -> np.ndarray:
        mu = self.hyper["momentum"]
        velocity = state["v"]
        lr_grad = np.multiply(grad, lr, out=out)
        velocity *= mu
        velocity -= lr_grad
        # Delta = mu v - lr g, built in the scratch array that holds lr g.
        lr_grad *= -1
        lr_grad += velocity * mu
        return lr_grad


class RMSProp(Optimizer):
    name = "rmsprop"
    state_names = ("s",)
    defaults = {"rho": 0.9, "eps": 1e-8}

    def update(self, grad: np.ndarray, lr: float, out: np.ndarray,
               state: dict[str, np.ndarray]) -> np.ndarray:
        rho = self.hyper["rho"]
        square_avg = state["s"]
        square_avg *= rho
        scratch = np.multiply(grad, grad, out=out)
        scratch *= 1 - rho
        square_avg += scratch
        denominator = np.sqrt(square_avg, out=scratch)
        denominator += self.hyper["eps"]
        delta = np.divide(grad, denominator, out=scratch)
        delta *= -lr
        return delta


class Adam(Optimizer):
    name = "adam"
    state_names = ("m", "v")
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

    def update(self, grad: np.ndarray, lr: float, out: np.ndarray,
               state: dict[str, np.ndarray]) -> np.ndarray:
        beta1, beta2 = self.hyper["beta1"], self.hyper["beta2"]
        mean, square = state["m"], state["v"]
        mean *= beta1
        mean += np.multiply(grad, 1 - beta1, out=out)
        square *= beta2
        scratch = np.multiply(grad, grad, out=out)
        scratch *= 1 - beta2
        square += scratch
        denominator = np.multiply(square, 1 / (1 - beta2 ** self.t), out=scratch)
        np.sqrt(denominator, out=denominator)
        denominator += self.hyper["eps"]
        delta = np.divide(mean, denominator, out=scratch)
        delta *= -lr / (1 - beta1 ** self.t)
        return delta


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Momentum, Nesterov, RMSProp, Adam)
}


def make_optimizer(name: str, network: Any, *, lr: float, weight_decay: float = 0.0,
                   **hyper: float) -> Optimizer:
    """Optimizer ``name`` over ``network.params``; ``hyper`` overrides its defaults."""
    cls = lookup(OPTIMIZERS, name, "optimizer")
    return cls(network.params, lr=lr, weight_decay=weight_decay, **hyper)


def _check_positive(field: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
        raise SpecError(field, f"must be a finite number > 0, but got {value!r}")
