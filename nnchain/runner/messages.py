"""What a trial task tells the driver: typed messages, one per event of a trial.

They cross Ray by pickle as plain frozen dataclasses of numbers, numpy arrays and bytes;
no SQLAlchemy or MLflow here, so the worker's import stays light.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Start:
    """A trial's attempt began on ``worker`` (host:pid) at ``start_ms`` (epoch ms)."""

    trial_id: int
    attempt: int
    start_ms: int
    worker: str = ""


@dataclass(frozen=True, slots=True)
class Metrics:
    """Per-epoch metrics of steps ``first_step ..`` in columns: each key's values
    ``(n,)``, ``stamps`` their ``n`` timestamps (epoch ms)."""

    trial_id: int
    first_step: int
    columns: dict[str, np.ndarray]
    stamps: list[int]


@dataclass(frozen=True, slots=True)
class CheckpointSaved:
    """A checkpoint after ``epoch`` epochs: weights, optimizer and rng state (``.npz``)."""

    trial_id: int
    epoch: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class End:
    """A trial's attempt ended. ``permanent``: its own config or data failed, a retry
    would fail again. ``files``: artifacts made in the worker (config.yaml, pictures),
    name -> bytes."""

    trial_id: int
    status: str
    reason: str
    epochs: int
    final: dict[str, float]
    weights: bytes | None
    seconds: float
    permanent: bool
    files: dict[str, bytes] | None = None


Message = Start | Metrics | CheckpointSaved | End
