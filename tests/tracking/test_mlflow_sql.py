"""The MLflow adapter: used only on schema revisions it was tested with, the same records
through MLflow's client on any other, and no hooks on engines other than its own."""

from __future__ import annotations

import math
import sqlite3
from types import SimpleNamespace

import pytest
import sqlalchemy
from mlflow import MlflowClient

from nnchain import versions
from nnchain.tracking import mlflow_sql, sweep_runs
from nnchain.tracking.metrics import Block, MetricWriter, last_steps
from nnchain.tracking.store import KIND_TAG, KIND_TRAINING, experiment_id, open_client
from nnchain.verify import store as verify_store

UNTESTED = "nnchain: MLflow store at schema revision"
# set by MLflow's client from the process that makes a run, not by nnchain
CLIENT_TAGS = {"mlflow.user", "mlflow.source.name", "mlflow.source.type",
               "mlflow.source.git.commit"}


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    """One SQLite store for the module, opened (made) by nnchain in this process."""
    folder = tmp_path_factory.mktemp("mlflow-sql")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return SimpleNamespace(uri=uri, client=open_client(uri), folder=folder)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, sqlite_store, tmp_path):
    if request.param == "sqlite":
        return SimpleNamespace(uri=sqlite_store.uri, client=sqlite_store.client, folder=tmp_path)
    uri = request.getfixturevalue("pg_url")
    return SimpleNamespace(uri=uri, client=open_client(uri), folder=tmp_path)


def record_sweep(store, name: str) -> str:
    """What a sweep writes: runs made ahead, metrics, starts (one a retry), ends (one run
    left RUNNING). Returns the parent run's id."""
    client = store.client
    exp = experiment_id(client, name, (store.folder / name).as_uri())
    parent = client.create_run(exp, tags={"nnchain.kind": "sweep"}).info.run_id
    trials = [SimpleNamespace(id=index, key=f"key{index}", index=index, repeat=index % 2,
                              overrides={"train.lr": lr},
                              config={"model": {"hidden": [4]}, "train": {"lr": lr},
                                      "seed": index})
              for index, lr in enumerate((0.1, 0.5, 1.0))]
    made = sweep_runs.insert_scheduled_runs(client, store.uri, exp, parent_run_id=parent,
                                            sweep_id="s1", trials=trials)
    runs = [made[trial.id][0] for trial in trials]
    writer = MetricWriter(client, store.uri)
    writer.start_run(runs[0])
    writer.start_run(runs[1], {"nnchain.attempt": "1"})
    writer.start_run(runs[2])
    writer.flush()
    for offset, run_id in enumerate(runs):
        writer.add(Block(run_id, 0, {"cost": [1.0 + offset, float("nan"), float("inf"), 0.25],
                                     "acc": [0.1, 0.2, 0.3, 0.4]}, [1000, 1001, 1002, 1003]))
    writer.add(Block(runs[0], 4, {"cost": [0.125]}, [1004]))
    writer.end_run(runs[0], "FINISHED", {"nnchain.train_seconds": "1.5"})
    writer.end_run(runs[1], "FAILED", {"nnchain.status_reason": "diverged at epoch 2"})
    writer.flush()
    writer.dispose()
    return parent


def read_back(client, parent: str) -> dict:
    """The sweep's runs as MLflow's client reads them, by trial key (run ids differ)."""
    exp = client.get_run(parent).info.experiment_id
    runs = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    found = {}
    for run in runs:
        run_id = run.info.run_id
        histories = {key: [(m.step, "nan" if math.isnan(m.value) else m.value, m.timestamp)
                           for m in client.get_metric_history(run_id, key)]
                     for key in run.data.metrics}
        found[run.data.tags["nnchain.trial_key"]] = {
            "info": {field: getattr(run.info, field) for field in (
                "status", "run_name", "lifecycle_stage", "user_id")},
            "ended": run.info.end_time is not None,
            "artifacts": run.info.artifact_uri.endswith(f"/{run_id}/artifacts"),
            "params": run.data.params,
            "tags": {k: v for k, v in run.data.tags.items()
                     if k not in CLIENT_TAGS and k != "mlflow.parentRunId"},
            "latest": {k: "nan" if math.isnan(v) else v for k, v in run.data.metrics.items()},
            "histories": histories}
    return found


def verify_reads(store, parent: str) -> dict:
    """What ``sweep verify`` and ``sync_last_steps`` read about the sweep's runs."""
    runs = sorted(verify_store.nested_run_ids(store.uri, parent))
    ids = {run_id: store.client.get_run(run_id).data.tags["nnchain.trial_key"]
           for run_id in runs}  # run ids differ between the two sweeps, trial keys not
    pairs = [(run_id, key) for run_id in runs for key in ("cost", "acc")]
    return {"nested": len(runs),
            "steps": {(ids[r], k): sorted(v)
                      for (r, k), v in verify_store.steps_of(store.uri, pairs).items()},
            "aggregates": {(ids[r], k): v for (r, k), v in
                           verify_store.step_aggregates(store.uri, runs).items()},
            "last": {ids[r]: step
                     for r, step in last_steps(store.client, store.uri, runs).items()}}


def test_an_untested_revision_gets_the_same_records_through_the_client(
        store, monkeypatch, capsys):
    tested_parent = record_sweep(store, "tested")
    expected = read_back(store.client, tested_parent)
    expected_reads = verify_reads(store, tested_parent)
    assert capsys.readouterr().err == ""
    [revision] = mlflow_sql.TESTED_REVISIONS

    # the store's revision is not a tested one, as with an MLflow newer than nnchain knows
    monkeypatch.setattr(mlflow_sql, "TESTED_REVISIONS", frozenset({"0123456789ab"}))
    monkeypatch.setattr(versions, "_said", set())
    writer = MetricWriter(store.client, store.uri)
    assert writer.tables is None  # the client's path, not the adapter
    client_parent = record_sweep(store, "untested")
    assert read_back(store.client, client_parent) == expected
    assert verify_reads(store, client_parent) == expected_reads
    assert verify_reads(store, tested_parent) == expected_reads  # the client reads the same
    err = capsys.readouterr().err
    assert err.count(UNTESTED) == 1 and err.count("\n") == 1, err  # said once, in one line
    assert f"revision {revision}, not one nnchain was tested with (0123456789ab)" in err

    assert set(expected) == {"key0", "key1", "key2"}  # the records are what was written
    key0, key1, key2 = expected["key0"], expected["key1"], expected["key2"]
    assert key0["info"]["status"] == "FINISHED" and key0["ended"]
    assert key1["info"]["status"] == "FAILED" and key1["tags"]["nnchain.attempt"] == "1"
    assert key2["info"]["status"] == "RUNNING" and not key2["ended"]
    assert key0["histories"]["cost"][1] == (1, "nan", 1001)
    assert key0["histories"]["cost"][2][1] > 1e308
    assert key0["latest"] == {"cost": 0.125, "acc": 0.4} and key0["params"]["train.lr"] == "0.1"
    assert expected_reads["aggregates"][("key0", "cost")] == (5, 5, 0, 4)
    assert expected_reads["aggregates"][("key2", "acc")] == (4, 4, 0, 3)
    assert expected_reads["last"] == {"key0": 4, "key1": 3, "key2": 3}
    assert expected_reads["nested"] == 3


def test_the_tested_revision_is_the_installed_mlflow_head(sqlite_store, tmp_path, monkeypatch,
                                                          capsys):
    tables = mlflow_sql.open_tables(sqlite_store.uri)
    assert tables is not None and tables.revision in mlflow_sql.TESTED_REVISIONS
    tables.dispose()
    assert mlflow_sql.open_tables("http://127.0.0.1:1") is None
    monkeypatch.setattr(versions, "_said", set())
    assert mlflow_sql.open_tables(f"sqlite:///{tmp_path / 'bare.db'}") is None  # no revision
    assert "schema revision unknown, not one nnchain was tested with" in capsys.readouterr().err


def test_the_switch_turns_the_adapter_off_without_a_word(sqlite_store, monkeypatch, capsys):
    monkeypatch.setattr(versions, "_said", set())
    monkeypatch.setenv(mlflow_sql.PLAIN_MLFLOW, "1")
    assert MetricWriter(sqlite_store.client, sqlite_store.uri).tables is None
    monkeypatch.setenv(mlflow_sql.PLAIN_MLFLOW, "0")
    writer = MetricWriter(sqlite_store.client, sqlite_store.uri)
    assert writer.tables is not None
    writer.dispose()
    assert capsys.readouterr().err == ""
    assert mlflow_sql.has_mlflow_tables(sqlite_store.uri)


def test_no_hook_on_engines_other_than_its_own(sqlite_store, tmp_path):
    """Opening a store, writing and reading through the adapter leaves every other engine
    of the process as SQLAlchemy makes it (the old code set synchronous=NORMAL on all)."""
    uri, client = sqlite_store.uri, sqlite_store.client
    run_id = client.create_run(client.create_experiment("hooks")).info.run_id
    writer = MetricWriter(client, uri)
    writer.add(Block(run_id, 0, {"cost": [1.0]}, [1000]))
    writer.flush()
    with writer.tables.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    writer.dispose()
    last_steps(client, uri, [run_id])

    other = tmp_path / "other.db"
    connection = sqlite3.connect(other)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    engine = sqlalchemy.create_engine(f"sqlite:///{other}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() != 30000
    engine.dispose()
    assert not sqlalchemy.event.contains(sqlalchemy.engine.Engine, "connect",
                                         mlflow_sql._sqlite_pragmas)


def test_experiments_carry_the_kind_that_opens_their_runs_table(sqlite_store):
    uri, client = sqlite_store.uri, sqlite_store.client
    made = experiment_id(client, "made", (sqlite_store.folder / "made").as_uri())
    older = client.create_experiment("older")  # made before nnchain set the kind
    assert KIND_TAG not in client.get_experiment(older).tags
    assert experiment_id(client, "older", None) == older
    assert experiment_id(client, "made", None) == made
    fresh = MlflowClient(tracking_uri=uri)
    for exp in (made, older):
        assert fresh.get_experiment(exp).tags[KIND_TAG] == KIND_TRAINING == \
            "custom_model_development"
