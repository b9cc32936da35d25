"""Faults on a real local Ray: killed workers, killed drivers, Ctrl-C, timeouts, divergence.

Every scenario ends by checking the invariants through MLflow's own client: one FINISHED
run per trial key, no run RUNNING, steps 0..epochs-1 exactly once, same run on retry.
Scenarios taking a ``store_uri`` run on the default SQLite store and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from support import store_urls, uri_args, wait_for

from nnchain.cli.main import main
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import RUNNING
from nnchain.ledger.store import open_ledger
from nnchain.runner.sweep import SweepOptions, run_sweep

pytestmark = pytest.mark.slow


def spec_text(name: str, epochs: int, *, lrs=(0.1, 0.3), extra: str = "") -> str:
    return f"""
name: {name}
experiment: faults
seed: 0
metric: {{name: train_cost, goal: minimize}}
max_retries: 2
{extra}
data: {{name: spirals, n_samples: 300, noise: 0.1, val_fraction: 0.0}}
model: {{hidden: [32, 32], activation: tanh}}
train: {{epochs: {epochs}, lr: 0.1, checkpoint_every: 50, batch_size: 32}}
parameters:
  train.lr: {{values: [{", ".join(map(str, lrs))}]}}
"""


def client_for(home: Path, tracking_uri: str | None = None) -> MlflowClient:
    return MlflowClient(store_urls(home, tracking_uri)[0])


def ledger_for(home: Path, tracking_uri: str | None = None):
    return open_ledger(store_urls(home, tracking_uri)[1])


def created_ledger(home: Path, tracking_uri: str | None = None):
    """The ledger once a driver has begun to create it, opened without creating anything
    (``running_trial`` sees nothing until its tables and the sweep are there)."""
    url = store_urls(home, tracking_uri)[1]
    if tracking_uri is None and not (home / "nnchain-runs" / "ledger.db").exists():
        return None
    return open_ledger(url, create=False)


def assert_invariants(home: Path, sweep_name: str, epochs: int, *, finished: int,
                      tracking_uri: str | None = None) -> None:
    """``tracking_uri`` None: the default store in ``home``; else that PostgreSQL database,
    which must hold the ledger too (nothing written to ``home``'s SQLite files)."""
    verified = CliRunner().invoke(main, ["sweep", "verify", sweep_name,
                                         *uri_args(tracking_uri)], catch_exceptions=False)
    assert verified.exit_code == 0, verified.output
    if tracking_uri is not None:
        made = [p.name for p in (home / "nnchain-runs").glob("*.db*")]
        assert not made, f"SQLite stores made beside a PostgreSQL sweep: {made}"
    client = client_for(home, tracking_uri)
    ledger = ledger_for(home, tracking_uri)
    try:
        sweep = ledger_ops.find_sweep(ledger, sweep_name)
    finally:
        ledger.dispose()
    runs = client.search_runs([sweep.experiment_id],
                              filter_string=f"tags.`nnchain.sweep_id` = '{sweep.id}'")
    assert all(r.info.status != "RUNNING" for r in runs), [r.info.status for r in runs]
    parents = [r for r in runs if r.data.tags.get("nnchain.kind") == "sweep"]
    assert [r.info.run_id for r in parents] == [sweep.parent_run_id]  # one parent, the ledger's
    assert parents[0].data.params["sweep.trials"] == str(sweep.trial_count)
    children = [r for r in runs if r.data.tags.get("nnchain.kind") == "trial"]
    done = [r for r in children if r.info.status == "FINISHED"]
    keys = [r.data.tags["nnchain.trial_key"] for r in done]
    assert len(keys) == len(set(keys)) == finished
    for run in done:  # a pruned trial's run is FINISHED with the epochs it ran
        ran = int(run.data.tags.get("nnchain.pruned_at", epochs))
        for key in ("train_cost", "grad_norm/layer1"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(ran)), (key, len(steps), ran)


def running_trial(ledger, sweep_name: str, min_step: int = 60):
    try:
        sweep = ledger_ops.find_sweep(ledger, sweep_name)
    except Exception:
        return None
    for trial in ledger_ops.trials_of(ledger, sweep.id, [RUNNING]):
        if trial.worker and trial.last_step >= min_step:
            return trial
    return None


def test_killed_worker_is_retried_from_checkpoint_in_the_same_run(runs_home, ray_local,
                                                                 store_uri):
    epochs = 4000  # a trial lasts seconds: the kill lands in it, not after it
    spec = runs_home / "s.yaml"
    spec.write_text(spec_text("killw", epochs))
    killed: dict = {}

    def killer() -> None:
        ledger = wait_for(lambda: created_ledger(runs_home, store_uri))
        try:
            trial = wait_for(lambda: running_trial(ledger, "killw"))
        finally:
            ledger.dispose()
        killed.update(key=trial.key, run_id=trial.run_id)
        os.kill(int(trial.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result = run_sweep(str(spec), [], SweepOptions(tracking_uri=store_uri, pack=1))
    thread.join(timeout=5)
    assert killed, "no worker was killed"
    assert result.status == "FINISHED"
    trials = {t.key: t for t in ledger_ops.trials_of(ledger_for(runs_home, store_uri),
                                                     result.sweep_id)}
    retried = trials[killed["key"]]
    assert retried.attempt == 1 and retried.retries == 1
    assert retried.run_id == killed["run_id"]
    run = client_for(runs_home, store_uri).get_run(retried.run_id)
    assert run.data.tags["nnchain.attempt"] == "1"
    assert_invariants(runs_home, "killw", epochs, finished=2, tracking_uri=store_uri)


def test_retries_exhausted_fails_the_trial_and_the_others_finish(runs_home, ray_local):
    epochs = 4000  # trials last seconds: the kill lands in one
    spec = runs_home / "s.yaml"
    spec.write_text(spec_text("exhaust", epochs, lrs=(0.1, 0.3, 0.5)).replace(
        "max_retries: 2", "max_retries: 0"))
    killed: dict = {}

    def killer() -> None:
        ledger = wait_for(lambda: (runs_home / "nnchain-runs" / "ledger.db").exists() and
                          ledger_for(runs_home))
        trial = wait_for(lambda: running_trial(ledger, "exhaust"))
        killed.update(key=trial.key)
        os.kill(int(trial.worker.rsplit(":", 1)[1]), signal.SIGKILL)

    threading.Thread(target=killer, daemon=True).start()
    result = run_sweep(str(spec), [], SweepOptions(pack=1))
    assert result.status == "FAILED"
    assert result.counts["FINISHED"] == 2 and result.counts["FAILED"] == 1
    trials = {t.key: t for t in ledger_ops.trials_of(ledger_for(runs_home), result.sweep_id)}
    failed = trials[killed["key"]]
    assert failed.state == "FAILED" and "retries exhausted" in failed.reason
    run = client_for(runs_home).get_run(failed.run_id)
    assert run.info.status == "FAILED"
    assert "retries exhausted" in run.data.tags["nnchain.status_reason"]
    assert_invariants(runs_home, "exhaust", epochs, finished=2)


def test_divergence_is_a_result_not_retried_and_never_best(runs_home, ray_local):
    spec = runs_home / "s.yaml"
    spec.write_text(spec_text("diverge", 50, lrs=(0.1, 1e30)).replace(
        "activation: tanh}", "activation: relu, output: identity, cost: mse}"))
    result = run_sweep(str(spec), [], SweepOptions())
    assert result.status == "FAILED" and result.counts["FAILED"] == 1
    failed = [t for t in ledger_ops.trials_of(ledger_for(runs_home), result.sweep_id)
              if t.state == "FAILED"][0]
    assert failed.reason.startswith("diverged at epoch") and failed.attempt == 0
    assert result.best_key != failed.key
    compared = CliRunner().invoke(main, ["compare", "diverge", "--format", "json"])
    rows = json.loads(compared.stdout)
    assert rows[0]["state"] == "FINISHED" and rows[-1]["state"] == "FAILED"


def test_hung_trial_times_out(runs_home, ray_local):
    spec = runs_home / "s.yaml"
    spec.write_text(spec_text("timeout", 100_000, lrs=(0.1,), extra="trial_timeout: 3"))
    started = time.monotonic()
    result = run_sweep(str(spec), [], SweepOptions())
    assert time.monotonic() - started < 60
    trial = ledger_ops.trials_of(ledger_for(runs_home), result.sweep_id)[0]
    assert trial.state == "FAILED" and "timed out after 3 s" in trial.reason
    run = client_for(runs_home).get_run(trial.run_id)
    assert run.info.status == "FAILED"


def _start_cli_sweep(home: Path, spec: Path, address: str, grace: str = "2",
                     tracking_uri: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", NNCHAIN_GRACE_SECONDS=grace,
               RAY_USAGE_STATS_ENABLED="0", RAY_ADDRESS=address)
    return subprocess.Popen([sys.executable, "-m", "nnchain", "sweep", "run", str(spec),
                             "--quiet", "--pack", "1", "--format", "json",
                             *uri_args(tracking_uri)], cwd=home, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def test_ctrl_c_kills_runs_and_leaves_the_sweep_resumable(runs_home, ray_address,
                                                          monkeypatch):
    epochs = 4000  # trials last seconds: the kill lands in one
    spec = runs_home / "s.yaml"
    spec.write_text(spec_text("ctrlc", epochs))
    process = _start_cli_sweep(runs_home, spec, ray_address)
    ledger = wait_for(lambda: (runs_home / "nnchain-runs" / "ledger.db").exists() and
                      ledger_for(runs_home), timeout=120)
    wait_for(lambda: running_trial(ledger, "ctrlc", min_step=10), timeout=120)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, (out, err[-3000:])
    sweep = ledger_ops.find_sweep(ledger, "ctrlc")
    assert sweep.status == "STOPPED"
    runs = client_for(runs_home).search_runs([sweep.experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs)
    assert any(r.info.status == "KILLED" for r in runs)

    monkeypatch.setenv("NNCHAIN_GRACE_SECONDS", "2")
    result = CliRunner().invoke(main, ["sweep", "resume", "ctrlc", "--quiet", "--format",
                                       "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "FINISHED"
    assert_invariants(runs_home, "ctrlc", epochs, finished=2)


def test_killed_driver_is_reaped_then_resumed_exactly(runs_home, ray_address, monkeypatch,
                                                      store_uri):
    epochs = 4000  # trials last seconds: the kill lands in one
    spec = runs_home / "s.yaml"
    spec.write_text(spec_text("killd", epochs))
    uri = uri_args(store_uri)
    process = _start_cli_sweep(runs_home, spec, ray_address, tracking_uri=store_uri)
    ledger = wait_for(lambda: created_ledger(runs_home, store_uri), timeout=120)
    try:
        wait_for(lambda: running_trial(ledger, "killd", min_step=60), timeout=120)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        time.sleep(2.5)  # past the grace period

        monkeypatch.setenv("NNCHAIN_GRACE_SECONDS", "2")
        status = CliRunner().invoke(main, ["sweep", "status", "killd", "--format", "json",
                                           *uri])
        assert status.exit_code == 0, status.output
        assert json.loads(status.stdout)["status"] == "STOPPED"
        sweep = ledger_ops.find_sweep(ledger, "killd")
    finally:
        ledger.dispose()
    runs = client_for(runs_home, store_uri).search_runs([sweep.experiment_id])
    assert all(r.info.status != "RUNNING" for r in runs)

    result = CliRunner().invoke(main, ["sweep", "resume", "killd", "--quiet", "--format",
                                       "json", *uri])
    assert result.exit_code == 0, result.output
    assert_invariants(runs_home, "killd", epochs, finished=2, tracking_uri=store_uri)
    again = CliRunner().invoke(main, ["sweep", "resume", "killd", "--format", "json", *uri])
    assert again.exit_code == 0 and json.loads(again.stdout)["status"] == "FINISHED"
