"""Which database a sweep writes into, and a misnamed one refused before any request.

The store behind a real tracking server, with auth on, is tests/deploy/test_deploy_direct.py.
"""

from __future__ import annotations

import pytest

from nnchain.errors import SpecError
from nnchain.tracking.direct import STORE_ENV, check_store, sql_url

PG = "postgresql+psycopg://nnchain@postgres:5432/mlflow"


@pytest.mark.parametrize(("uri", "configured", "expected"), [
    ("sqlite:////runs/mlflow.db", None, "sqlite:////runs/mlflow.db"),
    ("sqlite:////runs/mlflow.db", PG, "sqlite:////runs/mlflow.db"),  # an SQL store: itself
    ("postgresql://h/db", PG, "postgresql://h/db"),
    ("http://mlflow:5000", None, None),  # a server, nothing configured: through its API
    ("http://mlflow:5000", PG, PG),
    ("https://mlflow.example", "sqlite:////srv/mlflow.db", "sqlite:////srv/mlflow.db"),
    ("http://mlflow:5000", "mysql://h/mlflow", None),  # not a database nnchain writes
    ("databricks", PG, None)])
def test_the_database_written(monkeypatch, uri, configured, expected):
    if configured is None:
        monkeypatch.delenv(STORE_ENV, raising=False)
    else:
        monkeypatch.setenv(STORE_ENV, configured)
    assert sql_url(uri) == expected


def test_a_url_that_is_no_database_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(STORE_ENV, "mysql://user:hunter2-secret@h/mlflow")
    with pytest.raises(SpecError) as refused:
        check_store("http://127.0.0.1:9/")  # nothing listens there: refused before a request
    text = str(refused.value)
    assert text.startswith(f"{STORE_ENV}: must be the postgresql:// or sqlite:/// URL")
    assert "hunter2-secret" not in text


def test_nothing_is_checked_without_the_variable_or_for_an_sql_store(monkeypatch):
    monkeypatch.delenv(STORE_ENV, raising=False)
    check_store("http://127.0.0.1:9/")
    monkeypatch.setenv(STORE_ENV, "mysql://h/mlflow")
    check_store("sqlite:////tmp/mlflow.db")  # the variable is for servers only
