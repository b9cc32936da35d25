"""Read-only queries on an SQLite ledger through the standard library's ``sqlite3``.

``nnchain compare`` is a command people run often and wait for: importing SQLAlchemy costs
it more than its queries do. On an SQLite ledger it reads here instead, with the same SQL
the SQLAlchemy path runs and only the JSON values it shows, extracted by SQLite's ``->``
operator (the value's own JSON text, so numbers come back digit for digit).

Everything here answers ``None`` when the direct path does not apply (another database, a
symbolic link, a ledger an older nnchain made, an SQLite without ``->``, a malformed
value): the caller then takes the SQLAlchemy path, which upgrades or explains. The table
and column names are the models' (``models.py``); a test holds them equal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from typing import Any

from nnchain.tracking.store import sqlite_path

SWEEPS = "nnchain_sweeps"
TRIALS = "nnchain_trials"
SWEEP_COLUMNS = ("id", "name", "metric_name", "metric_goal", "status", "trial_count")
TRIAL_COLUMNS = ("id", "sweep_id", "index", "key", "repeat", "state", "reason", "run_id",
                 "attempt", "epochs", "train_seconds", "metric", "overrides")
JSON_COLUMNS = ("config", "overrides", "summary")
MIN_PREFIX = 4  # shortest id prefix that names a sweep (as ``sweeps.find_sweep``)
BUSY_MS = 30_000  # as the SQLAlchemy engine's busy_timeout


def connect(url: str) -> sqlite3.Connection | None:
    """A connection to the SQLite ledger at ``url``, or None when the direct path does not
    apply: not SQLite, a file that is missing or any of its files a symbolic link (the
    SQLAlchemy path refuses those with a message)."""
    db_file = sqlite_path(url)
    if db_file is None or "?" in url or not db_file.is_file():
        return None
    side_files = (db_file.with_name(db_file.name + s) for s in ("-wal", "-shm", "-journal"))
    if db_file.is_symlink() or any(path.is_symlink() for path in side_files):
        return None
    try:
        connection = sqlite3.connect(db_file)
        connection.execute(f"PRAGMA busy_timeout={BUSY_MS}")
    except sqlite3.Error:
        return None
    return connection


def _quoted(names: Sequence[str]) -> str:
    """Column names as SQL: in brackets, since SQLite reads a double-quoted name that no
    column has as a string (an older ledger's missing column must fail, not read as text)."""
    return ", ".join(f"[{name}]" for name in names)


def sweeps_named(connection: sqlite3.Connection, refs: Sequence[str]
                 ) -> list[dict[str, Any]] | None:
    """The sweeps whose id or name is in ``refs``, or whose id starts with one (the
    candidates ``query.load_trials`` picks from), as dicts of ``SWEEP_COLUMNS``."""
    prefixes = [ref for ref in refs if len(ref) >= MIN_PREFIX]
    marks = ", ".join("?" * len(refs))
    where = f"id IN ({marks}) OR name IN ({marks})" + "".join(
        " OR id LIKE ?" for _ in prefixes)
    return _dicts(connection, f"SELECT {_quoted(SWEEP_COLUMNS)} FROM {SWEEPS} WHERE {where}",
                  [*refs, *refs, *(f"{ref}%" for ref in prefixes)])


def newest_sweep(connection: sqlite3.Connection) -> dict[str, Any] | None:
    """The sweep made last (as ``ledger.report.newest_sweep``), or None (also: no sweep)."""
    rows = _dicts(connection, f"SELECT {_quoted(SWEEP_COLUMNS)} FROM {SWEEPS} "
                              f"ORDER BY created_at DESC LIMIT 1", [])
    return rows[0] if rows else None


def first_overrides(connection: sqlite3.Connection, sweep_ids: Sequence[str]) -> str | None:
    """The overrides' JSON text of the first trial of ``sweep_ids`` (by id), or None."""
    marks = ", ".join("?" * len(sweep_ids))
    try:
        with closing(connection.execute(
                f"SELECT overrides FROM {TRIALS} WHERE sweep_id IN ({marks}) ORDER BY id "
                f"LIMIT 1", list(sweep_ids))) as cursor:
            row = cursor.fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else row[0]


def trial_values(connection: sqlite3.Connection, sweep_ids: Sequence[str],
                 columns: Sequence[str] = TRIAL_COLUMNS,
                 paths: Sequence[tuple[str, Sequence[str]]] = ()) -> list[tuple] | None:
    """The trials of ``sweep_ids``, ordered by id: per trial the values of ``columns``,
    then for each ``(column, keys)`` of ``paths`` the JSON text of the value at those keys
    in that JSON column (None where it has none), then the whole text of each JSON column
    of ``paths``.

    A text holding Python's ``NaN`` or ``Infinity`` (not standard JSON) is one SQLite
    refuses (then None here) or, from 3.42 on, reads as JSON5 and writes back otherwise:
    ``unusual`` tells the caller to decode that text itself.
    """
    json_columns = list(dict.fromkeys(column for column, _ in paths))
    if any(column not in JSON_COLUMNS for column in json_columns):
        return None
    selected = [_quoted([name]) for name in columns]
    parameters: list[Any] = []
    for column, keys in paths:
        if not keys or any('"' in key or "\\" in key for key in keys):
            return None
        selected.append(f"[{column}] -> ?")
        parameters.append("$" + "".join(f'."{key}"' for key in keys))
    selected += [_quoted([column]) for column in json_columns]
    marks = ", ".join("?" * len(sweep_ids))
    statement = (f"SELECT {', '.join(selected)} FROM {TRIALS} WHERE sweep_id IN ({marks}) "
                 f"ORDER BY id")
    try:
        with closing(connection.execute(statement, [*parameters, *sweep_ids])) as cursor:
            return cursor.fetchall()
    except sqlite3.Error:  # no such column (an older ledger), no `->`, malformed JSON
        return None


def unusual(text: str | None) -> bool:
    """Whether a JSON column's text holds ``NaN`` or ``Infinity`` (see ``trial_values``)."""
    return text is not None and ("NaN" in text or "Infinity" in text)


def _dicts(connection: sqlite3.Connection, statement: str, parameters: list
           ) -> list[dict[str, Any]] | None:
    try:
        with closing(connection.execute(statement, parameters)) as cursor:
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except sqlite3.Error:
        return None
