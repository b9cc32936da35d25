"""The deployment of docker-compose.yml reproduced without containers, on this machine.

PostgreSQL (127.0.0.1:5432) gets roles and databases from ``services/postgres/init.sh``;
``services/mlflow/entrypoint.py`` runs as a process (basic auth, proxied artifacts, a
service user, the ledger's role granted direct writes as the compose file grants them);
``ray start --head`` (no CPUs: it only drives) and ``ray start`` workers with one CPU each
form a cluster with token authentication, its dashboard on 127.0.0.1.

The MLflow server is the slowest thing the suite starts (its migrations on two fresh
databases): one serves the session (``tests/conftest.py::deployment_server``), and each
module makes its own experiments, users, sweeps and Ray nodes.

Nodes are stopped by killing the process groups their ``ray start`` created (and every
descendant), never with ``ray stop``, which would also stop the session's local Ray and
any other Ray on this machine.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from deploy_support import BIN, MLFLOW_ENTRYPOINT, POSTGRES_INIT, kill_tree, process_tree
from local_services import PG_ADMIN, pg_available

SERVICE_USER = "nnchain"
# The admin's password, planted: tests/security/test_credentials.py searches for it in
# everything a sweep through this server leaves behind.
ADMIN_SECRET = f"Planted-http-{uuid.uuid4().hex[:12]}"


def wait_http(url: str, seconds: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds} s:\n{log.read_text()[-3000:]}")

class Deployment:
    """Everything the tests read: addresses, secrets, outputs, logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.secrets = {name: f"{name}-{secrets.token_urlsafe(18)}" for name in
                        ("admin", "service", "reader", "mlflow_db", "ledger_db", "ray_token")}
        self.groups: set[int] = set()  # the Ray nodes' process groups
        self.timings: dict[str, float] = {}  # seconds since the fixture started
        self.server: subprocess.Popen | None = None
        tag = uuid.uuid4().hex[:8]
        self.names = {"mlflow_user": f"nnd_{tag}_mlflow", "mlflow_db": f"nnd_{tag}_mlflow",
                      "auth_db": f"nnd_{tag}_auth", "ledger_user": f"nnd_{tag}_nnchain",
                      "ledger_db": f"nnd_{tag}_ledger"}
        admin = urlsplit(PG_ADMIN)
        self.pg_host, self.pg_port = admin.hostname or "127.0.0.1", admin.port or 5432
        self.pg_user = admin.username or "postgres"
        self.ledger_url = (f"postgresql+psycopg://{self.names['ledger_user']}:"
                           f"{self.secrets['ledger_db']}@{self.pg_host}:{self.pg_port}/"
                           f"{self.names['ledger_db']}")

    # ---- PostgreSQL, through the compose file's init script ------------------------------
    def init_databases(self) -> None:
        files = {}
        for name in ("mlflow_db", "ledger_db"):
            files[name] = self.root / f"{name}.secret"
            files[name].write_text(self.secrets[name])
        env = dict(os.environ, PGHOST=self.pg_host, PGPORT=str(self.pg_port),
                   POSTGRES_USER=self.pg_user, POSTGRES_DB="postgres",
                   MLFLOW_DB_PASSWORD_FILE=str(files["mlflow_db"]),
                   NNCHAIN_DB_PASSWORD_FILE=str(files["ledger_db"]),
                   MLFLOW_DB_USER=self.names["mlflow_user"],
                   MLFLOW_DB_NAME=self.names["mlflow_db"],
                   MLFLOW_AUTH_DB_NAME=self.names["auth_db"],
                   NNCHAIN_DB_USER=self.names["ledger_user"],
                   NNCHAIN_DB_NAME=self.names["ledger_db"])
        done = subprocess.run(["sh", str(POSTGRES_INIT)], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def drop_databases(self) -> None:
        import sqlalchemy

        admin = sqlalchemy.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for key in ("mlflow_db", "auth_db", "ledger_db"):
                name = self.names[key]
                connection.execute(sqlalchemy.text(
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE datname = '{name}'"))
                connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
            for key in ("mlflow_user", "ledger_user"):
                connection.execute(sqlalchemy.text(f'DROP ROLE IF EXISTS "{self.names[key]}"'))
        admin.dispose()

    # ---- the MLflow server, through the image's entrypoint -------------------------------
    def start_mlflow(self, port: int, **extra_env: str) -> None:
        self.mlflow_port = port
        self.mlflow_url = f"http://127.0.0.1:{port}"
        self.mlflow_log = self.root / "mlflow-server.log"
        files = {}
        for name in ("admin", "service", "mlflow_db"):
            files[name] = self.root / f"{name}.secret"
            files[name].write_text(self.secrets[name] + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PG"))}
        env.update(MLFLOW_DB_HOST=self.pg_host, MLFLOW_DB_PORT=str(self.pg_port),
                   MLFLOW_DB_USER=self.names["mlflow_user"],
                   MLFLOW_DB_PASSWORD_FILE=str(files["mlflow_db"]),
                   MLFLOW_DB_NAME=self.names["mlflow_db"],
                   MLFLOW_AUTH_DB_NAME=self.names["auth_db"],
                   MLFLOW_AUTH_ADMIN_PASSWORD_FILE=str(files["admin"]),
                   MLFLOW_SERVICE_USERNAME=SERVICE_USER,
                   MLFLOW_SERVICE_PASSWORD_FILE=str(files["service"]),
                   MLFLOW_HOST="127.0.0.1", MLFLOW_PORT=str(port),
                   MLFLOW_ARTIFACTS_DESTINATION=str(self.root / "artifacts"),
                   MLFLOW_CONFIG_DIR=str(self.root / "mlflow-config"),
                   MLFLOW_DISABLE_TELEMETRY="true", **extra_env)
        with open(self.mlflow_log, "w") as log:
            self.server = subprocess.Popen([str(BIN / "python"), str(MLFLOW_ENTRYPOINT)],
                                           env=env, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_mlflow(self) -> None:
        wait_http(f"{self.mlflow_url}/health", 300, self.server, self.mlflow_log)

    # ---- the Ray cluster ------------------------------------------------------------------
    def ray_env(self, head: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_", "MLFLOW_", "NNCHAIN_", "PG"))}
        env.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                   RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.secrets["ray_token"],
                   RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true")
        if head:  # what the compose file's ray-head holds
            env.update(MLFLOW_TRACKING_URI=self.mlflow_url,
                       MLFLOW_TRACKING_USERNAME=SERVICE_USER,
                       MLFLOW_TRACKING_PASSWORD=self.secrets["service"],
                       NNCHAIN_LEDGER_URL=self.ledger_url)
        return env

    def ray_start(self, args: list[str], head: bool, log_name: str) -> None:
        log = self.root / log_name
        with open(log, "w") as out:
            process = subprocess.Popen([str(BIN / "ray"), "start", *args,
                                        "--disable-usage-stats"],
                                       env=self.ray_env(head), stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        self.groups.add(process.pid)  # its daemons stay in this process group
        code = process.wait(timeout=180)
        assert code == 0, log.read_text()[-3000:]

    def start_ray(self, ports: list[int]) -> None:
        self.ray_temp = Path(tempfile.mkdtemp(prefix="nnd-", dir="/tmp"))  # short socket paths
        gcs, self.dashboard_port = ports[0], ports[1]
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.gcs = f"127.0.0.1:{gcs}"
        rest = iter(ports[2:])

        def node_ports() -> list[str]:
            return [f"--node-manager-port={next(rest)}", f"--object-manager-port={next(rest)}",
                    f"--dashboard-agent-listen-port={next(rest)}",
                    f"--dashboard-agent-grpc-port={next(rest)}",
                    f"--runtime-env-agent-port={next(rest)}",
                    f"--metrics-export-port={next(rest)}"]

        self.ray_start(["--head", f"--port={gcs}", "--num-cpus=0",
                        "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard_port}",
                        f"--ray-client-server-port={next(rest)}",
                        f"--temp-dir={self.ray_temp}", *node_ports()], True, "ray-head.log")
        for index in (1, 2):
            self.ray_start([f"--address={self.gcs}", "--num-cpus=1",
                            f"--temp-dir={self.ray_temp}", *node_ports()], False,
                           f"ray-worker-{index}.log")

    def ray_api(self, path: str, **params) -> dict:
        """GET on the dashboard's REST API (jobs, state), with the cluster's token."""
        response = requests.get(f"{self.dashboard}{path}", params=params, timeout=30,
                                headers={"Authorization": f"Bearer {self.secrets['ray_token']}"})
        assert response.status_code == 200, response.text[:2000]
        return response.json()

    def ray_state(self, resource: str, **filters: str) -> list[dict]:
        """Ray's state API (what ``ray list RESOURCE --detail`` shows)."""
        params = {"limit": 10_000, "detail": 1, "filter_keys": list(filters),
                  "filter_predicates": ["="] * len(filters),
                  "filter_values": list(filters.values())}
        return self.ray_api(f"/api/v0/{resource}", **params)["data"]["result"]["result"]

    # ---- stopping ---------------------------------------------------------------------------
    def stop_ray(self) -> None:
        """Kill the Ray nodes (their process groups and every descendant)."""
        _stop({*self.groups})
        self.groups.clear()
        if hasattr(self, "ray_temp"):
            shutil.rmtree(self.ray_temp, ignore_errors=True)

    def stop(self) -> None:
        """Kill every process the deployment started, the MLflow server last."""
        self.stop_ray()
        if self.server is not None:
            _stop({self.server.pid})


def _stop(groups: set[int]) -> None:
    kill_tree(groups)
    deadline = time.monotonic() + 10
    while process_tree(groups) and time.monotonic() < deadline:
        time.sleep(0.2)


def require_deployment() -> None:
    """What the deployment's processes need here: Flask-WTF (the test extra: missing is a
    failure), PostgreSQL and psql (missing: the test is skipped)."""
    if importlib.util.find_spec("flask_wtf") is None:
        pytest.fail("the MLflow basic-auth app needs Flask-WTF: install mlflow[auth] "
                    "(pyproject.toml's test extra)")
    if not pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}")
    if shutil.which("psql") is None:
        pytest.skip("psql (PostgreSQL client) is needed to run services/postgres/init.sh")


def start_deployment(root: Path, port: int) -> Deployment:
    """The databases and the MLflow server of the compose file, answering on ``port``,
    with a libpq password file for the ledger's role (``pgpass``, as
    ``services/ray/entrypoint.sh`` writes it) and ``store_url``, the server's database as
    that role reaches it."""
    require_deployment()
    deploy = Deployment(root)
    deploy.secrets["admin"] = ADMIN_SECRET
    deploy.init_databases()
    try:
        deploy.start_mlflow(port, MLFLOW_DIRECT_WRITER=deploy.names["ledger_user"])
        deploy.wait_mlflow()
    except BaseException:
        deploy.stop()
        deploy.drop_databases()
        raise
    deploy.pgpass = root / "pgpass"
    deploy.pgpass.write_text(f"*:*:*:{deploy.names['ledger_user']}:"
                             f"{deploy.secrets['ledger_db']}\n")
    deploy.pgpass.chmod(0o600)
    deploy.store_url = (f"postgresql+psycopg://{deploy.names['ledger_user']}@"
                        f"{deploy.pg_host}:{deploy.pg_port}/{deploy.names['mlflow_db']}")
    return deploy
