"""Fast writing for a sweep's one writer: metrics, and runs starting and ending.

A sweep logs hundreds of thousands of values. MLflow's ``log_batch`` into an SQL store
builds one ORM object per value (~10,000 values/s here), so on SQLite and PostgreSQL
stores whose schema nnchain was tested with, the writer hands each flush to
``mlflow_sql`` (bulk INSERTs into MLflow's own tables, one transaction a flush, runs
starting and ending after their metrics). Any other store (a tracking server, an
untested schema) gets client calls, each run's in the same order: its start, its
metrics in ``log_batch`` chunks of up to 1,000 values, its end. On a tracking server,
where the time is the server's, runs are sent side by side from a few threads
(``NNCHAIN_SERVER_THREADS``); a server with several workers then writes them at once.

Resending is safe: MLflow's SQL store ignores a metric row equal to one it holds
(its primary key is key, timestamp, step, run, value, is_nan; ``_log_metrics_once``
drops such rows on the key's IntegrityError), and a chunk is built once, its values and
timestamps fixed, and kept until the server accepted it. So a chunk whose answer was
lost, sent again by MLflow's HTTP retries or by the next flush, adds nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

from nnchain.tracking import mlflow_sql
from nnchain.tracking.mlflow_sql import ROWS_PER_STATEMENT, RunEnd
from nnchain.tracking.recorder import MAX_METRICS, MAX_TAGS, RunWriter, chunks
from nnchain.tracking.retry import with_retry

__all__ = ["ROWS_PER_STATEMENT", "Block", "MetricWriter", "Row", "last_steps",
           "map_requests", "rows_to_blocks", "server_threads"]

T = TypeVar("T")
R = TypeVar("R")

Row = tuple[str, float, int, int]  # key, value, timestamp ms, step
# Runs sent to a tracking server at once (1: one request at a time). Within MLflow's
# default HTTP pool (MLFLOW_HTTP_POOL_MAXSIZE, 10 connections).
THREADS_ENV = "NNCHAIN_SERVER_THREADS"
DEFAULT_THREADS = 4


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


def server_threads(tracking_uri: str) -> int:
    """Threads the writer sends a tracking server's requests from: ``NNCHAIN_SERVER_THREADS``
    (at least 1), else ``DEFAULT_THREADS``; 1 for any other store (the client's SQL store
    gains nothing from threads of one process, and SQLite takes one writer at a time)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return 1
    text = os.environ.get(THREADS_ENV, "").strip()
    try:
        return max(1, int(text)) if text else DEFAULT_THREADS
    except ValueError:
        from nnchain.errors import SpecError

        raise SpecError(THREADS_ENV, f"must be a whole number of threads, got {text!r}") \
            from None


@dataclass
class _Outbox:
    """What the client path has still to send for one run, in this order."""

    start: dict | None = None  # tags of a start (RUNNING) not yet sent
    chunks: deque[list] = field(default_factory=deque)  # log_batch chunks of Metric
    end: RunEnd | None = None

    def __bool__(self) -> bool:
        return self.start is not None or bool(self.chunks) or self.end is not None


class MetricWriter:
    """Buffers metric blocks, run starts and run ends of many runs; writes them in one
    transaction a flush (``mlflow_sql``) or, through the client, run by run (others)."""

    def __init__(self, client, tracking_uri: str) -> None:
        self.client = client
        # None: the client's path. A store away for a moment is waited for, as on a flush.
        self.tables = with_retry(mlflow_sql.open_tables, tracking_uri, what="the MLflow store")
        self.threads = server_threads(tracking_uri) if self.tables is None else 1
        self.blocks: list[Block] = []
        self.pending_values = 0  # metric values buffered and not yet written
        self._starts: dict[str, dict] = {}  # run id -> tags
        self._ends: dict[str, RunEnd] = {}
        self._outboxes: dict[str, _Outbox] = {}  # the client path's, by run id
        self._pool: ThreadPoolExecutor | None = None

    def start_run(self, run_id: str, tags: Mapping[str, str] | None = None) -> None:
        """The run is RUNNING (with ``tags``) from the next flush."""
        self._starts.setdefault(run_id, {}).update(tags or {})

    def end_run(self, run_id: str, status: str, tags: Mapping[str, str] | None = None,
                end_ms: int | None = None) -> None:
        """The run ends with ``status`` (and ``tags``) at the next flush, after its metrics;
        its end time ``end_ms`` (epoch ms), else now."""
        self._ends[run_id] = RunEnd(status, int(time.time() * 1000) if end_ms is None
                                    else end_ms, dict(tags or {}))

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
            self._flush_through_client()
        elif self.blocks or self._starts or self._ends:
            self.tables.write(self.blocks, self._starts, self._ends)  # all or nothing
            self.blocks, self._starts, self._ends = [], {}, {}
            self.pending_values = 0

    # ---- the client path ---------------------------------------------------------------
    def _flush_through_client(self) -> None:
        """Each run's start, metric chunks and end, in that order, runs side by side on
        ``threads`` threads. A run whose request failed keeps it and what follows it (its
        end stays behind its metrics); after the first failure no new request starts, and
        the flush raises it once the requests under way have ended."""
        self._fill_outboxes()
        runs = [run_id for run_id, outbox in self._outboxes.items() if outbox]
        failed = threading.Event()
        if self.threads == 1 or len(runs) == 1:
            errors = []
            for run_id in runs:
                errors.append(self._send(run_id, failed))
                if errors[-1] is not None:
                    break
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="nnchain-writer")
            errors = list(self._pool.map(lambda run_id: self._send(run_id, failed), runs))
        self._outboxes = {run_id: outbox for run_id, outbox in self._outboxes.items() if outbox}
        self.pending_values = sum(len(chunk) for outbox in self._outboxes.values()
                                  for chunk in outbox.chunks)
        error = next((error for error in errors if error is not None), None)
        if error is not None:
            raise error

    def _fill_outboxes(self) -> None:
        """Buffered starts, blocks and ends into each run's outbox; a run's values of all
        its blocks in chunks of up to ``MAX_METRICS`` (MLflow's limit a request)."""
        from mlflow.entities import Metric

        for run_id, tags in self._starts.items():
            outbox = self._outboxes.setdefault(run_id, _Outbox())
            outbox.start = {**(outbox.start or {}), **tags}
        by_run: dict[str, list] = {}
        for block in self.blocks:
            entities = by_run.setdefault(block.run_id, [])
            for key, values in block.columns.items():
                entities.extend(Metric(key, float(v), block.timestamps[i], block.first_step + i)
                                for i, v in enumerate(values))
        for run_id, entities in by_run.items():
            self._outboxes.setdefault(run_id, _Outbox()).chunks.extend(
                chunks(entities, MAX_METRICS))
        for run_id, end in self._ends.items():
            self._outboxes.setdefault(run_id, _Outbox()).end = end
        self.blocks, self._starts, self._ends = [], {}, {}

    def _send(self, run_id: str, failed: threading.Event) -> BaseException | None:
        """One run's outbox, each part dropped once the store accepted it; the error that
        stopped it, if one did. A run that ends in this outbox is not set RUNNING first
        (the end sets its status); its tags ride on its last metric chunk when they fit."""
        outbox = self._outboxes[run_id]
        try:
            if outbox.start is not None and outbox.end is None and not failed.is_set():
                self.client.update_run(run_id, status="RUNNING")
                if outbox.start:
                    RunWriter(self.client, run_id).set_tags(outbox.start)
                outbox.start = None
            while outbox.chunks and not failed.is_set():
                metrics, tags = outbox.chunks[0], []
                if len(outbox.chunks) == 1 and outbox.end is not None:
                    tags = _closing_tags(outbox, room=MAX_METRICS - len(metrics))
                self.client.log_batch(run_id, metrics=metrics, tags=tags)
                outbox.chunks.popleft()
                if tags:
                    outbox.start, outbox.end = None, replace(outbox.end, tags={})
            if outbox.end is not None and not outbox.chunks and not failed.is_set():
                tags = {**(outbox.start or {}), **outbox.end.tags}
                if tags:
                    RunWriter(self.client, run_id).set_tags(tags)
                self.client.set_terminated(run_id, status=outbox.end.status,
                                           end_time=outbox.end.end_ms)
                outbox.start = outbox.end = None
        except Exception as error:  # raised by the flush, after the other runs' requests
            failed.set()
            return error
        return None

    def dispose(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self.tables is not None:
            self.tables.dispose()


def _closing_tags(outbox: _Outbox, room: int) -> list:
    """The tags of a run's start and end as ``RunTag``s for its last request, or none when
    they would not fit in it (MLflow's limits: 100 tags, 1,000 entries a request)."""
    from mlflow.entities import RunTag

    tags = {**(outbox.start or {}), **outbox.end.tags}
    if not tags or len(tags) > min(MAX_TAGS, room):
        return []
    return [RunTag(key, str(value)) for key, value in tags.items()]


def map_requests(tracking_uri: str, call: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[call(item) for item in items]``, on ``server_threads`` threads for a tracking
    server (reads of many runs: each a request or more), one after another otherwise."""
    items = list(items)
    threads = min(server_threads(tracking_uri), len(items))
    if threads <= 1:
        return [call(item) for item in items]
    with ThreadPoolExecutor(threads, thread_name_prefix="nnchain-reader") as pool:
        return list(pool.map(call, items))


def last_steps(client, tracking_uri: str, run_ids: Sequence[str]) -> dict[str, int]:
    """The highest step recorded for each run (any key), -1 where none."""
    if not run_ids:
        return {}
    with mlflow_sql.tables_of(tracking_uri) as tables:
        if tables is not None:
            found = tables.last_steps(run_ids)
        else:
            def highest(run_id: str) -> int:
                return max((m.step for key in client.get_run(run_id).data.metrics
                            for m in client.get_metric_history(run_id, key)), default=-1)

            found = dict(zip(run_ids, map_requests(tracking_uri, highest, run_ids),
                             strict=True))
    return {run_id: found.get(run_id, -1) for run_id in run_ids}
