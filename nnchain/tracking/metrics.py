"""Fast writing for a sweep's one writer: metrics, and runs starting and ending.

A sweep logs hundreds of thousands of values. MLflow's ``log_batch`` into an SQL store
builds one ORM object per value (~10,000 values/s here), so on SQLite and PostgreSQL
stores whose schema nnchain was tested with, the writer hands each flush to
``mlflow_sql`` (bulk INSERTs into MLflow's own tables, one transaction a flush, runs
starting and ending after their metrics). Any other store (a tracking server, an
untested schema) gets ``log_batch`` and client calls, in the same order.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nnchain.tracking import mlflow_sql
from nnchain.tracking.mlflow_sql import ROWS_PER_STATEMENT, RunEnd
from nnchain.tracking.recorder import MAX_METRICS, RunWriter, chunks
from nnchain.tracking.retry import with_retry

__all__ = ["ROWS_PER_STATEMENT", "Block", "MetricWriter", "Row", "last_steps",
           "rows_to_blocks"]

Row = tuple[str, float, int, int]  # key, value, timestamp ms, step


@dataclass
class Block:
    """Metrics of one run for consecutive steps, one array per key."""

    run_id: str
    first_step: int
    columns: Mapping[str, Sequence[float]]
    timestamps: Sequence[int]


def rows_to_blocks(run_id: str, rows: Sequence[Row]) -> list[Block]:
    """Rows (as ``nnchain train`` buffers them) as blocks of consecutive steps with the
    same keys; a later row for the same key and step replaces an earlier one."""
    by_step: dict[int, tuple[dict, int]] = {}
    for key, value, timestamp, step in rows:
        by_step.setdefault(step, ({}, timestamp))[0][key] = value
    blocks: list[Block] = []
    for step in sorted(by_step):
        values, stamp = by_step[step]
        last = blocks[-1] if blocks else None
        if last and last.first_step + len(last.timestamps) == step \
                and last.columns.keys() == values.keys():
            for key, value in values.items():
                last.columns[key].append(value)
            last.timestamps.append(stamp)
        else:
            blocks.append(Block(run_id, step, {k: [v] for k, v in values.items()}, [stamp]))
    return blocks


class MetricWriter:
    """Buffers metric blocks, run starts and run ends of many runs; writes them in one
    transaction a flush (``mlflow_sql``) or ``log_batch`` chunks and client calls (others)."""

    def __init__(self, client, tracking_uri: str) -> None:
        self.client = client
        # None: the client's path. A store away for a moment is waited for, as on a flush.
        self.tables = with_retry(mlflow_sql.open_tables, tracking_uri, what="the MLflow store")
        self.blocks: list[Block] = []
        self.pending_values = 0  # metric values in ``blocks``
        self._chunks: list[tuple[str, list]] = []
        self._starts: dict[str, dict] = {}  # run id -> tags
        self._ends: dict[str, RunEnd] = {}

    def start_run(self, run_id: str, tags: Mapping[str, str] | None = None) -> None:
        """The run is RUNNING (with ``tags``): through ``mlflow_sql`` from the next flush,
        through the client now."""
        if self.tables is None:
            self.client.update_run(run_id, status="RUNNING")
            if tags:
                RunWriter(self.client, run_id).set_tags(tags)
        else:
            self._starts[run_id] = dict(tags or {})

    def end_run(self, run_id: str, status: str, tags: Mapping[str, str] | None = None) -> None:
        """The run ends with ``status`` (and ``tags``) at the next flush, after its metrics."""
        self._ends[run_id] = RunEnd(status, int(time.time() * 1000), dict(tags or {}))

    def add(self, block: Block) -> None:
        if block.timestamps:
            self.blocks.append(block)
            self.pending_values += len(block.timestamps) * len(block.columns)

    def write(self, run_id: str, rows: Sequence[Row]) -> None:
        """Write rows of one run now (``nnchain train``'s path)."""
        for block in rows_to_blocks(run_id, rows):
            self.add(block)
        self.flush()

    def flush(self) -> None:
        """Write everything buffered; what was not written stays buffered for the next try."""
        if self.tables is None:
            self._log_batch()
            self._end_through_client()
        elif self.blocks or self._starts or self._ends:
            self.tables.write(self.blocks, self._starts, self._ends)  # all or nothing
            self.blocks, self._starts, self._ends = [], {}, {}
            self.pending_values = 0

    def _end_through_client(self) -> None:
        while self._ends:
            run_id, end = next(iter(self._ends.items()))
            if end.tags:
                RunWriter(self.client, run_id).set_tags(end.tags)
            self.client.set_terminated(run_id, status=end.status, end_time=end.end_ms)
            del self._ends[run_id]

    def _log_batch(self) -> None:
        """Chunks within the store's limits, each dropped once it was accepted."""
        from mlflow.entities import Metric

        for block in self.blocks:
            entities = []
            for key, values in block.columns.items():
                entities.extend(Metric(key, float(v), block.timestamps[i], block.first_step + i)
                                for i, v in enumerate(values))
            self._chunks.extend((block.run_id, part) for part in chunks(entities, MAX_METRICS))
        self.blocks, self.pending_values = [], 0
        while self._chunks:
            run_id, part = self._chunks[0]
            self.client.log_batch(run_id, metrics=part)
            self._chunks.pop(0)

    def dispose(self) -> None:
        if self.tables is not None:
            self.tables.dispose()


def last_steps(client, tracking_uri: str, run_ids: Sequence[str]) -> dict[str, int]:
    """The highest step recorded for each run (any key), -1 where none."""
    if not run_ids:
        return {}
    with mlflow_sql.tables_of(tracking_uri) as tables:
        if tables is not None:
            found = tables.last_steps(run_ids)
        else:
            found = {}
            for run_id in run_ids:
                steps = [m.step for key in client.get_run(run_id).data.metrics
                         for m in client.get_metric_history(run_id, key)]
                if steps:
                    found[run_id] = max(steps)
    return {run_id: found.get(run_id, -1) for run_id in run_ids}
