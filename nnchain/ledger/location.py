"""Where the ledger lives, without SQLAlchemy: read-only commands that open an SQLite
ledger directly (``nnchain.ledger.reading``) find it here, as ``store.open_ledger`` does.

By default the ledger lives beside the MLflow store: ``ledger.db`` next to an SQLite
store, the same database as a PostgreSQL store, ``./nnchain-runs/ledger.db`` for a
tracking server. ``--ledger-url`` or ``NNCHAIN_LEDGER_URL`` put it elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from nnchain.tracking.store import default_root, sqlite_path

LEDGER_ENV = "NNCHAIN_LEDGER_URL"


def resolve_ledger_url(tracking_uri: str, ledger_url: str | None = None) -> str:
    """The ledger's SQLAlchemy URL for a tracking URI (see the module docstring)."""
    url = ledger_url or os.environ.get(LEDGER_ENV)
    if url:
        return url
    db_file = sqlite_path(tracking_uri)
    if db_file is not None:
        return f"sqlite:///{db_file.parent / 'ledger.db'}"
    if tracking_uri.startswith(("postgresql", "mysql")):
        return tracking_uri
    return f"sqlite:///{default_root() / 'ledger.db'}"


def ledger_exists(url: str) -> bool:
    """Whether an SQLite ledger file exists (other databases: assumed to)."""
    db_file = sqlite_path(url)
    return db_file is None or Path(db_file).exists()
