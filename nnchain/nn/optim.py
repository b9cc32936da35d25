"""First-order optimizers. They own their state and never compute gradients.

``step(lr)`` reads each parameter's grad g and adds an update Delta to the parameter in
place. L2 weight decay adds ``weight_decay * W`` to the gradient of weight matrices only
(names starting with "W"; biases are not decayed); the layers' grads are left unchanged.

- sgd:      Delta = -lr g
- momentum: v = mu v - lr g;  Delta = v
- nesterov: v = mu v - lr g;  Delta = mu v - lr g  (the look-ahead form of Sutskever et al.)
- rmsprop:  s = rho s + (1 - rho) g^2;  Delta = -lr g / (sqrt(s) + eps)
- adam:     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
            Delta = -lr m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from nnchain.errors import SpecError
from nnchain.nn.diagnostics import frobenius
from nnchain.nn.registry import lookup

Parameter = tuple[str, np.ndarray, np.ndarray]


class Optimizer:
    """Base class: per-parameter state arrays named ``f"{state}.{param}"`` plus a step count t.

    Subclasses set ``name``, ``state_names``, ``defaults`` (hyperparameters) and
    ``update(index, grad, lr) -> Delta``.
    """

    name: ClassVar[str]
    state_names: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, float]] = {}

    def __init__(self, parameters: Iterable[Parameter], *, lr: float,
                 weight_decay: float = 0.0, **hyper: float) -> None:
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            allowed = ", ".join(self.defaults) or "none"
            raise SpecError("optimizer", f"{self.name} takes hyperparameters {allowed}, "
                            f"but got {unknown[0]!r}")
        _check_positive("lr", lr)
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise SpecError("weight_decay", f"must be >= 0, but got {weight_decay}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.hyper = {**self.defaults, **{k: float(v) for k, v in hyper.items()}}
        for key, value in self.hyper.items():
            if not (math.isfinite(value) and value >= 0):
                raise SpecError("optimizer", f"{self.name} {key} must be >= 0, but got {value}")
        self.params: list[Parameter] = list(parameters)
        self.t = 0
        self.state: dict[str, list[np.ndarray]] = {
            state: [np.zeros_like(param) for _, param, _ in self.params]
            for state in self.state_names
        }

    def update(self, index: int, grad: np.ndarray, lr: float) -> np.ndarray:
        """The step Delta for parameter ``index`` given its (decayed) gradient."""
        raise NotImplementedError

    def step(self, lr: float | None = None, *,
             update_norms: bool = False) -> dict[str, float] | None:
        """Update every parameter in place with learning rate ``lr`` (default ``self.lr``).

        With ``update_norms``, returns ||Delta W||_F for each weight matrix, by name.
        """
        lr = self.lr if lr is None else float(lr)
        self.t += 1
        decay = self.weight_decay
        norms: dict[str, float] | None = {} if update_norms else None
        for index, (name, param, grad) in enumerate(self.params):
            is_weight = name[0] == "W"
            if decay and is_weight:
                grad = grad + decay * param
            delta = self.update(index, grad, lr)
            param += delta
            if norms is not None and is_weight:
                norms[name] = frobenius(delta)
        return norms

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state: ``"{state}.{param}"`` arrays and ``"t"`` (0-d int64)."""
        out = {"t": np.array(self.t, dtype=np.int64)}
        for state, arrays in self.state.items():
            for (name, _, _), array in zip(self.params, arrays):
                out[f"{state}.{name}"] = array.copy()
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
        for name_state, arrays in self.state.items():
            for (name, _, _), array in zip(self.params, arrays):
                np.copyto(array, state[f"{name_state}.{name}"], casting="unsafe")

    def __repr__(self) -> str:
        hyper = "".join(f", {k}={v}" for k, v in self.hyper.items())
        return f"{type(self).__name__}(lr={self.lr}, weight_decay={self.weight_decay}{hyper})"


class SGD(Optimizer):
    name = "sgd"

    def update(self, index: int, grad: np.ndarray, lr: float) -> np.ndarray:
        return grad * -lr


class Momentum(Optimizer):
    name = "momentum"
    state_names = ("v",)
    defaults = {"mu": 0.9}

    def update(self, index: int, grad: np.ndarray, lr: float) -> np.ndarray:
        velocity = self.state["v"][index]
        velocity *= self.hyper["mu"]
        velocity -= lr * grad
        return velocity


class Nesterov(Optimizer):
    name = "nesterov"
    state_names = ("v",)
    defaults = {"mu": 0.9}

    def update(self, index: int, grad: np.ndarray, lr: float) -> np.ndarray:
        mu = self.hyper["mu"]
        velocity = self.state["v"][index]
        velocity *= mu
        velocity -= lr * grad
        delta = velocity * mu
        delta -= lr * grad
        return delta


class RMSProp(Optimizer):
    name = "rmsprop"
    state_names = ("s",)
    defaults = {"rho": 0.9, "eps": 1e-8}

    def update(self, index: int, grad: np.ndarray, lr: float) -> np.ndarray:
        rho = self.hyper["rho"]
        square_avg = self.state["s"][index]
        square_avg *= rho
        square_avg += (1 - rho) * (grad * grad)
        denominator = np.sqrt(square_avg)
        denominator += self.hyper["eps"]
        return grad * -lr / denominator


class Adam(Optimizer):
    name = "adam"
    state_names = ("m", "v")
    defaults = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

    def update(self, index: int, grad: np.ndarray, lr: float) -> np.ndarray:
        beta1, beta2 = self.hyper["beta1"], self.hyper["beta2"]
        mean, square = self.state["m"][index], self.state["v"][index]
        mean *= beta1
        mean += (1 - beta1) * grad
        square *= beta2
        square += (1 - beta2) * (grad * grad)
        denominator = np.sqrt(square / (1 - beta2 ** self.t))
        denominator += self.hyper["eps"]
        return mean * (-lr / (1 - beta1 ** self.t)) / denominator


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.name: cls for cls in (SGD, Momentum, Nesterov, RMSProp, Adam)
}


def make_optimizer(name: str, network: Any, *, lr: float, weight_decay: float = 0.0,
                   **hyper: float) -> Optimizer:
    """Optimizer ``name`` over ``network.parameters()``; ``hyper`` overrides its defaults."""
    cls = lookup(OPTIMIZERS, name, "optimizer")
    return cls(network.parameters(), lr=lr, weight_decay=weight_decay, **hyper)


def _check_positive(field: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
        raise SpecError(field, f"must be a finite number > 0, but got {value!r}")
