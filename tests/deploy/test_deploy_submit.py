"""``nnchain sweep submit`` against a stand-in job API: validation, what travels, what prints."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from local_services import free_ports

from nnchain.runner import submit as submit_module
from nnchain.runner.submit import SubmitOptions, build_entrypoint, job_env, last_json

SPEC = """
name: xor-grid
experiment: xor
metric: {name: val_cost, goal: minimize}
data: {name: xor, n_samples: 40, val_fraction: 0.25}
model: {hidden: [4], activation: tanh}
train: {epochs: 5, lr: 0.5}
parameters:
  train.lr: {values: [0.1, 0.5]}
"""
RESULT = {"sweep_id": "0123456789ab", "name": "xor-grid-2", "status": "FINISHED",
          "counts": {"FINISHED": 2}, "trials": 2, "best": 0.1, "best_trial": "k",
          "experiment_id": "1", "parent_run_id": "r"}


class FakeJobs:
    """What ``JobSubmissionClient`` answers; the job runs through ``states`` and its driver
    ends with ``sweep run``'s JSON result for the sweep id it was given."""

    def __init__(self, states=("PENDING", "RUNNING", "SUCCEEDED"), exit_code=0):
        self.states, self.exit_code = list(states), exit_code
        self.submitted: dict = {}
        self.shipped: dict[str, str] = {}
        self.calls = 0

    def submit_job(self, **kwargs):
        self.submitted = kwargs
        root = Path(kwargs["runtime_env"]["working_dir"])
        self.shipped = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*")
                        if p.is_file()}
        return kwargs["submission_id"]

    def get_job_info(self, job_id):
        self.calls += 1
        status = self.states[min(self.calls - 1, len(self.states) - 1)]
        ended = status in ("SUCCEEDED", "FAILED", "STOPPED")
        return SimpleNamespace(status=status, driver_exit_code=self.exit_code if ended else None)

    def sweep_id(self) -> str:
        words = shlex.split(self.submitted["entrypoint"])
        return words[words.index("--sweep-id") + 1]

    def get_job_logs(self, job_id):
        logs = f"Running entrypoint for job {job_id}: ...\n"
        if self.calls >= 2:  # what `sweep run` says on stderr, never read by submit
            logs += "sweep xor-grid-2 (ffffffffffff): 2 trials\n"
        if self.states[min(self.calls - 1, len(self.states) - 1)] == "SUCCEEDED":
            logs += json.dumps({**RESULT, "sweep_id": self.sweep_id()}) + "\n"
        return logs


@pytest.fixture
def fake_jobs(monkeypatch):
    jobs = FakeJobs()
    monkeypatch.setattr(submit_module, "job_client", lambda address: jobs)
    monkeypatch.setattr(submit_module.time, "sleep", lambda seconds: None)
    return jobs


@pytest.fixture
def spec_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "NNCHAIN_LEDGER_URL", "RAY_ADDRESS",
                 "RAY_API_SERVER_ADDRESS", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "xor.yaml"
    path.write_text(SPEC)
    return path


def invoke(cli, *args, env=None):
    return CliRunner().invoke(cli, ["sweep", "submit", *args], env=env)


def test_a_bad_spec_is_refused_before_any_cluster_is_asked(nnchain_cli, spec_file, monkeypatch):
    monkeypatch.setattr(submit_module, "job_client", lambda address: pytest.fail("contacted"))
    spec_file.write_text(SPEC.replace("activation: tanh", "activation: nope"))
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://127.0.0.1:1")
    assert result.exit_code == 2 and result.output.startswith("error: model.activation")
    spec_file.write_text(SPEC)
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://127.0.0.1:1",
                    "--set", "train.optimizer=adamw")
    assert result.exit_code == 2 and "train.optimizer" in result.output
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://127.0.0.1:1",
                    "--name", "../escape")
    assert result.exit_code == 2 and "name" in result.output


def test_the_job_api_must_be_named_and_reachable(nnchain_cli, spec_file):
    result = invoke(nnchain_cli, str(spec_file))
    assert result.exit_code == 2 and "--address: must name the cluster's job API" in result.output
    result = invoke(nnchain_cli, str(spec_file), "--address",
                    f"http://127.0.0.1:{free_ports(1)[0]}")
    assert result.exit_code == 2 and "must reach a Ray cluster's job API" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_uri_with_a_password_is_refused_unless_forwarded(nnchain_cli, spec_file, fake_jobs):
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://head:8265",
                    "--ledger-url", "postgresql://nnchain:hunter2-secret@db/nnchain")
    assert result.exit_code == 2 and "must not hold a password" in result.output
    assert "hunter2-secret" not in result.output and not fake_jobs.submitted


def test_what_travels_and_what_is_printed(nnchain_cli, spec_file, fake_jobs):
    env = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "alice-password-9"}
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://head:8265",
                    "--tracking-uri", "http://mlflow:5000", "--set", "train.epochs=3",
                    "--set", "model.hidden=[8, 8]", env=env)
    assert result.exit_code == 0, result.output
    submitted = fake_jobs.submitted
    words = shlex.split(submitted["entrypoint"])
    assert words[:6] == ["python", "-m", "nnchain", "sweep", "run", "sweep.yaml"]
    assert words[words.index("--name") + 1] == "xor-grid"
    assert ["--set", "model.hidden=[8, 8]"] == words[words.index("model.hidden=[8, 8]") - 1:
                                                     words.index("model.hidden=[8, 8]") + 1]
    assert "://" not in submitted["entrypoint"]
    assert submitted["runtime_env"]["env_vars"] == {  # another store than the cluster's:
        "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": "http://mlflow:5000",  # not its
        "NNCHAIN_TRACKING_STORE_URL": ""}                  # server's database either
    assert fake_jobs.shipped == {"sweep.yaml": SPEC}
    assert not Path(submitted["runtime_env"]["working_dir"]).exists()  # removed once sent
    assert submitted["metadata"]["nnchain.sweep"] == "xor-grid"
    # the id chosen here and passed to the driver, reported at once (the job is PENDING)
    sweep_id = fake_jobs.sweep_id()
    assert re.fullmatch(r"[0-9a-f]{12}", sweep_id)
    assert submitted["metadata"]["nnchain.sweep_id"] == sweep_id
    assert f"sweep    {sweep_id} (named xor-grid, or -2" in result.stdout
    assert f"nnchain sweep status {sweep_id}" in result.stdout
    assert "(PENDING)" in result.stdout and fake_jobs.calls == 1
    assert submitted["submission_id"] in result.stdout
    assert "alice-password-9" not in result.output


def test_forwarded_credentials_travel_only_as_job_environment(spec_file, fake_jobs):
    env = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "alice-password-9",
           "MLFLOW_TRACKING_TOKEN": "tok-123456"}
    lines: list[str] = []
    options = SubmitOptions(address="http://head:8265", forward_credentials=True, env=env,
                            ledger_url="postgresql://nnchain:db-password-7@db/nnchain")
    submission = submit_module.submit_sweep(str(spec_file), (), options, on_log=lines.append)
    variables = fake_jobs.submitted["runtime_env"]["env_vars"]
    assert variables["MLFLOW_TRACKING_PASSWORD"] == "alice-password-9"
    assert variables["MLFLOW_TRACKING_TOKEN"] == "tok-123456"
    assert variables["NNCHAIN_LEDGER_URL"].endswith(":db-password-7@db/nnchain")
    assert "--forward-credentials" in lines[0]
    assert set(submission.secrets) >= {"alice-password-9", "tok-123456", "db-password-7"}
    assert submit_module.mask("x alice-password-9 db-password-7", submission.secrets) == \
        "x *** ***"


def test_wait_follows_the_job_and_exits_with_the_sweeps_code(nnchain_cli, spec_file,
                                                             fake_jobs):
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://head:8265", "--wait",
                    "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    sweep_id = fake_jobs.sweep_id()
    assert f"sweep {sweep_id} submitted as job" in result.stderr.splitlines()[0]
    # the final name (it was taken: -2) from the driver's result for this sweep id
    assert out["sweep_id"] == sweep_id and out["result"] == {**RESULT, "sweep_id": sweep_id}
    assert out["name"] == "xor-grid-2" and out["name_final"]
    fake_jobs.__init__(states=("RUNNING", "RUNNING", "FAILED"), exit_code=1)
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://head:8265", "--wait")
    assert result.exit_code == 1


def test_a_job_that_dies_at_once(nnchain_cli, spec_file, fake_jobs):
    fake_jobs.__init__(states=("FAILED",), exit_code=2)
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://head:8265")
    assert result.exit_code == 2
    assert "ended FAILED: Running entrypoint" in result.stderr
    assert f"sweep    {fake_jobs.sweep_id()} (named xor-grid" in result.stdout


class BusyHead(FakeJobs):
    """A head whose job agent is not up for the first ``refusals`` submissions."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def submit_job(self, **kwargs):
        if self.refusals:
            self.refusals -= 1
            raise RuntimeError("Request failed with status code 500: No available agent to "
                               "submit job, please try again later..")
        return super().submit_job(**kwargs)


def test_a_head_without_its_job_agent_yet_is_asked_again(nnchain_cli, spec_file, monkeypatch):
    head = BusyHead(refusals=3)
    monkeypatch.setattr(submit_module, "job_client", lambda address: head)
    monkeypatch.setattr(submit_module.time, "sleep", lambda seconds: None)
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://head:8265")
    assert result.exit_code == 0, result.output
    assert head.refusals == 0 and head.submitted["submission_id"].startswith("nnchain-")
    head = BusyHead(refusals=10**6)  # never up: refused as before once the wait is over
    monkeypatch.setattr(submit_module, "AGENT_WAIT_SECONDS", 0.0)
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://head:8265")
    assert result.exit_code == 2 and not head.submitted
    assert "--address: must accept the job" in result.output
    assert "No available agent" in result.output


def test_relative_data_files_are_shipped(nnchain_cli, spec_file, fake_jobs, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "points.csv").write_text("x1,x2,label\n0,0,0\n1,1,1\n0,1,1\n1,0,0\n")
    spec_file.write_text(SPEC.replace("data: {name: xor, n_samples: 40, val_fraction: 0.25}",
                                      "data: {path: data/points.csv, target: label}"))
    result = invoke(nnchain_cli, str(spec_file), "--address", "http://head:8265")
    assert result.exit_code == 0, result.output
    assert set(fake_jobs.shipped) == {"sweep.yaml", "data/points.csv"}


def test_helpers():
    assert last_json("a\n{\"x\": 1}\n" + json.dumps(RESULT) + "\nbye\n") == RESULT
    assert last_json("{not json}\n") is None
    options = SubmitOptions(max_concurrent=3, pack=2)
    words = shlex.split(build_entrypoint("a b", "0a1b2c3d4e5f", ["k=it's"], options))
    assert words[words.index("--name") + 1] == "a b" and "k=it's" in words
    assert words[words.index("--sweep-id") + 1] == "0a1b2c3d4e5f"
    assert words[words.index("--max-concurrent") + 1] == "3"
    assert job_env(SubmitOptions(), {"MLFLOW_TRACKING_PASSWORD": "p"}) == {
        "PYTHONUNBUFFERED": "1"}
    # another tracking server than the cluster's: not the cluster's database behind its own
    assert job_env(SubmitOptions(tracking_uri="http://other:5000"), {}) == {
        "PYTHONUNBUFFERED": "1", "MLFLOW_TRACKING_URI": "http://other:5000",
        "NNCHAIN_TRACKING_STORE_URL": ""}


@pytest.mark.slow
def test_sweep_run_takes_the_id_submit_chose(nnchain_cli, runs_home, ray_local):
    """The driver's side of `submit`: `sweep run --sweep-id` records the sweep under that id,
    and refuses a malformed or taken id (exit 2) before anything is written."""
    from mlflow import MlflowClient

    (runs_home / "xor.yaml").write_text(SPEC)
    run = ["sweep", "run", "xor.yaml", "--quiet", "--format", "json"]
    refused = CliRunner().invoke(nnchain_cli, [*run, "--sweep-id", "0123456789AB"])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == ("error: --sweep-id: must be 12 lowercase hex digits, got "
                                      "'0123456789AB'")
    assert not (runs_home / "nnchain-runs").exists()

    done = CliRunner().invoke(nnchain_cli, [*run, "--sweep-id", "0123456789ab"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["sweep_id"] == "0123456789ab"
    status = CliRunner().invoke(nnchain_cli, ["sweep", "status", "0123456789ab", "--format",
                                              "json"])
    assert json.loads(status.stdout)["name"] == "xor-grid"

    client = MlflowClient(f"sqlite:///{runs_home / 'nnchain-runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("xor").experiment_id
    runs_before = len(client.search_runs([experiment]))
    again = CliRunner().invoke(nnchain_cli, [*run, "--sweep-id", "0123456789ab"])
    assert again.exit_code == 2
    assert again.stderr.strip() == ("error: --sweep-id: must be new to the ledger, sweep "
                                    "'xor-grid' has id 0123456789ab")
    listing = CliRunner().invoke(nnchain_cli, ["sweep", "list", "--format", "json"])
    assert [row["id"] for row in json.loads(listing.stdout)] == ["0123456789ab"]
    assert len(client.search_runs([experiment])) == runs_before == 3
