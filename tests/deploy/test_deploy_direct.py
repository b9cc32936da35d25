"""Recording straight into the deployment's PostgreSQL, with the tracking server's auth on.

The deployment's MLflow server (``services/mlflow/entrypoint.py``: basic auth, proxied
artifacts, PostgreSQL from ``services/postgres/init.sh``) grants the ledger's role direct
writes (``MLFLOW_DIRECT_WRITER``), as the compose file does for ``nnchain``. A sweep run
as the service user with ``NNCHAIN_TRACKING_STORE_URL`` on that database (its password
from a libpq password file, as the Ray head's entrypoint writes it) makes its experiment
and parent run through the server and everything else in SQL; it is read back through
the server as the admin. A database that is not the server's, a role without the grant
and an MLflow user without EDIT on the experiment are refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from local_services import PG_ADMIN

pytestmark = pytest.mark.slow

EPOCHS = 6
SPEC = f"""
name: direct
experiment: direct-writes
data: {{name: xor, n_samples: 64}}
model: {{hidden: [4], activation: tanh}}
train: {{epochs: {EPOCHS}, lr: 0.5}}
parameters:
  train.lr: {{values: [0.1, 0.5, 1.0, 2.0]}}
"""
TRIALS = 4


@pytest.fixture(scope="module")
def deploy(deployment_server):
    return deployment_server


def sweep_env(deploy, user: str, password: str, store_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "NNCHAIN_", "RAY_ADDRESS", "PG"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0",
               MLFLOW_TRACKING_URI=deploy.mlflow_url, MLFLOW_TRACKING_USERNAME=user,
               MLFLOW_TRACKING_PASSWORD=password, NNCHAIN_TRACKING_STORE_URL=store_url,
               NNCHAIN_LEDGER_URL=deploy.ledger_url.replace(
                   f":{deploy.secrets['ledger_db']}@", "@"),
               PGPASSFILE=str(deploy.pgpass))
    return env


def run_sweep(deploy, env: dict[str, str], work: Path) -> subprocess.CompletedProcess:
    work.mkdir(exist_ok=True)
    (work / "spec.yaml").write_text(SPEC)
    return subprocess.run([sys.executable, "-m", "nnchain", "sweep", "run", "spec.yaml",
                           "--format", "json", "--quiet"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)


def server_requests(deploy, path: str) -> int:
    """How many requests to ``path`` the server's access log holds."""
    return len(re.findall(rf'"POST {re.escape(path)} ', deploy.mlflow_log.read_text()))


@pytest.fixture(scope="module")
def recorded(deploy, tmp_path_factory):
    """One sweep as the service user, straight into the server's database."""
    from deployment import SERVICE_USER

    before = server_requests(deploy, "/api/2.0/mlflow/runs/create")
    started = time.monotonic()
    done = run_sweep(deploy, sweep_env(deploy, SERVICE_USER, deploy.secrets["service"],
                                       deploy.store_url),
                     tmp_path_factory.mktemp("sweep"))
    print(f"the direct sweep ran {time.monotonic() - started:.1f} s")
    return {"done": done, "runs_created": server_requests(
        deploy, "/api/2.0/mlflow/runs/create") - before}


@pytest.fixture(scope="module")
def admin_client(deploy):
    from mlflow import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = deploy.secrets["admin"]
    yield MlflowClient(tracking_uri=deploy.mlflow_url)
    os.environ.pop("MLFLOW_TRACKING_USERNAME", None)
    os.environ.pop("MLFLOW_TRACKING_PASSWORD", None)


def test_the_sweep_records_its_trials_in_sql_and_reads_back_through_the_server(
        recorded, admin_client):
    done = recorded["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["counts"]["FINISHED"] == TRIALS
    experiment = admin_client.get_experiment_by_name("direct-writes")
    runs = admin_client.search_runs([experiment.experiment_id], max_results=100)
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert len(children) == TRIALS
    for run in children:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        history = admin_client.get_metric_history(run.info.run_id, "train_cost")
        assert [m.step for m in history] == list(range(EPOCHS))
        # artifacts went through the server (proxied), where the run's URI points
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert "config.yaml" in {f.path for f in admin_client.list_artifacts(run.info.run_id)}
    # the server made the parent only: the trials' runs were written in SQL
    assert recorded["runs_created"] == 1


def test_the_experiment_was_made_through_the_server_as_the_service_user(
        recorded, admin_client, deploy):
    """The auth app gives an experiment's creator MANAGE on it: the server made it, for
    the user the sweep ran as, having checked that user's password."""
    import requests
    from deployment import SERVICE_USER

    assert recorded["done"].returncode == 0, recorded["done"].stderr[-3000:]
    experiment = admin_client.get_experiment_by_name("direct-writes")
    answer = requests.get(f"{deploy.mlflow_url}/api/3.0/mlflow/users/permissions/get",
                          params={"resource_type": "experiment", "username": SERVICE_USER,
                                  "resource_id": experiment.experiment_id},
                          auth=("admin", deploy.secrets["admin"]), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["permission"] == "MANAGE", answer.text


def _refused(done: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: NNCHAIN_TRACKING_STORE_URL"), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _experiment_names(admin_client) -> set[str]:
    return {e.name for e in admin_client.search_experiments()}


def test_a_database_that_is_not_the_servers_is_refused_before_anything_is_written(
        deploy, admin_client, tmp_path):
    from deployment import SERVICE_USER

    other = tmp_path / "other.db"
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{other}").search_experiments()  # a store of its own
    env = sweep_env(deploy, SERVICE_USER, deploy.secrets["service"], f"sqlite:///{other}")
    env["NNCHAIN_LEDGER_URL"] = f"sqlite:///{tmp_path / 'ledger.db'}"
    before = _experiment_names(admin_client)
    line = _refused(run_sweep(deploy, env, tmp_path / "work"), "must be the database behind",
                    "of the server is")
    assert deploy.secrets["service"] not in line
    assert _experiment_names(admin_client) == before
    assert not (tmp_path / "ledger.db").exists()


def test_a_role_without_the_grant_is_refused(deploy, admin_client, tmp_path):
    import sqlalchemy
    from deployment import SERVICE_USER

    role = f"nnd_{uuid.uuid4().hex[:8]}_nogrant"
    admin = sqlalchemy.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE ROLE "{role}" LOGIN'))
    try:
        url = deploy.store_url.replace(deploy.names["ledger_user"], role, 1)
        env = sweep_env(deploy, SERVICE_USER, deploy.secrets["service"], url)
        env["NNCHAIN_LEDGER_URL"] = f"sqlite:///{tmp_path / 'ledger.db'}"
        _refused(run_sweep(deploy, env, tmp_path / "work"), "must be a database",
                 "permission denied")
        assert not (tmp_path / "ledger.db").exists()
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_a_user_without_edit_on_the_experiment_writes_nothing_into_it(
        recorded, deploy, admin_client, tmp_path):
    """The server's permissions still hold: a READ-only user's sweep into the service
    user's experiment fails at the parent run, and no trial run reaches the database."""
    import requests

    assert recorded["done"].returncode == 0, recorded["done"].stderr[-3000:]
    admin = ("admin", deploy.secrets["admin"])
    reader = (f"reader{uuid.uuid4().hex[:6]}", deploy.secrets["reader"])
    created = requests.post(f"{deploy.mlflow_url}/api/2.0/mlflow/users/create", auth=admin,
                            json={"username": reader[0], "password": reader[1]}, timeout=10)
    assert created.status_code == 200, created.text
    experiment = admin_client.get_experiment_by_name("direct-writes")
    before = len(admin_client.search_runs([experiment.experiment_id], max_results=1000))
    env = sweep_env(deploy, *reader, deploy.store_url)
    env["NNCHAIN_LEDGER_URL"] = f"sqlite:///{tmp_path / 'ledger.db'}"
    done = run_sweep(deploy, env, tmp_path / "work")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: the MLflow tracking server refused /api/2.0/mlflow/runs/create for user "
        f"'{reader[0]}': it does not allow it (Permission denied) (HTTP 403)")
    assert len(admin_client.search_runs([experiment.experiment_id], max_results=1000)) == before
