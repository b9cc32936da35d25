"""What tests need of this machine's services: free TCP ports for the servers they start
(Ray nodes, MLflow), and the PostgreSQL admin URL (``NNCHAIN_TEST_PG``)."""

from __future__ import annotations

import os
import socket

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
