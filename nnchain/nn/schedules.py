"""Learning-rate schedules: the learning rate of each 0-based epoch.

- constant:    lr
- step:        lr * gamma ** (epoch // step_size)
- exponential: lr * gamma ** epoch
- cosine:      min_lr + (lr - min_lr) (1 + cos(pi epoch / epochs)) / 2, from lr at epoch 0
               towards min_lr, reached at epoch ``epochs`` (held after it)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from nnchain.errors import SpecError
from nnchain.nn.registry import lookup

Schedule = Callable[[int], float]


def constant(epoch: int, lr: float) -> float:
    return lr


def step(epoch: int, lr: float, *, gamma: float, step_size: int) -> float:
    return lr * gamma ** (epoch // step_size)


def exponential(epoch: int, lr: float, *, gamma: float) -> float:
    return lr * gamma ** epoch


def cosine(epoch: int, lr: float, *, epochs: int, min_lr: float) -> float:
    progress = min(epoch, epochs) / epochs
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "step": step,
    "exponential": exponential,
    "cosine": cosine,
}


def make_schedule(name: str, lr: float, *, epochs: int, gamma: float = 0.5,
                  step_size: int | None = None, min_lr: float = 0.0) -> Schedule:
    """``epoch -> learning rate`` for schedule ``name`` starting at ``lr``.

    ``step_size`` defaults to max(1, epochs // 3) (three decays over the run). The result
    is a ``functools.partial`` of a module function, so it pickles.
    """
    schedule = lookup(SCHEDULES, name, "schedule")
    if not (math.isfinite(lr) and lr > 0):
        raise SpecError("lr", f"must be a finite number > 0, but got {lr!r}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise SpecError("epochs", f"must be an integer >= 1, but got {epochs!r}")
    if not (math.isfinite(gamma) and gamma > 0):
        raise SpecError("gamma", f"must be > 0, but got {gamma!r}")
    if step_size is None:
        step_size = max(1, epochs // 3)
    if not (isinstance(step_size, int) and step_size >= 1):
        raise SpecError("step_size", f"must be an integer >= 1, but got {step_size!r}")
    if not (math.isfinite(min_lr) and 0 <= min_lr <= lr):
        raise SpecError("min_lr", f"0 <= min_lr <= lr must hold, but got min_lr={min_lr!r}, "
                        f"lr={lr!r}")
    options = {
        "constant": {},
        "step": {"gamma": gamma, "step_size": step_size},
        "exponential": {"gamma": gamma},
        "cosine": {"epochs": epochs, "min_lr": min_lr},
    }[name]
    return functools.partial(schedule, lr=float(lr), **options)
