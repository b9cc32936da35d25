"""A new SQLite store copied from the template is the store MLflow's migrations make.

Each test has its own cache folder (``XDG_CACHE_HOME``); the reference store is made with
templates off (``NNCHAIN_STORE_TEMPLATE=0``), in the same working directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nnchain.tracking import template
from nnchain.tracking.store import open_client


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(template.TEMPLATE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "cache" / "nnchain"


def contents(db_file: Path) -> dict:
    """Every table's definition and rows; the Default experiment without its times."""
    connection = sqlite3.connect(db_file)
    try:
        # a definition's lines as a set: MLflow's migrations write a table's constraints
        # in an order that varies from one store they make to the next
        schema = sorted((kind, name, table, sorted(line.strip().rstrip(",") for line in
                                                   (sql or "").splitlines()))
                        for kind, name, table, sql in connection.execute(
                            "SELECT type, name, tbl_name, sql FROM sqlite_master"))
        rows = {}
        for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            rows[name] = sorted(map(str, connection.execute(f'SELECT * FROM "{name}"')))
        rows["experiments"] = connection.execute(
            "SELECT experiment_id, name, artifact_location, lifecycle_stage, workspace "
            "FROM experiments").fetchall()
        times = connection.execute(
            "SELECT creation_time, last_update_time FROM experiments").fetchall()
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    finally:
        connection.close()
    return {"schema": schema, "rows": rows, "times": times, "page_size": page_size}


def test_a_store_from_the_template_is_the_store_migrations_make(cache, tmp_path, monkeypatch):
    open_client(f"sqlite:///{tmp_path / 'first' / 'mlflow.db'}")  # makes the template
    assert template.template_file().exists()
    copied = tmp_path / "copied" / "mlflow.db"
    open_client(f"sqlite:///{copied}")
    monkeypatch.setenv(template.TEMPLATE_ENV, "0")
    migrated = tmp_path / "migrated" / "mlflow.db"
    open_client(f"sqlite:///{migrated}")

    ours, theirs = contents(copied), contents(migrated)
    assert ours["schema"] == theirs["schema"]
    assert ours["rows"] == theirs["rows"]
    assert ours["rows"]["experiments"][0][2] == str(tmp_path / "mlruns" / "0")
    assert ours["page_size"] == theirs["page_size"] == 16384
    # made now, not when the template was
    first = contents(tmp_path / "first" / "mlflow.db")
    assert ours["times"][0][0] >= first["times"][0][0]
    assert ours["times"][0][0] == ours["times"][0][1]


def test_the_copy_is_a_working_store(cache, tmp_path):
    from mlflow import MlflowClient

    open_client(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    uri = f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    open_client(uri)
    client = MlflowClient(uri)
    experiment = client.create_experiment("kept")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "cost", 0.5, step=3)
    client.set_terminated(run.info.run_id)
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "cost")] \
        == [(3, 0.5)]
    assert experiment == "1"  # the template's Default experiment is 0, the next one 1


def test_the_template_is_made_once(cache, tmp_path):
    open_client(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    made = template.template_file().stat()
    open_client(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")
    again = template.template_file().stat()
    assert (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    assert oct(cache.stat().st_mode & 0o777) == "0o700"
    assert oct(again.st_mode & 0o777) == "0o600"


def test_a_damaged_template_is_replaced_and_the_store_still_made(cache, tmp_path):
    open_client(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    template.template_file().write_bytes(b"not a database" * 100)
    uri = f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    open_client(uri)  # made by MLflow's migrations instead
    assert contents(tmp_path / "b" / "mlflow.db")["rows"]["experiments"][0][1] == "Default"
    assert not template.template_file().exists()
    open_client(f"sqlite:///{tmp_path / 'c' / 'mlflow.db'}")  # a new template
    assert contents(template.template_file())["rows"]["experiments"][0][1] == "Default"


def test_an_unwritable_cache_falls_back_to_migrations(tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.chdir(tmp_path)
    open_client(f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}")
    assert contents(tmp_path / "a" / "mlflow.db")["rows"]["experiments"][0][1] == "Default"
