"""Opening MLflow stores: concurrent creation, schema checks, names and redaction."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import sqlalchemy

from nnchain.errors import SpecError, StoreError
from nnchain.tracking.store import check_name, open_client, redact, resolve_tracking_uri

OPEN_AND_CREATE = (
    "import sys; from nnchain.tracking.store import open_client, experiment_id; "
    "c = open_client(sys.argv[1]); print(experiment_id(c, 'shared', None))")


def open_concurrently(uri: str, processes: int = 6, **extra: str) -> list[str]:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", **extra)
    running = [subprocess.Popen([sys.executable, "-c", OPEN_AND_CREATE, uri], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(processes)]
    outputs = []
    for process in running:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        outputs.append(out.strip())
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("cache", ["user", "new"])
def test_brand_new_sqlite_store_opened_by_many_processes(tmp_path, cache):
    """With the user's store template, or a new cache where the processes race to build
    the template first."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    extra = {"XDG_CACHE_HOME": str(tmp_path / "cache")} if cache == "new" else {}
    ids = open_concurrently(uri, **extra)
    assert len(set(ids)) == 1  # one experiment, created once
    client = open_client(uri)  # the store is usable afterwards
    assert client.get_experiment_by_name("shared").experiment_id == ids[0]


@pytest.mark.slow
def test_brand_new_postgres_store_opened_by_many_processes(pg_url):
    ids = open_concurrently(pg_url, processes=4)
    assert len(set(ids)) == 1
    assert open_client(pg_url).get_experiment_by_name("shared").experiment_id == ids[0]


def test_out_of_date_schema_is_refused_with_the_fix(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    open_client(uri)
    engine = sqlalchemy.create_engine(uri)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = "
                                           "'451aebb31d03'"))  # an old revision
    engine.dispose()
    other = f"sqlite:///{tmp_path}/./mlflow.db"  # same file; MLflow caches stores per URI
    with pytest.raises(StoreError, match="mlflow db upgrade"):
        open_client(other)
    with engine.connect() as connection:  # never migrated silently
        version = connection.execute(sqlalchemy.text(
            "SELECT version_num FROM alembic_version")).scalar()
    assert version == "451aebb31d03"


def test_unwritable_location_is_bad_input(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SpecError, match="writable"):
        open_client(f"sqlite:///{blocker / 'sub' / 'mlflow.db'}")


def test_unreachable_postgres_is_a_store_error():
    with pytest.raises(StoreError, match="cannot open"):
        open_client("postgresql://nobody:secret@127.0.0.1:1/none")


@pytest.mark.parametrize("name", ["../up", "a/b", "a\\b", "..", "", " lead", "x" * 101,
                                  "tab\tname"])
def test_path_like_names_are_refused(name):
    with pytest.raises(SpecError):
        check_name("experiment", name)


def test_redact_hides_passwords_only():
    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("http://h:5000") == "http://h:5000"
    assert "s3cret" not in str(StoreError(redact("http://u:s3cret@h")))


def test_default_uri_is_sqlite_under_nnchain_runs(runs_home):
    assert resolve_tracking_uri(None) == \
        f"sqlite:///{runs_home.resolve() / 'nnchain-runs' / 'mlflow.db'}"


@pytest.mark.parametrize("template", [True, False], ids=["from-template", "migrated"])
def test_a_store_made_meanwhile_by_another_process_is_kept(tmp_path, monkeypatch, template):
    """`mlflow ui` may create the store while nnchain builds its draft (copied from the
    template, or made by MLflow's migrations): the draft must not replace that file under
    the other process's open connections."""
    from mlflow import MlflowClient

    from nnchain.tracking import store
    from nnchain.tracking import template as templates

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(templates.TEMPLATE_ENV, "1" if template else "0")
    db_file = tmp_path / "mlflow.db"
    owner, name = (templates, "_fill_default_experiment") if template else \
        (MlflowClient, "search_experiments")
    real = getattr(owner, name)

    def meanwhile(*args, **kwargs):
        result = real(*args, **kwargs)
        if not str(args[0]).startswith(str(tmp_path / "cache")):  # not the template's
            db_file.write_bytes(b"made by another process")
        return result

    monkeypatch.setattr(owner, name, meanwhile)
    store._create_sqlite_atomically(f"sqlite:///{db_file}")
    assert db_file.read_bytes() == b"made by another process"
    assert not (tmp_path / "mlflow.db.new").exists()


def test_a_new_sqlite_store_has_large_pages_and_wal(tmp_path):
    import sqlite3

    from nnchain.tracking.mlflow_sql import PAGE_SIZE

    db_file = tmp_path / "mlflow.db"
    open_client(f"sqlite:///{db_file}").create_experiment("pages")
    connection = sqlite3.connect(db_file)
    try:
        assert connection.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE > 4096
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        connection.close()
