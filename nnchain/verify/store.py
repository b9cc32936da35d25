"""Read-only queries on MLflow's own tables, for SQL stores (SQLite, PostgreSQL).

MLflow's client loads every param, tag and metric of each run it returns; these
queries read just what a check needs, in one statement each, whatever the number of
runs. The schema is MLflow's, checked current by ``open_client``.
"""

from __future__ import annotations

from collections.abc import Sequence

Pair = tuple[str, str]  # run id, metric key

_STATS = ("SELECT run_uuid, key, COUNT(*), COUNT(DISTINCT step), MIN(step), MAX(step) "
          "FROM metrics WHERE run_uuid IN :ids GROUP BY run_uuid, key")
_STEPS = "SELECT run_uuid, key, step FROM metrics WHERE run_uuid IN :ids"
_NESTED = "SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId' AND value = :parent"


def _rows(tracking_uri: str, sql: str, **values) -> list[tuple]:
    from sqlalchemy import bindparam, create_engine, text

    statement = text(sql)
    if "ids" in values:
        statement = statement.bindparams(bindparam("ids", expanding=True))
    engine = create_engine(tracking_uri)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(statement, values)]
    finally:
        engine.dispose()


def step_aggregates(tracking_uri: str, run_ids: Sequence[str]) -> dict[Pair, tuple]:
    """Per run and key: (count, distinct steps, min step, max step), in one aggregate query."""
    rows = _rows(tracking_uri, _STATS, ids=list(run_ids))
    return {(run_id, key): tuple(int(v) for v in stats) for run_id, key, *stats in rows}


def steps_of(tracking_uri: str, pairs: Sequence[Pair]) -> dict[Pair, list[int]]:
    """Every step of each (run, key) pair (read for the few pairs found broken)."""
    wanted = set(pairs)
    steps: dict[Pair, list[int]] = {pair: [] for pair in pairs}
    for run_id, key, step in _rows(tracking_uri, _STEPS, ids=sorted({r for r, _ in pairs})):
        if (run_id, key) in wanted:
            steps[(run_id, key)].append(int(step))
    return steps


def nested_run_ids(tracking_uri: str, parent_run_id: str) -> set[str]:
    """Ids of the runs nested under ``parent_run_id`` (deleted ones included)."""
    return {run_id for (run_id,) in _rows(tracking_uri, _NESTED, parent=parent_run_id)}
