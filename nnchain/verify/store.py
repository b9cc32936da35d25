"""Read-only queries for ``sweep verify`` on SQL stores (SQLite, PostgreSQL).

MLflow's client loads every param, tag and metric of each run it returns; through
``mlflow_sql`` these read just what a check needs, in one statement each, whatever the
number of runs. On a schema ``mlflow_sql`` was not tested with, the same answers come
from MLflow's client (one call a run and key: slower).
"""

from __future__ import annotations

from collections.abc import Sequence

from nnchain.tracking import mlflow_sql
from nnchain.tracking.store import every_page

Pair = tuple[str, str]  # run id, metric key


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _histories(tracking_uri: str, run_ids: Sequence[str]) -> dict[Pair, list[int]]:
    """The steps of every metric of the runs, read through the client."""
    client = _client(tracking_uri)
    return {(run_id, key): [m.step for m in client.get_metric_history(run_id, key)]
            for run_id in run_ids for key in client.get_run(run_id).data.metrics}


def step_aggregates(tracking_uri: str, run_ids: Sequence[str]) -> dict[Pair, tuple]:
    """Per run and key: (count, distinct steps, min step, max step), in one aggregate query."""
    with mlflow_sql.tables_of(tracking_uri) as tables:
        if tables is not None:
            return tables.step_aggregates(run_ids)
    return {pair: (len(steps), len(set(steps)), min(steps), max(steps))
            for pair, steps in _histories(tracking_uri, run_ids).items() if steps}


def steps_of(tracking_uri: str, pairs: Sequence[Pair]) -> dict[Pair, list[int]]:
    """Every step of each (run, key) pair (read for the few pairs found broken)."""
    wanted = set(pairs)
    steps: dict[Pair, list[int]] = {pair: [] for pair in pairs}
    run_ids = sorted({run_id for run_id, _ in pairs})
    with mlflow_sql.tables_of(tracking_uri) as tables:
        if tables is not None:
            for run_id, key, step in tables.metric_steps(run_ids):
                if (run_id, key) in wanted:
                    steps[(run_id, key)].append(step)
            return steps
    client = _client(tracking_uri)
    for run_id, key in wanted:
        steps[(run_id, key)] = [m.step for m in client.get_metric_history(run_id, key)]
    return steps


def nested_run_ids(tracking_uri: str, parent_run_id: str) -> set[str]:
    """Ids of the runs nested under ``parent_run_id`` (deleted ones included)."""
    with mlflow_sql.tables_of(tracking_uri) as tables:
        if tables is not None:
            return tables.nested_run_ids(parent_run_id)
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    experiments = [e.experiment_id for e in every_page(client.search_experiments,
                                                   view_type=ViewType.ALL)]
    if not experiments:
        return set()
    return {run.info.run_id for run in every_page(
        client.search_runs, experiment_ids=experiments, run_view_type=ViewType.ALL,
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")}


