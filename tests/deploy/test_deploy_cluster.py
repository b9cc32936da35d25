"""The deployment of docker-compose.yml reproduced without containers, on this machine
(``deployment.py``): the session's MLflow server (basic auth, PostgreSQL), and here a Ray
cluster of ``ray start --head`` (no CPUs: it only drives) and two ``ray start`` workers
with one CPU each, token authentication, the dashboard on 127.0.0.1. The head holds the
driver's credentials, as the compose file's ray-head does. Then ``nnchain sweep submit
--wait`` sends a 6-trial sweep to the job API, and the tests read what it left behind:
runs through the server, the ledger, Ray's task records, and every log Ray and MLflow
wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests
from deploy_support import nnchain_command
from deployment import SERVICE_USER, Deployment
from local_services import free_ports

pytestmark = pytest.mark.slow

# 15 epochs on 200,000 points: ~1 s a trial, long enough that both worker nodes train
# (trials of a few ms all ran on whichever node's worker started first).
EPOCHS = 15
SPEC = """
name: deploy-grid
experiment: deploy
seed: 1
metric: {name: val_cost, goal: minimize}
data: {name: xor, n_samples: 200000, noise: 0.05, val_fraction: 0.25}
model: {hidden: [4], activation: tanh}
train: {epochs: 40, lr: 0.5}
parameters:
  train.lr: {values: [0.1, 0.5, 2.0]}
  model.hidden: {values: [[2], [4]]}
"""


@pytest.fixture(scope="module")
def deployment(deployment_server):
    """The session's server with this module's Ray cluster, the sweep submitted and done."""
    deploy = deployment_server
    clock = time.monotonic()
    try:
        deploy.start_ray(free_ports(23))
        deploy.timings["ray nodes"] = time.monotonic() - clock
        submit(deploy)
        deploy.timings["submitted and done"] = time.monotonic() - clock
        yield deploy
    finally:
        deploy.stop_ray()


def submit(deploy: Deployment) -> None:
    spec = deploy.root / "deploy.yaml"
    spec.write_text(SPEC)
    deploy.spec = spec
    # The submitting machine: its own MLflow login (not forwarded by default) and the
    # cluster's token; no ledger URL, no tracking URI in its environment.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "MLFLOW_", "NNCHAIN_"))}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=deploy.secrets["ray_token"],
               RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true",
               MLFLOW_TRACKING_USERNAME="admin",
               MLFLOW_TRACKING_PASSWORD=deploy.secrets["admin"])
    started = time.monotonic()
    deploy.submitted = subprocess.run(
        nnchain_command("sweep", "submit", str(spec), "--address", deploy.dashboard,
                        "--tracking-uri", deploy.mlflow_url, "--set",
                        f"train.epochs={EPOCHS}", "--wait", "--format", "json"),
        env=env, cwd=deploy.root, capture_output=True, text=True, timeout=300)
    deploy.submit_seconds = time.monotonic() - started
    assert deploy.submitted.returncode == 0, (deploy.submitted.stdout, deploy.submitted.stderr)
    deploy.result = json.loads(deploy.submitted.stdout)
    deploy.job_logs = deploy.ray_api(f"/api/jobs/{deploy.result['job_id']}/logs")["logs"]


@pytest.fixture(scope="module")
def admin_client(deployment):
    from mlflow import MlflowClient

    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME",
                                            "MLFLOW_TRACKING_PASSWORD")}
    os.environ["MLFLOW_TRACKING_USERNAME"] = "admin"
    os.environ["MLFLOW_TRACKING_PASSWORD"] = deployment.secrets["admin"]
    try:
        yield MlflowClient(tracking_uri=deployment.mlflow_url)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _runs(client):
    experiment = client.get_experiment_by_name("deploy")
    assert experiment is not None
    return experiment, client.search_runs([experiment.experiment_id], max_results=100)


def _ledger_trials(deployment):
    """The ledger's sweeps named like this module's (other modules record into the same
    ledger), and their trials."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(deployment.ledger_url)
    try:
        with engine.connect() as connection:
            sweeps = connection.execute(sqlalchemy.text(
                "SELECT id, name, status, tracking_uri, options, spec_text "
                "FROM nnchain_sweeps WHERE name LIKE 'deploy-grid%'")).mappings().all()
            trials = connection.execute(sqlalchemy.text(
                "SELECT key, state, worker, reason, run_id FROM nnchain_trials "
                "WHERE sweep_id IN (SELECT id FROM nnchain_sweeps "
                "WHERE name LIKE 'deploy-grid%')")).mappings().all()
    finally:
        engine.dispose()
    return sweeps, trials


def test_submit_reports_the_sweep_it_created(deployment):
    out = deployment.result
    assert out["name_final"] and out["name"] == "deploy-grid"
    # the id chosen by `submit` and passed to the driver, said before the job was followed
    assert f"sweep {out['sweep_id']} submitted as job {out['job_id']}" in \
        deployment.submitted.stderr
    assert out["job_id"].startswith("nnchain-") and out["job_status"] == "SUCCEEDED"
    assert out["result"]["status"] == "FINISHED" and out["result"]["counts"] == {"FINISHED": 6}
    sweeps, trials = _ledger_trials(deployment)
    assert [(s["id"], s["name"], s["status"]) for s in sweeps] == [
        (out["sweep_id"], "deploy-grid", "FINISHED")]
    assert len(trials) == 6 and {t["state"] for t in trials} == {"FINISHED"}
    # the entrypoint the cluster ran names no store, no user and no secret
    entrypoint = next(line for line in deployment.job_logs.splitlines()
                      if line.startswith("Running entrypoint"))
    assert "sweep run sweep.yaml" in entrypoint and "://" not in entrypoint
    assert deployment.submit_seconds < 120, deployment.timings
    print(f"deployment timings (s): {deployment.timings}")


def test_runs_are_read_back_through_the_server(deployment, admin_client):
    from nnchain.config import to_params
    from nnchain.sweep import expand, load_sweep_spec

    trials = expand(load_sweep_spec(deployment.spec, [f"train.epochs={EPOCHS}"]))
    experiment, runs = _runs(admin_client)
    parent = [r for r in runs if r.data.tags.get("nnchain.kind") == "sweep"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    children = {r.data.tags["nnchain.trial_key"]: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parent[0].info.run_id}
    assert set(children) == {t.key for t in trials}
    for trial in trials:
        run = children[trial.key]
        assert run.info.status == "FINISHED"
        assert run.data.params == to_params(trial.config)
        steps = [m.step for m in admin_client.get_metric_history(run.info.run_id, "val_cost")]
        assert sorted(steps) == list(range(EPOCHS))
        # artifacts went through the server's proxy into its artifacts destination
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert "weights.npz" in {a.path for a in admin_client.list_artifacts(run.info.run_id)}
    assert list((deployment.root / "artifacts").rglob("weights.npz"))
    # the driver recorded as the cluster's service user, not as the submitting admin
    response = requests.get(
        f"{deployment.mlflow_url}/api/3.0/mlflow/users/permissions/get",
        params={"username": SERVICE_USER, "resource_type": "experiment",
                "resource_id": experiment.experiment_id},
        auth=("admin", deployment.secrets["admin"]), timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["permission"] == "MANAGE"


def test_trials_ran_on_more_than_one_node(deployment):
    """Each trial's ledger row names the worker process (host:pid) that trained it; Ray's
    task records map that pid to the node whose raylet ran the task. Two distinct worker
    nodes, and never the head (it has no CPUs: it only drives)."""
    _, trials = _ledger_trials(deployment)
    tasks = deployment.ray_state("tasks", name="run_pack")
    nodes = deployment.ray_state("nodes")
    head = {n["node_id"] for n in nodes if n["is_head_node"]}
    workers = {n["node_id"] for n in nodes if not n["is_head_node"] and n["state"] == "ALIVE"}
    assert len(workers) == 2, [(n["node_id"][:8], n["is_head_node"], n["state"],
                                n.get("state_message")) for n in nodes]
    node_of_pid = {int(t["worker_pid"]): t["node_id"] for t in tasks if t.get("worker_pid")}
    trial_nodes = {node_of_pid[int(t["worker"].rsplit(":", 1)[1])] for t in trials}
    assert trial_nodes <= workers and not trial_nodes & head
    assert len(trial_nodes) == 2, (trial_nodes, [t["worker"] for t in trials])


def test_the_server_refuses_strangers_and_read_only_users(deployment, admin_client):
    url = deployment.mlflow_url
    search = f"{url}/api/2.0/mlflow/experiments/search"
    assert requests.get(search, params={"max_results": 1}, timeout=10).status_code == 401
    assert requests.get(search, params={"max_results": 1}, auth=("admin", "wrong-password!"),
                        timeout=10).status_code == 401
    assert requests.get(search, params={"max_results": 1}, auth=(SERVICE_USER, "not-it-at-all"),
                        timeout=10).status_code == 401

    admin = ("admin", deployment.secrets["admin"])
    reader = ("reader", deployment.secrets["reader"])
    created = requests.post(f"{url}/api/2.0/mlflow/users/create", timeout=10, auth=admin,
                            json={"username": reader[0], "password": reader[1]})
    assert created.status_code == 200, created.text
    experiment, runs = _runs(admin_client)
    granted = requests.post(f"{url}/api/3.0/mlflow/users/permissions/grant", timeout=10,
                            auth=admin, json={"username": reader[0], "permission": "READ",
                                              "resource_type": "experiment",
                                              "resource_id": experiment.experiment_id})
    assert granted.status_code == 200, granted.text
    run_id = runs[0].info.run_id
    read = requests.get(f"{url}/api/2.0/mlflow/runs/get", params={"run_id": run_id},
                        auth=reader, timeout=10)
    assert read.status_code == 200
    logged = requests.post(f"{url}/api/2.0/mlflow/runs/log-metric", auth=reader, timeout=10,
                           json={"run_id": run_id, "key": "intruder", "value": 1.0,
                                 "timestamp": 0, "step": 0})
    assert logged.status_code == 403, logged.text
    # nor may the sweeps' service user manage users
    denied = requests.post(f"{url}/api/2.0/mlflow/users/create", timeout=10,
                           auth=(SERVICE_USER, deployment.secrets["service"]),
                           json={"username": "mallory", "password": "x" * 16})
    assert denied.status_code == 403


def test_no_password_in_params_tags_or_any_log(deployment, admin_client):
    _, runs = _runs(admin_client)
    sweeps, trials = _ledger_trials(deployment)
    texts = {
        "submit stdout": deployment.submitted.stdout,
        "submit stderr": deployment.submitted.stderr,
        "job logs": deployment.job_logs,
        "mlflow server log": deployment.mlflow_log.read_text(),
        "ledger": json.dumps([dict(s) for s in sweeps] + [dict(t) for t in trials],
                             default=str),
    }
    for run in runs:
        texts[f"run {run.info.run_id}"] = json.dumps(
            [run.data.params, run.data.tags, run.info.run_name])
    # every file Ray wrote on the three nodes: its own logs, the job's, the workers'
    for path in deployment.ray_temp.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix != ".sock":
            try:
                texts[str(path)] = path.read_text(errors="replace")
            except OSError:
                continue
    assert any("runtime_env_agent" in name for name in texts)
    assert "deploy-grid" in texts["job logs"]
    for secret_name in ("admin", "service", "reader", "mlflow_db", "ledger_db", "ray_token"):
        secret = deployment.secrets[secret_name]
        leaks = [name for name, text in texts.items() if secret in text]
        assert not leaks, f"the {secret_name} password appears in {leaks}"
    assert sweeps[0]["tracking_uri"] == deployment.mlflow_url


def test_the_best_model_is_registered_and_predicts_through_the_auth_server(
        deployment, admin_client, tmp_path):
    """The sweep's driver logged its best trial as a model through the server (as the
    service user); an admin promotes it and predicts by alias, both through the server."""
    import mlflow
    import numpy as np

    _, runs = _runs(admin_client)
    parent = next(r for r in runs if r.data.tags.get("nnchain.kind") == "sweep")
    model_uri = parent.data.tags["nnchain.best_model_uri"]
    best = admin_client.get_run(parent.data.tags["nnchain.best_run_id"])
    assert best.data.tags["nnchain.model_uri"] == model_uri
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "NNCHAIN_"))}
    env.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=deployment.secrets[
        "admin"], NNCHAIN_LEDGER_URL=deployment.ledger_url, MLFLOW_DISABLE_TELEMETRY="true")
    promoted = subprocess.run(
        nnchain_command("promote", "deploy-grid", "--name", "deploy-net", "--alias",
                        "champion", "--tracking-uri", deployment.mlflow_url, "--format",
                        "json"), env=env, capture_output=True, text=True, timeout=180)
    assert promoted.returncode == 0, promoted.stderr
    version = admin_client.get_model_version_by_alias("deploy-net", "champion")
    assert str(version.version) == str(json.loads(promoted.stdout)["version"])
    assert version.run_id == best.info.run_id and version.source == model_uri

    rows = np.array([[0.1, 0.9], [0.9, 0.9], [0.2, 0.1]])
    (tmp_path / "rows.csv").write_text("x0,x1\n" + "".join(f"{a},{b}\n" for a, b in
                                                            rows.tolist()))
    predicted = subprocess.run(
        nnchain_command("predict", "models:/deploy-net@champion", str(tmp_path / "rows.csv"),
                        "--format", "json", "--tracking-uri", deployment.mlflow_url),
        env=env, capture_output=True, text=True, timeout=180)
    assert predicted.returncode == 0, predicted.stderr
    got = np.array(json.loads(predicted.stdout)["predictions"])

    mlflow.set_tracking_uri(deployment.mlflow_url)  # MLflow resolves models:/ through it
    try:
        folder = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=str(tmp_path / "model")))
    finally:
        mlflow.set_tracking_uri(None)
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle")]
    with np.load(folder / "artifacts" / "weights.npz", allow_pickle=False) as archive:
        weights = {key: archive[key].astype(np.float64) for key in archive.files}
    with np.load(folder / "artifacts" / "scaling.npz", allow_pickle=False) as archive:
        a = (rows - archive["mean"]) / archive["scale"]
    layers = len(weights) // 2
    for i in range(1, layers):
        a = np.tanh(a @ weights[f"W{i}"] + weights[f"b{i}"])
    p = 1 / (1 + np.exp(-(a @ weights[f"W{layers}"] + weights[f"b{layers}"])))
    np.testing.assert_allclose(got, np.hstack([1 - p, p]), rtol=0, atol=1e-12)
