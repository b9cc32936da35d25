"""Fast metric writing for a sweep's one writer.

A sweep logs hundreds of thousands of values. MLflow's ``log_batch`` into an SQL store
builds one ORM object per value (~10,000 values/s here), so for SQLite and PostgreSQL
stores the writer inserts rows into MLflow's own ``metrics`` and ``latest_metrics``
tables in bulk (Core ``executemany``, one transaction a batch), with the value
sanitising MLflow applies (NaN stored as 0 with ``is_nan``, infinities clamped). The
schema is MLflow's, checked by ``open_client`` to be current; runs are created and
ended through ``MlflowClient``. Any other store (a tracking server) gets ``log_batch``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from nnchain.tracking.recorder import MAX_METRICS, chunks

Row = tuple[str, float, int, int]  # key, value, timestamp ms, step


def columns_to_rows(first_step: int, columns: Mapping[str, Sequence[float]],
                    timestamps: Sequence[int]) -> list[Row]:
    """``{key: values}`` for steps ``first_step, first_step+1, ...`` -> rows."""
    rows: list[Row] = []
    for key, values in columns.items():
        values = np.asarray(values, dtype=float).tolist()
        rows.extend((key, value, timestamps[i], first_step + i)
                    for i, value in enumerate(values))
    return rows


def _sanitize(value: float) -> tuple[float, bool]:
    if math.isnan(value):
        return 0.0, True
    if math.isinf(value):
        return (sys.float_info.max if value > 0 else -sys.float_info.max), False
    return value, False


class MetricWriter:
    """Writes metric rows of many runs; SQL stores in bulk, others through ``log_batch``."""

    def __init__(self, client, tracking_uri: str) -> None:
        self.client = client
        self.engine = None
        if tracking_uri.startswith(("sqlite:", "postgresql")):
            from sqlalchemy import MetaData, Table, create_engine

            self.engine = create_engine(tracking_uri, pool_pre_ping=True)
            meta = MetaData()
            self.metrics = Table("metrics", meta, autoload_with=self.engine)
            self.latest = Table("latest_metrics", meta, autoload_with=self.engine)

    def write(self, run_id: str, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if self.engine is None:
            self._log_batch(run_id, rows)
        else:
            self._insert(run_id, rows)

    def _log_batch(self, run_id: str, rows: Sequence[Row]) -> None:
        from mlflow.entities import Metric

        entities = [Metric(key, value, timestamp, step) for key, value, timestamp, step in rows]
        for part in chunks(entities, MAX_METRICS):
            self.client.log_batch(run_id, metrics=part)

    def _insert(self, run_id: str, rows: Sequence[Row]) -> None:
        records = []
        latest: dict[str, dict] = {}
        for key, value, timestamp, step in rows:
            value, is_nan = _sanitize(float(value))
            record = {"key": key, "value": value, "timestamp": timestamp, "step": step,
                      "is_nan": is_nan, "run_uuid": run_id}
            records.append(record)
            best = latest.get(key)
            if best is None or (step, timestamp) >= (best["step"], best["timestamp"]):
                latest[key] = record
        with self.engine.begin() as connection:
            connection.execute(self.metrics.insert(), records)
            connection.execute(self._upsert_latest(), list(latest.values()))

    def _upsert_latest(self):
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:  # pragma: no cover - MySQL has no ON CONFLICT; use MLflow's own path
            raise NotImplementedError(dialect)
        statement = insert(self.latest)
        current = self.latest.c
        return statement.on_conflict_do_update(
            index_elements=[current.key, current.run_uuid],
            set_={name: statement.excluded[name]
                  for name in ("value", "timestamp", "step", "is_nan")},
            where=statement.excluded.step >= current.step)

    def dispose(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
