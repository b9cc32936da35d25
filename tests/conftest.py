"""Shared fixtures: a quiet MLflow, one local Ray per session, throwaway PostgreSQL databases."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from local_services import free_ports, fresh_pg_database

# The deployment's helpers (tests/deploy/deployment.py), for the session's server and
# for the modules outside tests/deploy that use it.
DEPLOY_TESTS = str(Path(__file__).parent / "deploy")
if DEPLOY_TESTS not in sys.path:
    sys.path.append(DEPLOY_TESTS)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance with 2 CPUs, shared by the tests of the session."""
    from nnchain.runner import cluster

    resources = cluster.connect(None, num_cpus=2)
    yield resources
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_local) -> str:
    """The GCS address of the session's Ray, for subprocess drivers to join."""
    import ray

    return ray.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def deployment_server(tmp_path_factory):
    """The compose file's MLflow server (``tests/deploy/deployment.py``): basic auth,
    PostgreSQL, the ledger's role granted direct writes. Started once: its migrations are
    the slowest setup of the suite. Modules using it make their own experiments and users."""
    from deployment import start_deployment

    deploy = start_deployment(tmp_path_factory.mktemp("deployment"), free_ports(1)[0])
    try:
        yield deploy
    finally:
        deploy.stop()
        deploy.drop_databases()


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path):
    """An empty ledger on SQLite, then on a fresh PostgreSQL database (``pg_url``)."""
    from nnchain.ledger.store import open_ledger

    url = f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("pg_url")
    ledger = open_ledger(url)
    yield ledger
    ledger.dispose()


@pytest.fixture
def runs_home(tmp_path, monkeypatch):
    """Run in a temp working directory so ./nnchain-runs/ lands there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("NNCHAIN_LEDGER_URL", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("NNCHAIN_HOME", raising=False)
    return tmp_path
