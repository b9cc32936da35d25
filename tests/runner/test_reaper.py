"""The reaper: a driver gone from this host is recognised at once, one on another host after
the heartbeat grace; and a killed driver's sweep resumes at once on the same host."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from support import store_urls, wait_for

from nnchain.cli.main import main
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import FINISHED, KILLED, RUNNING, utcnow
from nnchain.ledger.store import open_ledger
from nnchain.runner import identity, reaper
from nnchain.runner.identity import ProcessIdentity, process_alive
from nnchain.runner.reaper import claim, driver_state, driver_values, reap, stale_sweeps


def _child() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def _state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()[0]


@pytest.fixture(scope="module")
def gone() -> ProcessIdentity:
    """The identity of a process of this host that was killed and waited for."""
    child = _child()
    found = identity.of_pid(child.pid)
    child.kill()
    child.wait()
    return found


# ---- identity ---------------------------------------------------------------------------
def test_this_process_is_running():
    me = identity.current()
    assert (me.pid, me.started is not None, bool(me.space)) == (os.getpid(), True, True)
    assert process_alive(me) is True


def test_a_killed_child_is_gone_as_a_zombie_and_once_waited_for():
    child = _child()
    try:
        found = identity.of_pid(child.pid)
        assert process_alive(found) is True
        child.kill()
        wait_for(lambda: _state(child.pid) == "Z", timeout=10, every=0.01)
        assert process_alive(found) is False  # killed, its parent has not waited yet
    finally:
        child.kill()
        child.wait()
    assert process_alive(found) is False


def test_a_reused_pid_is_gone():
    me = identity.current()
    assert process_alive(dataclasses.replace(me, started=me.started - 5)) is False


def test_elsewhere_cannot_be_checked(gone):
    assert process_alive(dataclasses.replace(gone, host="elsewhere")) is None
    assert process_alive(dataclasses.replace(gone, space="other-boot/pid:[1]")) is None
    assert process_alive(dataclasses.replace(gone, space="")) is None
    assert process_alive(dataclasses.replace(gone, started=None)) is None


# ---- the reap rule, on ledger rows written here (no MLflow run: the client is not used) --
# (the `ledger` fixture: tests/conftest.py, SQLite then PostgreSQL)
def running_sweep(ledger, driver: ProcessIdentity, heartbeat_age: float, name: str = "s"):
    """A RUNNING sweep of two trials, one RUNNING, whose driver last beat that long ago."""
    cells = [SimpleNamespace(key=f"k{i}", index=i, repeat=0, config={"i": i}, overrides={})
             for i in range(2)]
    ledger_ops.create_sweep(ledger, sweep_id=f"id-{name}", name=name, experiment="e",
                            spec_text="", fingerprint="f", metric_name="train_cost",
                            metric_goal="minimize", options={}, tracking_uri="", trials=cells)
    ledger_ops.update_sweep(ledger, f"id-{name}", **driver_values(driver),
                            heartbeat_at=utcnow() - timedelta(seconds=heartbeat_age))
    first = ledger_ops.trials_of(ledger, f"id-{name}")[0]
    ledger_ops.update_trial(ledger, first.id, state=RUNNING)
    return ledger_ops.find_sweep(ledger, f"id-{name}")


def test_a_gone_driver_on_this_host_is_reaped_at_once(ledger, gone):
    sweep = running_sweep(ledger, gone, heartbeat_age=0.5)
    assert stale_sweeps(ledger, grace=60) == [sweep.id]
    assert reap(ledger, None, grace=60) == [sweep.id]
    assert reap(ledger, None, grace=60) == []  # a second reaper finds nothing to do
    assert ledger_ops.find_sweep(ledger, sweep.id).status == "STOPPED"
    killed = ledger_ops.trials_of(ledger, sweep.id, [KILLED])
    assert [t.reason for t in killed] == [f"driver lost: its process {gone.label} is gone "
                                          "(checked on this host)"]


def test_a_running_driver_on_this_host_is_never_reaped(ledger):
    sweep = running_sweep(ledger, identity.current(), heartbeat_age=600)
    assert reap(ledger, None, grace=60) == []
    assert not claim(ledger, sweep.id, dataclasses.replace(identity.current(), pid=1))
    state = driver_state(ledger_ops.find_sweep(ledger, sweep.id), grace=60)
    assert state.describe() == (f"its driver {identity.current().label}, last heartbeat "
                                "600 s ago, is running (checked on this host)")
    assert ledger_ops.find_sweep(ledger, sweep.id).status == "RUNNING"


def test_a_driver_on_another_host_keeps_the_grace(ledger, gone):
    elsewhere = dataclasses.replace(gone, host="elsewhere")
    fresh = running_sweep(ledger, elsewhere, heartbeat_age=12, name="fresh")
    assert reap(ledger, None, grace=60) == []
    assert not claim(ledger, fresh.id, identity.current(), grace=60)
    assert driver_state(ledger_ops.find_sweep(ledger, fresh.id), grace=60).describe() == (
        f"its driver elsewhere:{gone.pid} cannot be checked from this host; last heartbeat "
        "12 s ago; it is reaped after 60 s without one")
    silent = running_sweep(ledger, elsewhere, heartbeat_age=90, name="silent")
    assert reap(ledger, None, grace=60) == [silent.id]
    assert [t.reason for t in ledger_ops.trials_of(ledger, silent.id, [KILLED])] == [
        "driver lost: no heartbeat for 60 s"]


def test_claim_takes_a_sweep_over_from_a_gone_driver_at_once(ledger, gone):
    sweep = running_sweep(ledger, gone, heartbeat_age=0.5)
    me = identity.current()
    assert claim(ledger, sweep.id, me, grace=60)
    taken = ledger_ops.find_sweep(ledger, sweep.id)
    assert (taken.status, reaper.driver_of(taken)) == ("RUNNING", me)
    assert not claim(ledger, sweep.id, gone, grace=60)  # now its driver is running


def test_a_sweep_taken_over_after_the_reaper_read_it_is_left_alone(ledger, gone, monkeypatch):
    sweep = running_sweep(ledger, gone, heartbeat_age=0.5)
    read = reaper._lost_sweeps

    def read_then_resumed_elsewhere(*args):
        lost = read(*args)
        ledger_ops.update_sweep(ledger, sweep.id, heartbeat_at=utcnow(),
                                **driver_values(identity.current()))
        return lost

    monkeypatch.setattr(reaper, "_lost_sweeps", read_then_resumed_elsewhere)
    assert reap(ledger, None, grace=60) == []
    assert ledger_ops.find_sweep(ledger, sweep.id).status == "RUNNING"
    assert ledger_ops.trials_of(ledger, sweep.id, [KILLED]) == []


def test_status_shows_the_last_heartbeat_of_a_running_sweep(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    try:
        running_sweep(ledger, identity.current(), heartbeat_age=3)
    finally:
        ledger.dispose()
    shown = CliRunner().invoke(main, ["sweep", "status", "s", "--ledger-url", url,
                                      "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert shown.exit_code == 0, shown.output
    assert (f"driver    its driver {identity.current().label}, last heartbeat 3 s ago, is "
            "running (checked on this host)") in shown.output


# ---- end to end: SIGKILL a driver, resume at once ---------------------------------------
SPEC = """
name: {name}
experiment: reaper
seed: 0
metric: {{name: train_cost, goal: minimize}}
data: {{name: spirals, n_samples: 200, noise: 0.1, val_fraction: 0.0}}
model: {{hidden: [16], activation: tanh}}
train: {{epochs: 400, lr: 0.1, checkpoint_every: 100, batch_size: 32}}
parameters:
  train.lr: {{values: [0.05, 0.1, 0.2, 0.3]}}
"""


@pytest.mark.slow
def test_a_killed_driver_resumes_at_once_on_the_same_host(runs_home, ray_address,
                                                           monkeypatch):
    monkeypatch.delenv(reaper.GRACE_ENV, raising=False)  # the default 60 s grace
    name = "sigkill"
    spec = runs_home / "s.yaml"
    spec.write_text(SPEC.format(name=name))
    env = {k: v for k, v in os.environ.items() if k != reaper.GRACE_ENV}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0")
    started = time.monotonic()
    driver = subprocess.Popen([sys.executable, "-m", "nnchain", "sweep", "run", str(spec),
                               "--quiet", "--pack", "1", "--address", ray_address],
                              cwd=runs_home, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    ledger_url = store_urls(runs_home)[1]
    try:
        wait_for(lambda: Path(ledger_url.split("sqlite:///", 1)[1]).exists(), timeout=120)
        ledger = open_ledger(ledger_url, create=False)
        sweep = wait_for(lambda: _finished_some(ledger, name), timeout=120)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.communicate(timeout=30)
    killed_at = time.monotonic()
    assert sweep.status == "RUNNING"  # the kill left it so, its heartbeat fresh
    ledger.dispose()

    resumed = CliRunner().invoke(main, ["sweep", "resume", name, "--quiet", "--format",
                                        "json"])
    resumed_at = time.monotonic()
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["status"] == "FINISHED"
    verified = CliRunner().invoke(main, ["sweep", "verify", name])
    assert verified.exit_code == 0, verified.output
    print(f"driver ran {killed_at - started:.1f} s; resume took {resumed_at - killed_at:.1f} s")


def _finished_some(ledger, name: str):
    """The sweep once at least one trial is FINISHED and another is not."""
    try:
        sweep = ledger_ops.find_sweep(ledger, name)
    except Exception:
        return None
    counts = ledger_ops.state_counts(ledger, sweep.id)
    return sweep if counts[FINISHED] >= 1 and counts[FINISHED] < sweep.trial_count else None


def test_cancel_closes_a_sweep_whose_driver_is_gone_at_once(tmp_path, gone, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    try:
        running_sweep(ledger, gone, heartbeat_age=0.5)
    finally:
        ledger.dispose()
    # the sweep has no MLflow run to end: no MLflow store is made (seconds) for nothing
    monkeypatch.setattr("nnchain.tracking.store.open_client", lambda uri: None)
    cancelled = CliRunner().invoke(main, ["sweep", "cancel", "s", "--wait", "0", "--ledger-url",
                                          url, "--tracking-uri",
                                          f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled (its driver was gone)" in cancelled.output


def test_a_run_that_started_and_ended_between_two_ledger_writes_is_closed(tmp_path, gone):
    """The driver wrote a trial's start and end to MLflow in one flush and died before the
    ledger heard of either: the trial is PENDING, its run FINISHED. Reaping ends that run
    KILLED (the trial runs again on resume, its steps kept); a run still waiting
    (SCHEDULED) for a PENDING trial is left as it is."""
    from nnchain.tracking import sweep_runs
    from nnchain.tracking.store import open_client

    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        sweep = running_sweep(ledger, gone, heartbeat_age=0.5)
        experiment_id = client.create_experiment("e")
        made = {trial.id: sweep_runs.create_trial_run(
            client, experiment_id, parent_run_id="", sweep_id=sweep.id, trial_key=trial.key,
            index=trial.index, repeat=0, attempt=0, config=trial.config, overrides={},
            scheduled=True) for trial in ledger_ops.trials_of(ledger, sweep.id)}
        runs = {trial_id: run_id for trial_id, (run_id, _) in made.items()}
        ledger_ops.update_sweep(ledger, sweep.id, experiment_id=experiment_id)
        ledger_ops.set_runs(ledger, made)
        running, pending = ledger_ops.trials_of(ledger, sweep.id)
        client.update_run(runs[running.id], status="RUNNING")
        client.update_run(runs[pending.id], status="FINISHED")

        assert reap(ledger, client, grace=60) == [sweep.id]
        assert client.get_run(runs[pending.id]).info.status == "KILLED"
        assert client.get_run(runs[running.id]).info.status == "KILLED"
        assert ledger_ops.trials_of(ledger, sweep.id, ["PENDING"])[0].id == pending.id
        assert client.get_run(runs[pending.id]).data.tags["nnchain.status_reason"].startswith(
            "driver lost")

        # a run created ahead and still waiting is not touched
        client.update_run(runs[pending.id], status="SCHEDULED")
        ledger_ops.update_sweep(ledger, sweep.id, status="RUNNING")
        assert reap(ledger, client, grace=60) == [sweep.id]
        assert client.get_run(runs[pending.id]).info.status == "SCHEDULED"
    finally:
        ledger.dispose()
