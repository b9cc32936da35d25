"""Small data sets the nn tests make themselves (no dependency on nnchain.data)."""

from __future__ import annotations

import numpy as np


def spirals(n_per_arm: int, rng: np.random.Generator, noise: float = 0.2):
    """Two interleaved spiral arms in the plane; returns x: (2n, 2), one-hot y: (2n, 2)."""
    t = np.sqrt(rng.random(n_per_arm)) * 3 * np.pi
    arm = np.stack([t * np.cos(t), t * np.sin(t)], axis=1)
    x = np.concatenate([arm, -arm]) + rng.normal(scale=noise, size=(2 * n_per_arm, 2))
    labels = np.repeat([0, 1], n_per_arm)
    return x / 10, np.eye(2)[labels]


XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float64)
