"""Opening the ledger: where it lives, its engine and sessions.

By default the ledger lives beside the MLflow store: ``ledger.db`` next to an SQLite
store, the same database as a PostgreSQL store, ``./nnchain-runs/ledger.db`` for a
tracking server. ``--ledger-url`` or ``NNCHAIN_LEDGER_URL`` put it elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from nnchain.credentials import scrub
from nnchain.errors import SpecError, StoreError, StoreUnavailable
from nnchain.ledger.location import (  # noqa: F401 - LEDGER_ENV: re-exported
    LEDGER_ENV,
    ledger_exists,
    resolve_ledger_url,
)
from nnchain.ledger.models import SCHEMA_VERSION, Base, Meta
from nnchain.tracking.store import open_private, private_dirs, refuse_symlinks, sqlite_path


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # with WAL: safe against process crashes
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL and a busy timeout, a missing folder is made."""
    db_file = sqlite_path(url)
    if db_file is not None:
        try:
            private_dirs(db_file.parent)  # new folders 0700
        except OSError as exc:
            raise SpecError("--ledger-url", f"must be a writable location, cannot create "
                                            f"'{db_file.parent}': {exc.strerror}") from None
        refuse_symlinks("--ledger-url", db_file)
        try:  # a new ledger file is 0600 (SQLite gives its -wal and -shm files its mode)
            os.close(open_private(db_file, os.O_RDWR | os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            pass
        except PermissionError:
            pass  # a read-only folder: SQLAlchemy's own error says so, on first use
    try:
        engine = create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise SpecError("--ledger-url", f"must be an SQLAlchemy database URL, got "
                                        f"{scrub(url)!r}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class Ledger:
    """The ledger's engine and sessions; queries live in ``nnchain.ledger.sweeps``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def create_schema(self) -> None:
        """Create the tables if missing (idempotent; safe when two processes race), then
        refuse a ledger written by another schema version."""
        try:
            Base.metadata.create_all(self.engine)
        except SQLAlchemyError:
            # another process may have created them between the check and the create
            Base.metadata.create_all(self.engine)
        add_missing_columns(self.engine)
        with self.session() as session:
            found = session.get(Meta, "schema_version")
            if found is None:
                session.merge(Meta(key="schema_version", value=SCHEMA_VERSION))
            elif found.value != SCHEMA_VERSION:
                raise StoreError(f"the ledger {scrub(self.url)} has schema version "
                                 f"{found.value}, this nnchain needs {SCHEMA_VERSION}; use a "
                                 f"new ledger (--ledger-url) or the nnchain that wrote it")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success, rolled back on error; DB errors become StoreError."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            kind = StoreUnavailable if isinstance(exc, OperationalError | InterfaceError) \
                else StoreError
            raise kind(f"ledger {scrub(self.url)}: {type(exc).__name__}: "
                       f"{str(exc).splitlines()[0]}") from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


def open_ledger(url: str, *, create: bool = True) -> Ledger:
    """Open the ledger at ``url`` (tables created when ``create``); unreachable: StoreError."""
    from nnchain.tracking.store import creation_lock

    ledger = Ledger(url)
    try:
        if create:
            with creation_lock(url):  # one process at a time creates a new ledger
                ledger.create_schema()
        else:
            with ledger.engine.connect():
                pass
            if missing_columns(ledger.engine):  # a ledger an older nnchain made
                with creation_lock(url):
                    add_missing_columns(ledger.engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open the ledger {scrub(url)}: "
                         f"{str(exc).splitlines()[0]}") from None
    return ledger


def open_existing_ledger(tracking_uri: str | None, ledger_url: str | None) -> Ledger:
    """The ledger beside the tracking store (or at ``ledger_url``), which must exist: for
    the commands that read or close recorded sweeps; no tables are created."""
    from nnchain.tracking.store import resolve_tracking_uri

    url = resolve_ledger_url(resolve_tracking_uri(tracking_uri), ledger_url)
    if not ledger_exists(url):
        raise SpecError("--ledger-url", f"must point at an existing ledger, there is no sweep "
                                        f"ledger at {scrub(url)}; run `nnchain sweep run` "
                                        f"first")
    return open_ledger(url, create=False)


def missing_columns(engine: Engine) -> dict[str, list[str]]:
    """Per existing table, the model's columns it lacks (an older nnchain made it)."""
    inspector = inspect(engine)
    missing = {}
    for table in Base.metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue  # not made yet (another process may be creating the ledger)
        present = {column["name"] for column in inspector.get_columns(table.name)}
        absent = [column.name for column in table.columns if column.name not in present]
        if absent:
            missing[table.name] = absent
    return missing


def add_missing_columns(engine: Engine) -> None:
    """Add the columns a newer nnchain mapped to tables an older one made (idempotent). Call
    it under the creation lock: the check and the ALTERs must not interleave with another's.

    Only nullable columns are ever added, so the older nnchain's INSERTs still work and the
    schema version stays: the upgrade is additive, in both directions.
    """
    missing = missing_columns(engine)
    if not missing:
        return
    quote = engine.dialect.identifier_preparer.quote
    with engine.begin() as connection:
        for table_name, names in missing.items():
            table = Base.metadata.tables[table_name]
            for name in names:
                column = table.columns[name]
                if not column.nullable:  # a bug in models.py, not a user's error
                    raise StoreError(f"column {table_name}.{name} must be nullable to be "
                                     f"added to an existing ledger")
                connection.execute(text(
                    f"ALTER TABLE {quote(table_name)} ADD COLUMN {quote(name)} "
                    f"{column.type.compile(dialect=engine.dialect)}"))
