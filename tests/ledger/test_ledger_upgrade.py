"""A ledger the released nnchain wrote (schema version 1, no driver identity columns) opens
and works: the missing columns are added on open, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect, text

from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import SCHEMA_VERSION, Meta, Sweep, utcnow
from nnchain.ledger.store import missing_columns, open_existing_ledger, open_ledger
from nnchain.runner.reaper import reap

# nnchain_sweeps as the released nnchain 0.1.0 made it (schema version "1")
RELEASED_SWEEP_COLUMNS = {
    "id", "name", "experiment", "experiment_id", "parent_run_id", "tracking_uri", "spec_text",
    "fingerprint", "metric_name", "metric_goal", "options", "status", "cancel_requested",
    "trial_count", "created_at", "updated_at", "heartbeat_at", "driver"}
ADDED = ("driver_host", "driver_pid", "driver_started", "driver_space")


@pytest.fixture(params=["sqlite", "postgresql"])
def released_ledger_url(request, tmp_path) -> str:
    """A ledger with the released tables and one RUNNING sweep, written as that release
    wrote it (its driver ``host:pid`` only)."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("pg_url")
    ledger = open_ledger(url)
    with ledger.engine.begin() as connection:
        for name in ADDED:
            connection.execute(text(f"ALTER TABLE nnchain_sweeps DROP COLUMN {name}"))
        connection.execute(text(
            "INSERT INTO nnchain_sweeps (id, name, experiment, experiment_id, parent_run_id, "
            "tracking_uri, spec_text, fingerprint, metric_name, metric_goal, options, status, "
            "cancel_requested, trial_count, created_at, updated_at, heartbeat_at, driver) "
            "VALUES ('old1', 'old', 'e', '', '', '', '', 'f', 'train_cost', 'minimize', '{}', "
            "'RUNNING', 0, 0, :at, :at, :at, 'otherhost:1234')"),
            {"at": utcnow() - timedelta(minutes=10)})
    columns = {c["name"] for c in inspect(ledger.engine).get_columns("nnchain_sweeps")}
    assert columns == RELEASED_SWEEP_COLUMNS
    ledger.dispose()
    return url


def _columns(ledger) -> set[str]:
    return {c["name"] for c in inspect(ledger.engine).get_columns("nnchain_sweeps")}


def test_the_release_lacks_exactly_the_added_columns():
    assert {c.name for c in Sweep.__table__.columns} - RELEASED_SWEEP_COLUMNS == set(ADDED)


@pytest.mark.parametrize("create", [False, True])
def test_a_released_ledger_is_upgraded_on_open(released_ledger_url, create):
    ledger = open_ledger(released_ledger_url, create=create)
    try:
        assert set(ADDED) <= _columns(ledger) and missing_columns(ledger.engine) == {}
        sweep = ledger_ops.find_sweep(ledger, "old")
        assert (sweep.driver, sweep.driver_host, sweep.driver_pid) == ("otherhost:1234", None,
                                                                       None)
        with ledger.session() as session:  # the version stays: older nnchains still read it
            assert session.get(Meta, "schema_version").value == SCHEMA_VERSION == "1"
        # no process to check: its 10-minute-old heartbeat decides, as before
        assert reap(ledger, None, grace=60) == ["old1"]
        assert ledger_ops.find_sweep(ledger, "old").status == "STOPPED"
    finally:
        ledger.dispose()
    again = open_ledger(released_ledger_url, create=create)  # idempotent
    again.dispose()


def test_the_commands_open_a_released_ledger(released_ledger_url, tmp_path):
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ledger = open_existing_ledger(tracking, released_ledger_url)
    try:
        assert set(ADDED) <= _columns(ledger)
        assert ledger_ops.find_sweep(ledger, "old1").name == "old"
    finally:
        ledger.dispose()
