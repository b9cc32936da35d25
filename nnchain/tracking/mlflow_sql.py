"""The one place nnchain reads and writes MLflow's own tables directly (SQLite, PostgreSQL).

MLflow's client builds one ORM object per value and loads every param, tag and metric of
each run it returns; a sweep's writer and ``sweep verify`` go around it here, with bulk
statements on MLflow's tables. The tables are MLflow's, so this module is used only on
a store whose alembic revision is one it was tested with (``TESTED_REVISIONS``):
``open_tables`` gives None for any other store, and its callers take MLflow's public
client (slower, the same records), as they do when ``NNCHAIN_PLAIN_MLFLOW=1`` turns this
module off. It also tunes the SQLite file (page size, WAL), and puts SQLite's pragmas on
its own engines only, never on SQLAlchemy's ``Engine`` class.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from itertools import chain, islice, repeat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nnchain.tracking.direct import sql_url

if TYPE_CHECKING:
    from nnchain.tracking.metrics import Block

# The head of mlflow 3.17.x's migrations (mlflow/store/db_migrations/versions), the schema
# the tests in tests/tracking and tests/verify ran against.
TESTED_REVISIONS = frozenset({"dc11669786a5"})
PAGE_SIZE = 16384  # bytes, of a new SQLite store
# SQLite's page cache on this module's connections, in KiB (SQLite's default is 2 MiB):
# the writer's inserts touch the end of each of the metrics table's four B-trees.
CACHE_KIB = 16384
_CLAMP = sys.float_info.max
# Metric rows an INSERT statement: against a statement a row (executemany), the driver
# spends ~20% less CPU a row on SQLite and half on PostgreSQL. 1,000 rows bind 6,000
# variables, within what SQLite allows since 3.32 (32,766) and PostgreSQL (65,535).
ROWS_PER_STATEMENT = 1000 if sqlite3.sqlite_version_info >= (3, 32) else 150
RUNS_PER_READ = 1_000  # runs whose metric values are read (and held) at once
RUNS_PER_INSERT = 1_000  # runs made SCHEDULED per INSERT (their params held at once)
# Set (to anything but "" or "0"): MLflow's client for everything, whatever the revision.
PLAIN_MLFLOW = "NNCHAIN_PLAIN_MLFLOW"


@dataclass(frozen=True)
class RunEnd:
    """A run's end as the writer buffers it."""

    status: str
    end_ms: int
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NewRun:
    """A run made ahead in the SCHEDULED state, as ``MlflowClient.create_run`` would make it."""

    run_id: str
    name: str
    artifact_uri: str
    tags: Mapping[str, str]
    params: Mapping[str, str]


def open_tables(tracking_uri: str) -> MlflowTables | None:
    """MLflow's tables of an SQL store at a tested revision (a tracking server's own
    database where ``NNCHAIN_TRACKING_STORE_URL`` names it: ``direct``); None for any other
    store (a tracking server, a schema this module was not tested with: said once, or the
    module switched off)."""
    url = sql_url(tracking_uri)
    if url is None or os.environ.get(PLAIN_MLFLOW, "").strip() not in ("", "0"):
        return None
    from sqlalchemy import create_engine, event

    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:  # a store that cannot be reached raises: callers retry it
        with engine.connect() as connection:
            revision = schema_revision(connection)
    except Exception:
        engine.dispose()
        raise
    if revision not in TESTED_REVISIONS:
        engine.dispose()
        _warn_untested(revision)
        return None
    return MlflowTables(engine, revision)


def schema_revision(connection) -> str:
    """The store's alembic revision ("" when it has none)."""
    from sqlalchemy import inspect, text

    if not inspect(connection).has_table("alembic_version"):
        return ""
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar() or ""


@contextmanager
def tables_of(tracking_uri: str) -> Iterator[MlflowTables | None]:
    """``open_tables`` for a few reads, disposed afterwards."""
    tables = open_tables(tracking_uri)
    try:
        yield tables
    finally:
        if tables is not None:
            tables.dispose()


def _warn_untested(revision: str) -> None:
    from nnchain.versions import say_once

    say_once(f"MLflow store at schema revision {revision or 'unknown'}, not one nnchain was "
             f"tested with ({', '.join(sorted(TESTED_REVISIONS))}); reading and writing "
             f"through MLflow's client (slower)")


def ordered_run_ids() -> Iterator[str]:
    """Run ids for runs made in bulk, in the form of MLflow's (32 hex digits), that sort
    in the order made: the time in ms, a count, then 56 random bits. The metrics table's
    two indexes that begin with the run id then grow at their end as a sweep records,
    instead of at random places (uuid4), which costs SQLite far more CPU a value once
    those indexes outgrow its page cache (benchmarks/README.md)."""
    made_ms = int(time.time() * 1000)
    for count in range(1 << 24):
        yield f"{made_ms:012x}{count:06x}{secrets.token_hex(7)}"
    yield from ordered_run_ids()  # a new millisecond after 16 M runs


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """On this module's own SQLite connections: wait for a busy store, a larger page
    cache, and in WAL mode commit with ``synchronous=NORMAL``, which WAL keeps safe
    against a crashed process."""
    dbapi_connection.execute("PRAGMA busy_timeout=30000")
    dbapi_connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    mode = dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() == "wal":
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")


# A metric row's columns in the order the writer builds and sorts its rows: MLflow's
# primary key first (key, timestamp, step, run), so that the tuples sort as they are.
_METRIC_COLUMNS = "key, timestamp, step, run_uuid, value, is_nan"
_COPY_METRICS = f"COPY metrics ({_METRIC_COLUMNS}) FROM STDIN"


@cache
def _insert_sql(marker: str, rows: int) -> str:
    row = f"({marker}, {marker}, {marker}, {marker}, {marker}, {marker})"
    return f"INSERT INTO metrics ({_METRIC_COLUMNS}) VALUES " + ", ".join([row] * rows)


def _sanitized(columns: Sequence[Sequence[float]]) -> tuple[list[float], list[bool]]:
    """MLflow's storage of values, for many columns at once (one list of them all, in
    order): NaN as 0 with is_nan, infinities clamped."""
    if not columns:
        return [], []
    array = np.concatenate([np.asarray(values, dtype=np.float64) for values in columns])
    is_nan = np.isnan(array)
    array = np.clip(np.where(is_nan, 0.0, array), -_CLAMP, _CLAMP)
    return array.tolist(), is_nan.tolist()


class MlflowTables:
    """MLflow's ``runs``, ``tags``, ``params``, ``metrics`` and ``latest_metrics`` on one
    engine of this module's own; the table definitions are the installed MLflow's."""

    def __init__(self, engine, revision: str) -> None:
        from mlflow.store.tracking.dbmodels.models import (
            SqlLatestMetric,
            SqlParam,
            SqlRun,
            SqlTag,
        )

        self.engine = engine
        self.revision = revision
        self.runs, self.tags, self.params, self.latest = (
            model.__table__ for model in (SqlRun, SqlTag, SqlParam, SqlLatestMetric))
        self.marker = "?" if engine.dialect.paramstyle == "qmark" else "%s"

    def dispose(self) -> None:
        self.engine.dispose()

    # ---- writes ----------------------------------------------------------------------
    def write(self, blocks: Sequence[Block], starts: Mapping[str, Mapping[str, str]],
              ends: Mapping[str, RunEnd]) -> None:
        """Metric blocks, then runs starting (RUNNING, their tags) and ending (status, end
        time, tags), in one transaction: a run is never ended without its metrics."""
        rows: list[tuple] = []
        latest: dict[tuple[str, str], dict] = {}
        # every value of the flush sanitized by numpy at once, then cut back into columns
        all_clean, all_nan = _sanitized([values for block in blocks
                                         for values in block.columns.values()])
        start = 0
        for block in blocks:
            steps = range(block.first_step, block.first_step + len(block.timestamps))
            stamps, run_id = list(block.timestamps), block.run_id
            for key, values in block.columns.items():
                end = start + len(values)
                clean, is_nan = all_clean[start:end], all_nan[start:end]
                start = end
                rows.extend(zip(repeat(key), stamps, steps, repeat(run_id), clean, is_nan))
                last = {"key": key, "value": clean[-1], "timestamp": stamps[-1],
                        "step": steps[-1], "is_nan": is_nan[-1], "run_uuid": run_id}
                known = latest.get((run_id, key))
                if known is None or last["step"] >= known["step"]:
                    latest[(run_id, key)] = last
        # in the order of MLflow's primary key (key, timestamp, step, run), the rows' own
        # order: SQLite then appends to its index pages (15-20% less CPU a flush here)
        rows.sort()
        with self.engine.begin() as connection:
            if rows:
                self._insert_metrics(connection, rows)
                connection.execute(self._upsert(self.latest, ("key", "run_uuid"),
                                                ("value", "timestamp", "step", "is_nan"),
                                                newer_step=True), list(latest.values()))
            self._write_runs(connection, starts, ends)

    def _insert_metrics(self, connection, rows: list[tuple]) -> None:
        """``rows`` through PostgreSQL's COPY with psycopg 3 (its C code writes them: psycopg
        parses an INSERT's placeholders again on every call unless the statement is short),
        else in statements of ``ROWS_PER_STATEMENT`` rows (the last one fewer)."""
        if self.engine.dialect.driver == "psycopg":
            cursor = connection.connection.dbapi_connection.cursor()
            with cursor, cursor.copy(_COPY_METRICS) as copy:
                for row in rows:
                    copy.write_row(row)
            return
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            part = rows[start:start + ROWS_PER_STATEMENT]
            connection.exec_driver_sql(_insert_sql(self.marker, len(part)),
                                       tuple(chain.from_iterable(part)))

    def _write_runs(self, connection, starts: Mapping[str, Mapping[str, str]],
                    ends: Mapping[str, RunEnd]) -> None:
        from sqlalchemy import bindparam, update

        run = self.runs.c
        tags: list[tuple[str, Mapping[str, str]]] = []
        if starts:
            connection.execute(update(self.runs).where(run.run_uuid.in_(list(starts)))
                               .values(status="RUNNING", end_time=None))
            tags.extend(starts.items())
        if ends:  # one statement, executed for every end
            connection.execute(
                update(self.runs).where(run.run_uuid == bindparam("ended"))
                .values(status=bindparam("new_status"), end_time=bindparam("end_ms")),
                [{"ended": run_id, "new_status": end.status, "end_ms": end.end_ms}
                 for run_id, end in ends.items()])
            tags.extend((run_id, end.tags) for run_id, end in ends.items())
        rows = [{"key": k, "value": v, "run_uuid": run_id}
                for run_id, run_tags in tags for k, v in run_tags.items()]
        if rows:
            connection.execute(self._upsert(self.tags, ("key", "run_uuid"), ("value",)), rows)

    def _upsert(self, table, keys: tuple[str, ...], values: tuple[str, ...],
                newer_step: bool = False):
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        statement = insert(table)
        return statement.on_conflict_do_update(
            index_elements=[table.c[name] for name in keys],
            set_={name: statement.excluded[name] for name in values},
            where=statement.excluded.step >= table.c.step if newer_step else None)

    def insert_scheduled_runs(self, experiment_id: str, runs: Iterable[NewRun],
                              now_ms: int) -> None:
        """``runs`` made SCHEDULED in one transaction, with the columns ``create_run`` fills;
        taken and written ``RUNS_PER_INSERT`` at a time, so that a sweep of many trials
        never holds every run's params at once."""
        from sqlalchemy import insert

        with self.engine.begin() as connection:
            for chunk in _chunks(runs, RUNS_PER_INSERT):
                rows, tags, params = [], [], []
                for new in chunk:
                    rows.append({"run_uuid": new.run_id, "name": new.name,
                                 "source_type": "UNKNOWN", "source_name": "",
                                 "entry_point_name": "", "user_id": "unknown",
                                 "status": "SCHEDULED", "start_time": now_ms,
                                 "end_time": None, "deleted_time": None,
                                 "source_version": "", "lifecycle_stage": "active",
                                 "artifact_uri": new.artifact_uri,
                                 "experiment_id": int(experiment_id)})
                    tags.extend({"key": k, "value": v, "run_uuid": new.run_id}
                                for k, v in new.tags.items())
                    params.extend({"key": k, "value": v, "run_uuid": new.run_id}
                                  for k, v in new.params.items())
                connection.execute(insert(self.runs), rows)
                if tags:
                    connection.execute(insert(self.tags), tags)
                if params:
                    connection.execute(insert(self.params), params)

    # ---- reads -----------------------------------------------------------------------
    def _rows(self, sql: str, **values) -> list[tuple]:
        from sqlalchemy import bindparam, text

        statement = text(sql)
        if "ids" in values:
            statement = statement.bindparams(bindparam("ids", expanding=True))
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(statement, values)]

    def last_steps(self, run_ids: Sequence[str]) -> dict[str, int]:
        """The highest step of each run that has metrics (any key)."""
        if not run_ids:
            return {}
        rows = self._rows("SELECT run_uuid, MAX(step) FROM metrics WHERE run_uuid IN :ids "
                          "GROUP BY run_uuid", ids=list(run_ids))
        return {run_id: int(step) for run_id, step in rows}

    def step_aggregates(self, run_ids: Sequence[str]) -> dict[tuple[str, str], tuple]:
        """Per run and key: (count, distinct steps, min step, max step), one query."""
        if not run_ids:
            return {}
        rows = self._rows("SELECT run_uuid, key, COUNT(*), COUNT(DISTINCT step), MIN(step), "
                          "MAX(step) FROM metrics WHERE run_uuid IN :ids GROUP BY run_uuid, key",
                          ids=list(run_ids))
        return {(run_id, key): tuple(int(v) for v in stats) for run_id, key, *stats in rows}

    def metric_steps(self, run_ids: Sequence[str]) -> list[tuple[str, str, int]]:
        """(run id, key, step) of every metric value of the runs."""
        if not run_ids:
            return []
        return [(run_id, key, int(step)) for run_id, key, step in self._rows(
            "SELECT run_uuid, key, step FROM metrics WHERE run_uuid IN :ids",
            ids=list(run_ids))]

    def metric_values(self, run_ids: Sequence[str], keys: Sequence[str],
                      key_prefixes: Sequence[str] = ()
                      ) -> Iterator[list[tuple[str, str, int, float, bool]]]:
        """(run id, key, step, value, is NaN) of the runs' values of ``keys`` and of every
        key that begins with one of ``key_prefixes``; in chunks of runs, each chunk every
        wanted value of its runs (a reader can finish each run's curves, not hold every
        value of a large sweep). Found through the runs' index: on SQLite, ``+key`` keeps
        the planner off the primary key, which begins with the key and so reads that key's
        values of every run in the store, whatever the chunk."""
        column = "+key" if self.engine.dialect.name == "sqlite" else "key"
        likes = [prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
                 for prefix in key_prefixes]
        marker = self.marker
        wanted = ([f"{column} IN ({', '.join([marker] * len(keys))})"] if keys else []) + \
            [f"{column} LIKE {marker} ESCAPE '\\'"] * len(likes)
        if not wanted or not run_ids:
            return
        with self.engine.connect() as connection:
            # the driver's own cursor: its rows come as tuples, without SQLAlchemy's work a row
            cursor = connection.connection.dbapi_connection.cursor()
            try:
                for start in range(0, len(run_ids), RUNS_PER_READ):
                    ids = list(run_ids[start:start + RUNS_PER_READ])
                    cursor.execute(
                        "SELECT run_uuid, key, step, value, is_nan FROM metrics WHERE run_uuid "
                        f"IN ({', '.join([marker] * len(ids))}) AND ({' OR '.join(wanted)})",
                        (*ids, *keys, *likes))
                    yield cursor.fetchall()
            finally:
                cursor.close()

    def nested_run_ids(self, parent_run_id: str) -> set[str]:
        """Ids of the runs nested under ``parent_run_id`` (deleted ones included)."""
        return {run_id for (run_id,) in self._rows(
            "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = :parent",
            parent=parent_run_id)}


def has_mlflow_tables(tracking_uri: str) -> bool:
    """Whether the database at ``tracking_uri`` holds MLflow's tables (at any revision);
    an unreachable database raises."""
    from sqlalchemy import create_engine, inspect

    engine = create_engine(tracking_uri)
    try:
        return inspect(engine).has_table("experiments")
    finally:
        engine.dispose()


# ---- the SQLite file ---------------------------------------------------------------------
def use_large_pages(db_file: Path) -> None:
    """Rebuild a brand-new store with 16 KiB pages instead of SQLite's 4 KiB: a sweep's
    writer then spends ~15% less CPU a metric value on MLflow's ``metrics`` table and its
    three indexes (benchmarks/README.md). Done before WAL mode, which fixes the page size."""
    connection = sqlite3.connect(db_file, isolation_level=None)
    try:
        connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
        connection.execute("VACUUM")
    finally:
        connection.close()


def use_wal(db_file: Path) -> None:
    """Put an SQLite store in WAL mode (kept in the file): readers such as the UI do not
    block the sweep's writer."""
    connection = sqlite3.connect(db_file, timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


@contextmanager
def advisory_lock(uri: str, key: int) -> Iterator[None]:
    """A PostgreSQL session-level advisory lock on ``uri``'s database, held inside."""
    from sqlalchemy import create_engine, text

    engine = create_engine(uri)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
