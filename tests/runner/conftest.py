"""Fixtures of the runner's fault tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request) -> str | None:
    """The store a scenario runs on: None for the default ``./nnchain-runs/`` (SQLite), or
    a fresh PostgreSQL database (conftest's ``pg_url``, skipped when PostgreSQL is down),
    which then holds the ledger too."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_url")
