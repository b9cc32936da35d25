"""A new SQLite store copied from a template instead of built by MLflow's migrations.

MLflow makes a new store by running every migration of its history (about 5 s of CPU),
and each sweep or test on a new store paid that. The first store made with an installed
MLflow is kept as a template in the user's cache (``$XDG_CACHE_HOME/nnchain`` or
``~/.cache/nnchain``, a 0700 folder, one file per MLflow version); later stores are
copies of it with the one row MLflow fills per store, the Default experiment (its
artifact location, from the working directory, and its times), written as MLflow
would. ``NNCHAIN_STORE_TEMPLATE=0`` turns templates off. Any failure (an unwritable
cache, a template that does not check) falls back to MLflow's migrations.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import sqlite3
import time
from pathlib import Path

TEMPLATE_ENV = "NNCHAIN_STORE_TEMPLATE"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nnchain"


def template_file() -> Path:
    import mlflow

    from nnchain.tracking.mlflow_sql import PAGE_SIZE

    return cache_dir() / f"mlflow-{mlflow.__version__}-p{PAGE_SIZE}-store.db"


def copy_template(draft: Path) -> bool:
    """Fill the empty file ``draft`` with a new store from the template (made first if
    missing); False, with ``draft`` untouched or emptied, when that is not possible."""
    if os.environ.get(TEMPLATE_ENV, "").strip() == "0":
        return False
    from nnchain.tracking.store import open_private, private_dirs

    try:
        private_dirs(cache_dir())
        template = template_file()
        with os.fdopen(open_private(template.with_name(template.name + ".lock")), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not template.exists():
                _make_template(template)
            with os.fdopen(open_private(template, os.O_RDONLY), "rb") as source:
                payload = source.read()
        with os.fdopen(open_private(draft, os.O_WRONLY | os.O_TRUNC), "wb") as target:
            target.write(payload)
        try:
            _fill_default_experiment(draft)
        except sqlite3.Error:  # a damaged template: the next store makes a new one
            template.unlink(missing_ok=True)
            raise
        return True
    except (OSError, sqlite3.Error):
        with open(draft, "wb"):  # empty again: MLflow then makes the store from nothing
            pass
        return False


def _make_template(template: Path) -> None:
    """The store MLflow's migrations make, with 16 KiB pages, checked, put in place whole."""
    from mlflow import MlflowClient

    from nnchain.tracking.mlflow_sql import use_large_pages
    from nnchain.tracking.store import open_private

    for left in template.parent.glob(f"{template.name}.*.new"):  # by a killed process:
        left.unlink(missing_ok=True)                             # drafts are made locked
    # a name never used before: MLflow keeps a store per URI for the process's life
    draft = template.with_name(f"{template.name}.{secrets.token_hex(8)}.new")
    draft.unlink(missing_ok=True)
    os.close(open_private(draft, os.O_RDWR | os.O_CREAT | os.O_EXCL))
    try:
        MlflowClient(tracking_uri=f"sqlite:///{draft}").search_experiments(max_results=1)
        use_large_pages(draft)
        _check(draft)
        os.replace(draft, template)
    finally:
        draft.unlink(missing_ok=True)


def _check(db_file: Path) -> None:
    connection = sqlite3.connect(db_file)
    try:
        if connection.execute("PRAGMA integrity_check").fetchone()[0] != "ok" or \
                connection.execute("SELECT COUNT(*) FROM experiments").fetchone()[0] != 1:
            raise sqlite3.DatabaseError("the store template does not check")
    finally:
        connection.close()


def _fill_default_experiment(db_file: Path) -> None:
    """The Default experiment as MLflow's ``SqlAlchemyStore`` makes it for this process:
    artifacts under ``./mlruns`` of the working directory, created now."""
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.utils.uri import append_to_uri_path, resolve_uri_if_local

    location = append_to_uri_path(resolve_uri_if_local(DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH),
                                  "0")
    now = int(time.time() * 1000)
    connection = sqlite3.connect(db_file)
    try:
        with connection:
            changed = connection.execute(
                "UPDATE experiments SET artifact_location = ?, creation_time = ?, "
                "last_update_time = ? WHERE experiment_id = 0", (location, now, now)).rowcount
        if changed != 1:
            raise sqlite3.DatabaseError("the store template has no Default experiment")
    finally:
        connection.close()
