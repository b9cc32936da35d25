"""Chain-rule diagnostics: per-layer norms read off arrays the backward pass already holds.

Keys are ``"{kind}/layer{i}"`` with i 1-based, layer i mapping a_{i-1} to z_i = a_{i-1} W_i + b_i:

- ``grad_norm``: ||dL/dW_i||_F.
- ``delta_norm``: root mean square over the batch of the per-sample error signal
  ||delta_i|| = ||dl/dz_i|| (l the per-sample loss). The cost is a batch mean, so
  dL/dz_i = delta_i / n and this equals sqrt(n) ||dL/dz_i||_F: it does not shrink as
  the batch grows.
- ``weight_norm``: ||W_i||_F at the weights the gradient was taken at (before the step).
- ``update_ratio``: ||Delta W_i||_F / ||W_i||_F of the optimizer step (weight decay included).
- ``dead_fraction``: for relu / leaky_relu layers, the fraction of units whose activation
  is <= 0 for every sample of the batch.
- ``sensitivity``: ||dL/dW_i||_F ||W_i||_F, the first-order change of the cost for a
  relative change of the whole layer (W_i -> (1 + s) W_i moves L by at most about s times it).
- ``effect``: how much the batch cost drops when layer i alone takes its update,
  C(before) - C(after), measured with extra forward passes (see ``train.py``); beside it
  ``effect_first_order/layer{i}``: the first-order prediction -g_i . Delta_i (g_i the
  layer's cost gradient over W_i and b_i, Delta_i its update), lr ||g_i||^2 for plain SGD.

The last two are opt-in (``train.track``); the others are tracked by default.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from functools import lru_cache

import numpy as np

DEFAULT_KINDS = ("grad_norm", "delta_norm", "weight_norm", "update_ratio", "dead_fraction")
KINDS = (*DEFAULT_KINDS, "sensitivity", "effect")
FIRST_ORDER = "effect_first_order"  # logged with ``effect``


def wanted(diagnostics: bool | Collection[str]) -> frozenset[str]:
    """The kinds asked for: every kind for True, none for False, else those named."""
    if diagnostics is True:
        return frozenset(DEFAULT_KINDS)
    return frozenset(diagnostics or ())


@lru_cache(maxsize=1024)
def key(kind: str, layer: int) -> str:
    """Metric name of ``kind`` for layer ``layer`` (1-based)."""
    return f"{kind}/layer{layer}"


def frobenius(a: np.ndarray) -> float:
    """||a||_F, as a BLAS dot product."""
    return math.sqrt(float(np.vdot(a, a)))


def delta_norm(dz: np.ndarray) -> float:
    """RMS over the batch of per-sample ||dl/dz|| given dz = dL/dz: (n, d) of a batch mean."""
    return frobenius(dz) * math.sqrt(len(dz))


def dead_fraction(a: np.ndarray) -> float:
    """Fraction of the d units of a: (n, d) with a <= 0 on every one of the n samples."""
    return float(np.count_nonzero(a.max(axis=0) <= 0)) / a.shape[1]


def update_ratio(update_norm: float, weight_norm: float) -> float:
    """||Delta W|| / ||W||; 0 for no update, inf for an update of all-zero weights."""
    if update_norm == 0:
        return 0.0
    return update_norm / weight_norm if weight_norm > 0 else math.inf
