"""What tests need of this machine's services: free TCP ports for the servers they start
(Ray nodes, MLflow), and the PostgreSQL admin URL (``NNCHAIN_TEST_PG``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


class MlflowServer:
    """``mlflow server`` on the SQLite store ``root/mlflow.db`` at 127.0.0.1:``port``, in
    its own process group: a test SIGKILLs it with its uvicorn workers and starts it again
    on the same port."""

    def __init__(self, root: Path, port: int | None = None, workers: int = 1) -> None:
        self.root, self.port, self.workers = root, port or free_ports(1)[0], workers
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_file = root / "mlflow.db"
        self.log = root / "mlflow-server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                 f"sqlite:///{self.db_file}", "--artifacts-destination",
                 str(self.root / "artifacts"), "--host", "127.0.0.1", "--port",
                 str(self.port), "--workers", str(self.workers)], cwd=self.root, env=env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.wait_ready()

    def wait_ready(self, seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"mlflow server not up in {seconds} s: "
                             f"{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server and its workers (its process group), and wait until they are
        gone: the port is then free again."""
        if self.process is None:
            return
        try:  # workers may outlive a server that exited on its own
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise AssertionError(f"mlflow server's process group {self.process.pid} survived SIGKILL")
