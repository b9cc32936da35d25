"""What tests need of this machine's services: free TCP ports for the servers they start
(Ray nodes, MLflow), and the PostgreSQL admin URL (``NNCHAIN_TEST_PG``)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_ADMIN = os.environ.get("NNCHAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_available() -> bool:
    """Whether PostgreSQL answers at ``PG_ADMIN``."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(PG_ADMIN)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now."""
    sockets, ports = [], []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            port = sock.getsockname()[1]
            if port != 6379:  # Redis lives there on this machine
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


@contextmanager
def fresh_pg_database(prefix: str = "nnchain_test") -> Iterator[str]:
    """A new PostgreSQL database's URL (the test skipped without PostgreSQL), dropped after,
    its connections ended first."""
    import pytest
    import sqlalchemy

    if not pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}'"))
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
