"""Batched writing of one MLflow run: params, tags and per-epoch metrics.

Metrics are buffered and sent with ``log_batch`` in chunks within MLflow's request
limits, at most every ``flush_seconds`` while training (so curves show up in the UI
as a run trains) and at the end; never one call per value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping

MAX_METRICS = 1000  # MLflow's log_batch limits per request
MAX_PARAMS = 100
MAX_TAGS = 100
MAX_PARAM_LENGTH = 6000  # characters of a param value kept


def chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class RunWriter:
    """Writes one run through an explicit ``MlflowClient`` and ``run_id``."""

    def __init__(self, client, run_id: str, *, flush_seconds: float = 2.0,
                 metric_writer=None) -> None:
        self.client = client
        self.run_id = run_id
        self.metric_writer = metric_writer  # a bulk MetricWriter; None: log_batch
        self.flush_seconds = flush_seconds
        self._pending: list = []
        self._last_flush = time.monotonic()

    def log_params(self, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        entities = [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()]
        for part in chunks(entities, MAX_PARAMS):
            self.client.log_batch(self.run_id, params=part)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        entities = [RunTag(key, str(value)) for key, value in tags.items()]
        for part in chunks(entities, MAX_TAGS):
            self.client.log_batch(self.run_id, tags=part)

    def log_step(self, step: int, metrics: Mapping[str, float],
                 timestamp_ms: int | None = None) -> None:
        """Buffer one step's metrics; flushes when the interval has passed."""
        timestamp_ms = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        self._pending.extend((key, float(value), timestamp_ms, step)
                             for key, value in metrics.items())
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.metric_writer is not None:
            self.metric_writer.write(self.run_id, self._pending)
        else:
            from mlflow.entities import Metric

            entities = [Metric(key, _finite_or_nan(value), stamp, step)
                        for key, value, stamp, step in self._pending]
            for part in chunks(entities, MAX_METRICS):
                self.client.log_batch(self.run_id, metrics=part)
        self._pending = []
        self._last_flush = time.monotonic()

    def finish(self, status: str, reason: str = "") -> None:
        """Flush, tag the reason, and end the run with ``status`` (FINISHED, FAILED, KILLED)."""
        self.flush()
        if reason:
            self.set_tags({"nnchain.status_reason": reason})
        self.client.set_terminated(self.run_id, status=status)


def _finite_or_nan(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else float("nan")
