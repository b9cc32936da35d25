"""Helpers shared by the runner's fault tests: waiting for a condition, and where a test's
stores are (the default ``./nnchain-runs/`` or a PostgreSQL database)."""

from __future__ import annotations

import time
from pathlib import Path


def wait_for(predicate, timeout: float = 60.0, every: float = 0.1):
    """The first truthy value of ``predicate()``, polled every ``every`` s for ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")


def store_urls(home: Path, tracking_uri: str | None = None) -> tuple[str, str]:
    """(MLflow tracking URI, ledger URL) of the sweeps a test runs in ``home``.

    ``tracking_uri`` None: the default store, SQLite files ``mlflow.db`` and ``ledger.db``
    under ``home/nnchain-runs/``. A PostgreSQL URI: that database, which holds the ledger
    too (nnchain's default, nothing tells it so).
    """
    if tracking_uri is None:
        root = home / "nnchain-runs"
        return f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'ledger.db'}"
    return tracking_uri, tracking_uri


def uri_args(tracking_uri: str | None) -> list[str]:
    """``--tracking-uri URI`` for a CLI call, nothing for the default store."""
    return ["--tracking-uri", tracking_uri] if tracking_uri else []
