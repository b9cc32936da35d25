"""A planted password, in both forms (``user:PASSWORD@`` and ``?password=``), is searched
for everywhere a URI can surface: stdout, stderr, ledger rows, params, tags, Ray's session
logs, every process's command line, a submitted job's environment; and the local Ray of
that sweep listens on the loopback only.

The tracking server is the deployment tests' MLflow server with basic auth (its image's
entrypoint on PostgreSQL, ``tests/deploy/deployment.py``), started once for the session
(``tests/conftest.py::deployment_server``); the admin's password is the planted one. The
ledger is a PostgreSQL database reached through ``?password=`` (PostgreSQL here trusts local
users, so any password connects). One ``nnchain sweep run`` in a child process starts the
module's one local Ray, with its own ``RAY_TMPDIR``; the test watches it while it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from deployment import ADMIN_SECRET
from local_services import free_ports, fresh_pg_database

pytestmark = pytest.mark.slow

HTTP_SECRET = ADMIN_SECRET  # the session's deployment server's admin password
PG_SECRET = f"Planted-pg-{uuid.uuid4().hex[:12]}"
SECRETS = (HTTP_SECRET, PG_SECRET)
SPEC = """
name: leak-probe
experiment: leak-probe
data: {name: xor, n_samples: 1000, noise: 0.05}
model: {hidden: [4], activation: tanh}
train: {epochs: 5, lr: 0.5}
parameters:
  train.lr: {values: [0.1, 0.5]}
"""  # two small trials: each request to the basic-auth server checks a password hash
TRAIN_SPEC = "data: {name: xor, n_samples: 64}\nmodel: {hidden: [2]}\ntrain: {epochs: 2}\n"
LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "NNCHAIN_", "RAY_ADDRESS", "PG"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def nnchain(*args: str, cwd: Path, env: dict, timeout: float = 300) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nnchain", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def typed_line(process: subprocess.Popen) -> str:
    """The command line the user typed, as /proc shows it (NUL-separated, NUL-ended); a
    child forked from that process shows it too, until its exec."""
    return " ".join(process.args) + " "


def command_lines() -> dict[int, str]:
    """Every process's command line on this host (what any local user can read)."""
    lines = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(
                    b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return lines


def descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grown = {root}, True
    while grown:
        grown = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grown = True
    return tree


def listeners(pids: set[int]) -> set[tuple[str, str]]:
    """(local address, process name) of every TCP listener of ``pids`` (``ss -ltnp``)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10).stdout
    found = set()
    for line in out.splitlines():
        fields = line.split()
        for pid in pids:
            if f"pid={pid}," in line:
                name = line.split('(("', 1)[1].split('"', 1)[0] if '(("' in line else "?"
                found.add((fields[3], name))
    return found


def leaks(texts: dict[str, str]) -> list[str]:
    return [f"{secret[:12]}... in {name}" for name, text in texts.items()
            for secret in SECRETS if secret in text]


@pytest.fixture(scope="module")
def pg_database():
    with fresh_pg_database("nnchain_leak") as url:
        base = url.replace("postgresql://", "postgresql+psycopg://", 1)
        yield {"plain": base, "query": f"{base}?password={PG_SECRET}",
               "userinfo": base.replace("@", f":{PG_SECRET}@", 1)}


@pytest.fixture(scope="module")
def auth_server(deployment_server):
    """The deployment's MLflow server (basic auth), its admin password the planted one."""
    deploy = deployment_server
    deploy.planted_url = f"http://admin:{HTTP_SECRET}@127.0.0.1:{deploy.mlflow_port}"
    return deploy


@pytest.fixture(scope="module")
def sweep(auth_server, pg_database, tmp_path_factory):
    """``nnchain sweep run --format json`` on the auth server (password in the URI's
    userinfo) with the ledger at ``?password=``; watched while it runs: every command line
    on the host, and the listeners of the sweep's process tree (its local Ray)."""
    work = tmp_path_factory.mktemp("sweep")
    (work / "spec.yaml").write_text(SPEC)
    ray_temp = Path(tempfile.mkdtemp(prefix="nns-", dir="/tmp"))  # short socket paths
    env = clean_env(RAY_TMPDIR=str(ray_temp))
    watched = {"command lines": {}, "listeners": set()}
    started = time.monotonic()
    process = nnchain("sweep", "run", "spec.yaml", "--tracking-uri", auth_server.planted_url,
                      "--ledger-url", pg_database["query"], "--format", "json", "--quiet",
                      cwd=work, env=env)
    typed = typed_line(process)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        for pid, line in command_lines().items():
            # but the one the user typed, whatever the pid: a process the driver starts
            # (Ray's) shows it between its fork and its exec
            if line != typed and any(secret in line for secret in SECRETS):
                watched["command lines"][pid] = line
        watched["listeners"] |= listeners(descendants(process.pid))
        time.sleep(0.1)
    stdout, stderr = process.communicate(timeout=60)
    print(f"the sweep ran {time.monotonic() - started:.1f} s")
    yield {"code": process.returncode, "stdout": stdout, "stderr": stderr, "work": work,
           "ray_temp": ray_temp, **watched}
    shutil.rmtree(ray_temp, ignore_errors=True)


def test_stdout_is_nnchains_json_and_nothing_shows_the_password(sweep):
    assert sweep["code"] == 0, sweep["stderr"][-3000:]
    result = json.loads(sweep["stdout"])  # MLflow's "View run ... at" lines are off
    assert result["counts"]["FINISHED"] == 2
    assert "View run" not in sweep["stdout"] + sweep["stderr"]
    assert not leaks({"stdout": sweep["stdout"], "stderr": sweep["stderr"]})


def test_no_process_had_the_password_on_its_command_line(sweep):
    """None of the sweep's processes (Ray's, MLflow's), nor any other on the host, but the
    command the user typed."""
    assert sweep["command lines"] == {}


def test_ledger_rows_params_and_tags_hold_no_password(sweep, auth_server, pg_database,
                                                      monkeypatch):
    import sqlalchemy
    from mlflow import MlflowClient

    engine = sqlalchemy.create_engine(pg_database["plain"])
    texts = {}
    try:
        with engine.connect() as connection:
            for table in ("nnchain_sweeps", "nnchain_trials"):
                rows = connection.execute(sqlalchemy.text(f"SELECT * FROM {table}")).all()
                texts[table] = json.dumps([list(row) for row in rows], default=str)
            stored = connection.execute(sqlalchemy.text(
                "SELECT tracking_uri FROM nnchain_sweeps")).scalar_one()
    finally:
        engine.dispose()
    assert stored == f"http://127.0.0.1:{auth_server.mlflow_port}"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", HTTP_SECRET)
    client = MlflowClient(tracking_uri=auth_server.mlflow_url)
    experiment = client.get_experiment_by_name("leak-probe")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == 3  # the parent and two trials
    texts["experiment"] = json.dumps([experiment.tags, experiment.artifact_location])
    for run in runs:
        texts[f"run {run.info.run_id}"] = json.dumps([run.data.params, run.data.tags,
                                                      run.info.run_name])
    assert not leaks(texts)


def test_rays_session_logs_hold_no_password(sweep):
    texts = {}
    for path in sweep["ray_temp"].rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix != ".sock":
            try:
                texts[str(path)] = path.read_text(errors="replace")
            except OSError:
                continue
    assert any("raylet" in name for name in texts), sorted(texts)[:20]
    assert not leaks(texts)


def test_the_sweeps_local_ray_listens_on_the_loopback_only(sweep):
    """Every TCP listener of the sweep's process tree (the driver, GCS, raylet, workers,
    agents) seen while it ran, by ``ss -ltnp``."""
    names = {name for _, name in sweep["listeners"]}
    assert {"gcs_server", "raylet"} <= names, sweep["listeners"]
    outside = {found for found in sweep["listeners"] if not found[0].startswith(LOOPBACK)}
    assert not outside, f"listening beyond the loopback: {sorted(outside)}"


def test_train_on_the_server_prints_only_its_json(auth_server, tmp_path):
    (tmp_path / "t.yaml").write_text(TRAIN_SPEC)
    process = nnchain("train", "t.yaml", "--tracking-uri", auth_server.planted_url,
                      "--format", "json", cwd=tmp_path, env=clean_env())
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    assert json.loads(stdout)["run_id"] and "View run" not in stdout + stderr
    assert not leaks({"stdout": stdout, "stderr": stderr})


@pytest.mark.parametrize("form", ["userinfo", "query"])
def test_a_database_store_in_either_form(pg_database, tmp_path, form):
    """``train`` into PostgreSQL through a URI with the password: recorded, and nothing
    shows it; then an unreachable ledger in the same form: one error line without it."""
    (tmp_path / "t.yaml").write_text(TRAIN_SPEC)
    process = nnchain("train", "t.yaml", "--tracking-uri", pg_database[form], "--format",
                      "json", cwd=tmp_path, env=clean_env())
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    run = json.loads(stdout)
    from mlflow import MlflowClient

    data = MlflowClient(tracking_uri=pg_database["plain"]).get_run(run["run_id"]).data
    assert not leaks({"stdout": stdout, "stderr": stderr,
                      "params and tags": json.dumps([data.params, data.tags])})
    unreachable = pg_database[form].replace(":5432/", f":{free_ports(1)[0]}/")
    process = nnchain("sweep", "status", "x", "--ledger-url", unreachable, cwd=tmp_path,
                      env=clean_env())
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and stderr.count("\n") == 1, stderr
    assert "***" in stderr and not leaks({"stdout": stdout, "stderr": stderr})


def test_ui_keeps_the_password_off_every_command_line(pg_database, tmp_path):
    port = free_ports(1)[0]
    process = nnchain("ui", "--tracking-uri", pg_database["query"], "--create", "--port",
                      str(port), cwd=tmp_path, env=clean_env())
    try:
        address = process.stdout.readline()  # printed once the server answers
        assert address.startswith(f"http://127.0.0.1:{port}"), process.stderr.read()[-2000:]
        tree = descendants(process.pid)
        assert len(tree) >= 2  # the MLflow server and its worker
        lines = command_lines()
        assert any("mlflow" in lines.get(pid, "") for pid in tree)
        typed = typed_line(process)
        assert lines[process.pid] == typed
        assert not leaks({f"command line of {pid}": line for pid, line in lines.items()
                          if line != typed})  # but the one the user typed
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0
    assert not leaks({"stdout": stdout, "stderr": stderr})


@pytest.mark.parametrize("uri", [f"http://admin:{HTTP_SECRET}@mlflow:5000",
                                 f"postgresql://nnchain@db/ledger?password={PG_SECRET}",
                                 f"postgresql://db/ledger?sslmode=require&sslpassword={PG_SECRET}"],
                         ids=["http-userinfo", "pg-password", "pg-sslpassword"])
def test_submit_refuses_either_form_unless_forwarded(tmp_path, uri):
    from nnchain.runner.submit import SubmitOptions, job_env

    (tmp_path / "spec.yaml").write_text(SPEC)
    option = "--tracking-uri" if uri.startswith("http") else "--ledger-url"
    process = nnchain("sweep", "submit", "spec.yaml", "--address", "http://127.0.0.1:9",
                      option, uri, cwd=tmp_path, env=clean_env())
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and stderr.count("\n") == 1, stderr
    assert f"{option}: must not hold a password" in stderr
    assert not leaks({"stdout": stdout, "stderr": stderr})
    # forwarded on purpose: a tracking server's login travels as MLflow's variables
    values = job_env(SubmitOptions(tracking_uri=uri, forward_credentials=True), {}) \
        if option == "--tracking-uri" else {}
    if values:
        assert values["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert values["MLFLOW_TRACKING_USERNAME"] == "admin"
        assert values["MLFLOW_TRACKING_PASSWORD"] == HTTP_SECRET
