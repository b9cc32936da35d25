"""The sweep's one writer on SQL stores, read back through MLflow's own client: metric
values, runs starting and ending, and runs created ahead in bulk."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from nnchain.runner.driver import pack_size
from nnchain.tracking import sweep_runs
from nnchain.tracking.metrics import ROWS_PER_STATEMENT, Block, MetricWriter, rows_to_blocks
from nnchain.tracking.store import open_client

CONFIG = {"data": {"name": "xor", "seed": 0}, "model": {"hidden": [4], "activation": "tanh"},
          "train": {"epochs": 3, "lr": 0.1}, "seed": 7}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    else:
        uri = request.getfixturevalue("pg_url")
    client = open_client(uri)
    return SimpleNamespace(uri=uri, client=client,
                           experiment=client.create_experiment("writer", str(tmp_path / "a")))


def test_metric_values_read_back_exactly(store):
    run_id = store.client.create_run(store.experiment).info.run_id
    writer = MetricWriter(store.client, store.uri)
    writer.add(Block(run_id, 0, {"cost": [0.5, float("nan"), float("inf")], "acc": [1, 2, 3]},
                     [1000, 1001, 1002]))
    writer.add(Block(run_id, 3, {"cost": [0.25], "acc": [4]}, [1003]))
    assert writer.pending_values == 8
    writer.flush()
    assert writer.pending_values == 0
    history = store.client.get_metric_history(run_id, "cost")
    assert [m.step for m in history] == [0, 1, 2, 3]
    assert history[0].value == 0.5 and math.isnan(history[1].value)
    assert history[2].value > 1e308 and history[3].value == 0.25
    assert [m.value for m in store.client.get_metric_history(run_id, "acc")] == [1, 2, 3, 4]
    latest = store.client.get_run(run_id).data.metrics
    assert latest == {"cost": 0.25, "acc": 4.0}
    writer.dispose()


def test_a_flush_of_many_statements_reads_back_every_value(store):
    """More rows than one INSERT statement takes: full statements, then the rest."""
    runs = [store.client.create_run(store.experiment).info.run_id for _ in range(2)]
    steps = ROWS_PER_STATEMENT + 117  # per run and key: 4 x steps rows in all
    writer = MetricWriter(store.client, store.uri)
    for offset, run_id in enumerate(runs):
        writer.add(Block(run_id, 0, {"cost": [offset + s / 7 for s in range(steps)],
                                     "acc": [offset - s for s in range(steps)]},
                         [2000 + s for s in range(steps)]))
    writer.flush()
    writer.dispose()
    for offset, run_id in enumerate(runs):
        cost = store.client.get_metric_history(run_id, "cost")
        acc = store.client.get_metric_history(run_id, "acc")
        assert [(m.step, m.value, m.timestamp) for m in cost] == [
            (s, offset + s / 7, 2000 + s) for s in range(steps)]
        assert [m.value for m in acc] == [float(offset - s) for s in range(steps)]
        assert store.client.get_run(run_id).data.metrics == {
            "cost": offset + (steps - 1) / 7, "acc": float(offset - steps + 1)}


def test_rows_become_blocks_of_consecutive_steps_with_the_same_keys():
    rows = [("cost", 0.5, 1000, 0), ("acc", 0.1, 1000, 0), ("cost", 0.4, 1001, 1),
            ("acc", 0.2, 1001, 1), ("cost", 0.3, 1002, 2), ("acc", 0.3, 1002, 2),
            ("cost", 0.2, 1003, 3),  # a step without "acc"
            ("cost", 0.1, 1005, 5), ("cost", 0.05, 1006, 5)]  # a gap; step 5 again
    blocks = rows_to_blocks("r", rows)
    assert [(b.first_step, dict(b.columns), list(b.timestamps)) for b in blocks] == [
        (0, {"cost": [0.5, 0.4, 0.3], "acc": [0.1, 0.2, 0.3]}, [1000, 1001, 1002]),
        (3, {"cost": [0.2]}, [1003]),
        (5, {"cost": [0.05]}, [1005])]
    assert {b.run_id for b in blocks} == {"r"} and rows_to_blocks("r", []) == []


def test_rows_written_read_back_at_their_steps(store):
    run_id = store.client.create_run(store.experiment).info.run_id
    writer = MetricWriter(store.client, store.uri)
    writer.write(run_id, [(key, step / 10 + (key == "acc"), 1000 + step, step)
                          for step in range(50) for key in ("cost", "acc")])
    for key, offset in (("cost", 0.0), ("acc", 1.0)):
        history = store.client.get_metric_history(run_id, key)
        assert [(m.step, m.value, m.timestamp) for m in history] == [
            (step, step / 10 + offset, 1000 + step) for step in range(50)]
    writer.dispose()


def test_run_ends_wait_for_the_flush_after_their_metrics(store):
    run_id = store.client.create_run(store.experiment).info.run_id
    store.client.update_run(run_id, status="SCHEDULED")
    writer = MetricWriter(store.client, store.uri)
    writer.start_run(run_id, {"nnchain.attempt": "1"})
    assert store.client.get_run(run_id).info.status == "SCHEDULED"  # not before the flush
    writer.flush()
    run = store.client.get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags["nnchain.attempt"] == "1"

    writer.add(Block(run_id, 0, {"cost": [1.0, 0.5]}, [1000, 1001]))
    writer.end_run(run_id, "FAILED", {"nnchain.status_reason": "diverged at epoch 2"})
    assert store.client.get_run(run_id).info.status == "RUNNING"
    writer.flush()
    run = store.client.get_run(run_id)
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert run.data.tags["nnchain.status_reason"] == "diverged at epoch 2"
    assert [m.step for m in store.client.get_metric_history(run_id, "cost")] == [0, 1]

    writer.end_run(run_id, "KILLED", {"nnchain.status_reason": "again"})  # tags upserted
    writer.flush()
    assert store.client.get_run(run_id).data.tags["nnchain.status_reason"] == "again"
    writer.dispose()


def test_runs_made_ahead_in_bulk_equal_runs_made_through_the_client(store):
    common = dict(parent_run_id="p" * 32, sweep_id="s1")
    trial = SimpleNamespace(id=5, key="k" * 16, index=3, repeat=1, config=CONFIG,
                            overrides={"train.lr": 0.1, "model.hidden": [4]})
    one_id, one_uri = sweep_runs.create_trial_run(
        store.client, store.experiment, trial_key=trial.key, index=trial.index,
        repeat=trial.repeat, attempt=0, config=CONFIG, overrides=trial.overrides,
        scheduled=True, **common)
    made = sweep_runs.insert_scheduled_runs(store.client, store.uri, store.experiment,
                                            trials=[trial], **common)
    bulk_id, bulk_uri = made[5]
    one, bulk = store.client.get_run(one_id), store.client.get_run(bulk_id)
    assert bulk.data.params == one.data.params and bulk.data.params["train.lr"] == "0.1"
    drop = {"mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.source.git.commit"}
    assert {k: v for k, v in bulk.data.tags.items() if k not in drop} == \
        {k: v for k, v in one.data.tags.items() if k not in drop}
    for field in ("status", "run_name", "lifecycle_stage", "experiment_id", "user_id"):
        assert getattr(bulk.info, field) == getattr(one.info, field), field
    assert bulk.info.status == "SCHEDULED" and bulk.info.run_name == "t003 lr=0.1 hidden=[4]"
    assert bulk_uri == one_uri.replace(one_id, bulk_id) == bulk.info.artifact_uri
    nested = store.client.search_runs([store.experiment],
                                      filter_string=f"tags.`mlflow.parentRunId` = '{'p' * 32}'")
    assert {r.info.run_id for r in nested} == {one_id, bulk_id}


@pytest.mark.parametrize(("queued", "pack", "slots", "size"), [
    (48, 6, 2, 6), (20, 6, 2, 5), (7, 6, 2, 1), (1, 6, 2, 1), (100, 1, 4, 1), (3, 8, 0, 1)])
def test_packs_shrink_as_the_queue_drains(queued, pack, slots, size):
    assert pack_size(queued, pack, slots) == size


def test_metric_values_are_found_through_the_runs_index_on_sqlite(tmp_path):
    """A read of a few runs costs in proportion to those runs, not to the store: SQLite's
    plan searches the run-id index, never the primary key (which begins with the key and
    holds that key's values of every run)."""
    import sqlite3

    import sqlalchemy

    from nnchain.tracking import mlflow_sql

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = open_client(uri)
    experiment = client.create_experiment("reads", str(tmp_path / "a"))
    runs = [client.create_run(experiment).info.run_id for _ in range(3)]
    writer = MetricWriter(client, uri)
    for offset, run_id in enumerate(runs):
        writer.add(Block(run_id, 0, {"cost": [offset, offset + 0.5], "grad_norm/layer1": [1, 2],
                                     "other": [9, 9]}, [10, 11]))
    writer.flush()
    writer.dispose()
    tables = mlflow_sql.open_tables(uri)
    tables.engine.dispose()  # new connections from here: each traces its statements
    statements: list[str] = []

    @sqlalchemy.event.listens_for(tables.engine, "connect")
    def trace(dbapi_connection, _record):
        dbapi_connection.set_trace_callback(
            lambda sql: statements.append(sql) if sql.startswith("SELECT run_uuid, key") else None)

    for keys, prefixes in ((["cost"], ()), (["cost"], ("grad_norm/layer",))):
        rows = [row for chunk in tables.metric_values(runs[:2], keys, prefixes) for row in chunk]
        wanted = {"cost", *(["grad_norm/layer1"] if prefixes else [])}
        assert sorted(rows) == sorted(
            (run_id, key, step, value, False) for offset, run_id in enumerate(runs[:2])
            for key, values in (("cost", [offset, offset + 0.5]), ("grad_norm/layer1", [1, 2]))
            if key in wanted for step, value in enumerate(values))
    tables.dispose()
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:  # the plans of what ran
        plans = [row[-1] for sql in statements
                 for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}")]
    assert len(statements) == 2 and plans, statements
    assert all("index_metrics_run_uuid" in plan for plan in plans), plans
