"""``nnchain sweep verify`` on real sweeps (local Ray, SQLite and PostgreSQL): a clean sweep
passes, and each kind of tampering is reported under the right invariant.

One sweep is run per module on SQLite; each test works on its own copy of its stores.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from nnchain import versions
from nnchain.cli.main import TranslatingGroup
from nnchain.cli.verify import verify as verify_command
from nnchain.config import to_params
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import utcnow
from nnchain.ledger.store import Ledger, open_ledger
from nnchain.runner import identity
from nnchain.runner.reaper import driver_values
from nnchain.runner.sweep import SweepOptions, run_sweep
from nnchain.tracking import mlflow_sql
from nnchain.verify import LEDGER, Violation, check_sweep, verify_sweep

pytestmark = pytest.mark.slow

EPOCHS = 20
SPEC = f"""
name: verify-grid
experiment: verify
seed: 3
metric: {{name: val_cost, goal: minimize}}
data: {{name: xor, n_samples: 40, noise: 0.05, val_fraction: 0.25}}
model: {{hidden: [4], activation: tanh}}
train: {{epochs: {EPOCHS}, lr: 0.5}}
parameters:
  train.lr: {{values: [0.1, 1.0]}}
  model.hidden: {{values: [[2], [4]]}}
"""
ENV = ("MLFLOW_TRACKING_URI", "NNCHAIN_LEDGER_URL", "RAY_ADDRESS", "NNCHAIN_HOME",
       "NNCHAIN_GRACE_SECONDS")


@dataclass
class Stores:
    """A sweep's stores, open: what the tests tamper with and verify."""

    uri: str
    folder: Path | None
    ledger: Ledger
    client: MlflowClient
    name: str

    def verify(self, uri: str | None = None, **options) -> list[Violation]:
        return verify_sweep(self.ledger, self.client, uri or self.uri, self.name, **options)

    def trials(self):
        sweep = ledger_ops.find_sweep(self.ledger, self.name)
        return sweep, ledger_ops.trials_of(self.ledger, sweep.id)

    def sql(self, statement: str, *args) -> None:
        connection = sqlite3.connect(self.folder / "mlflow.db", timeout=30)
        with connection:
            connection.execute(statement, args)
        connection.close()


def verify_by(stores: Stores, path: str, monkeypatch) -> list[Violation]:
    """``sweep verify`` by one path: SQL through ``mlflow_sql`` ("sql"), metric histories as
    on a tracking server ("history"), or MLflow's client on an SQL store whose revision
    ``mlflow_sql`` was not tested with ("untested")."""
    if path == "history":
        return stores.verify("http://127.0.0.1:1")
    if path == "untested":
        monkeypatch.setattr(mlflow_sql, "TESTED_REVISIONS", frozenset({"0123456789ab"}))
    return stores.verify()


def found(violations: list[Violation], invariant, run_id: str | None = None) -> list[Violation]:
    return [v for v in violations if v.invariant == invariant
            and (run_id is None or v.run_id == run_id)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, ray_local) -> Path:
    """A clean finished sweep (4 trials) on SQLite; its folder holds mlflow.db + ledger.db."""
    home = tmp_path_factory.mktemp("verify-pristine")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        for name in ENV:
            patch.delenv(name, raising=False)
        (home / "spec.yaml").write_text(SPEC)
        result = run_sweep(str(home / "spec.yaml"), [], SweepOptions(
            tracking_uri=f"sqlite:///{home / 'runs' / 'mlflow.db'}"))
    assert result.status == "FINISHED", result
    return home / "runs"


def _copy_db(source: Path, target: Path) -> None:
    """A consistent copy of an SQLite database in WAL mode (the backup API)."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@pytest.fixture
def stores(pristine, tmp_path, monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "runs"
    folder.mkdir()
    for name in ("mlflow.db", "ledger.db"):
        _copy_db(pristine / name, folder / name)
    ledger = open_ledger(f"sqlite:///{folder / 'ledger.db'}")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    yield Stores(uri, folder, ledger, MlflowClient(uri), "verify-grid")
    ledger.dispose()


def test_clean_sweep_holds_every_invariant(stores):
    report = check_sweep(stores.ledger, stores.client, stores.uri, "verify-grid")
    assert report.violations == []
    assert report.runs_checked == 5  # the parent and 4 trials
    assert report.summary() == "sweep verify-grid: invariants 1-4 hold (5 runs checked)"
    # the tracking-server path (metric histories) agrees with the SQL aggregate, and so
    # does MLflow's client on an SQL store of a revision mlflow_sql was not tested with
    assert stores.verify("http://127.0.0.1:1") == []
    with pytest.MonkeyPatch.context() as patch:
        assert verify_by(stores, "untested", patch) == []


@pytest.mark.parametrize("path", ["sql", "history", "untested"])
def test_duplicate_step_breaks_invariant_3(stores, path, monkeypatch):
    _, trials = stores.trials()
    run_id = trials[1].run_id
    stores.client.log_batch(run_id, metrics=[Metric("train_cost", 123.0,
                                                    int(time.time() * 1000), 3)])
    violations = verify_by(stores, path, monkeypatch)
    assert [(v.invariant, v.run_id, v.trial_key) for v in violations] == \
        [(3, run_id, trials[1].key)]
    assert "metric train_cost" in violations[0].message
    assert "step recorded more than once: 3 (2 times)" in violations[0].message


@pytest.mark.parametrize("path", ["sql", "history", "untested"])
def test_gaps_in_steps_break_invariant_3(stores, path, monkeypatch):
    _, trials = stores.trials()
    gap_run, start_run = trials[0].run_id, trials[2].run_id
    stores.sql("DELETE FROM metrics WHERE run_uuid = ? AND key = 'val_cost' AND step IN (5, 6)",
               gap_run)
    stores.sql("DELETE FROM metrics WHERE run_uuid = ? AND key = 'train_cost' AND step = 0",
               start_run)
    violations = verify_by(stores, path, monkeypatch)
    assert {(v.invariant, v.run_id) for v in violations} == {(3, gap_run), (3, start_run)}
    by_run = {v.run_id: v.message for v in violations}
    assert by_run[gap_run].startswith("metric val_cost: missing steps 5-6")
    assert by_run[start_run].startswith("metric train_cost: missing step 0")


def test_changed_extra_and_missing_params_break_invariant_4(stores):
    _, trials = stores.trials()
    run_id = trials[3].run_id
    stores.sql("UPDATE params SET value = '9.9' WHERE run_uuid = ? AND key = 'train.lr'",
               run_id)
    stores.sql("DELETE FROM params WHERE run_uuid = ? AND key = 'model.activation'", run_id)
    stores.client.log_batch(run_id, params=[Param("train.extra", "1")])
    messages = sorted(v.message for v in found(stores.verify(), 4, run_id))
    expected_lr = to_params(trials[3].config)["train.lr"]
    assert messages == sorted([
        f"param train.lr is '9.9', the trial's config has '{expected_lr}'",
        "param model.activation is missing, the trial's config has 'tanh'",
        "param train.extra='1' is not in the trial's config"])
    assert [v for v in stores.verify() if v.invariant != 4] == []


def test_the_default_update_order_is_a_param_that_older_runs_may_lack(stores):
    """Every run shows train.update_order (simultaneous, left out of resolved configs at its
    default); a run recorded before that param existed is not a violation."""
    _, trials = stores.trials()
    run_id = trials[2].run_id
    assert "train.update_order" not in trials[2].config["train"]
    assert stores.client.get_run(run_id).data.params["train.update_order"] == "simultaneous"
    stores.sql("DELETE FROM params WHERE run_uuid = ? AND key = 'train.update_order'", run_id)
    assert stores.verify() == []
    stores.sql("UPDATE params SET value = 'output_first' WHERE key = 'train.update_order'")
    assert {v.message for v in found(stores.verify(), 4)} == {
        "param train.update_order is 'output_first', the trial's config has 'simultaneous'"}


def test_second_finished_run_for_a_trial_key_breaks_invariant_1(stores):
    sweep, trials = stores.trials()
    original = stores.client.get_run(trials[0].run_id)
    copy = stores.client.create_run(sweep.experiment_id, tags={
        k: v for k, v in original.data.tags.items() if k.startswith(("nnchain.", "mlflow.p"))})
    stores.client.log_batch(copy.info.run_id, params=[
        Param(k, v) for k, v in original.data.params.items()])
    stores.client.set_terminated(copy.info.run_id, "FINISHED")
    violations = stores.verify()
    assert [(v.invariant, v.run_id, v.trial_key) for v in found(violations, 1)] == \
        [(1, copy.info.run_id, trials[0].key)]
    assert original.info.run_id in found(violations, 1)[0].message
    assert [v.message for v in found(violations, LEDGER)] == \
        ["child run (FINISHED) is not the run of any ledger trial"]
    assert found(violations, 4) == []


def test_run_left_running_after_the_sweep_stopped_breaks_invariant_2(stores):
    sweep, trials = stores.trials()
    run_id = trials[2].run_id
    stores.client.update_run(run_id, status="RUNNING")
    violations = stores.verify()
    assert [v.run_id for v in found(violations, 2)] == [run_id]
    assert "the sweep is FINISHED in the ledger" in found(violations, 2)[0].message
    assert found(violations, LEDGER, run_id)  # ledger FINISHED, MLflow RUNNING

    # a live driver on another host (fresh heartbeat) may have RUNNING runs; a silent one
    # may not
    ledger_ops.update_sweep(stores.ledger, sweep.id, status="RUNNING", heartbeat_at=utcnow(),
                            driver="elsewhere:7", driver_host="elsewhere", driver_pid=7)
    assert found(stores.verify(), 2) == []
    ledger_ops.update_sweep(stores.ledger, sweep.id,
                            heartbeat_at=utcnow() - timedelta(seconds=120))
    stale = found(stores.verify(), 2)
    assert [v.run_id for v in stale] == [run_id] and "last heartbeat 120 s ago" in \
        stale[0].message
    assert found(stores.verify(grace_seconds=300), 2) == []

    # on this host the driver's process is checked: gone is stopped, whatever the heartbeat
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = identity.of_pid(child.pid)
    child.kill()
    child.wait()
    ledger_ops.update_sweep(stores.ledger, sweep.id, heartbeat_at=utcnow(),
                            **driver_values(gone))
    dead = found(stores.verify(grace_seconds=300), 2)
    assert [v.run_id for v in dead] == [run_id] and "is gone (checked on this host)" in \
        dead[0].message
    ledger_ops.update_sweep(stores.ledger, sweep.id, heartbeat_at=utcnow() -
                            timedelta(seconds=120), **driver_values(identity.current()))
    assert found(stores.verify(), 2) == []  # running here: not stopped, however silent


def test_finished_trial_whose_run_failed_is_a_ledger_violation(stores):
    _, trials = stores.trials()
    run_id = trials[1].run_id
    stores.client.set_terminated(run_id, "FAILED")
    violations = stores.verify()
    assert [v.message for v in found(violations, LEDGER, run_id)] == \
        ["trial is FINISHED in the ledger but its run is FAILED in MLflow"]
    assert [v.message for v in found(violations, 2, run_id)] == \
        ["run is FAILED without a nnchain.status_reason tag"]
    assert [v.message for v in found(violations, 1, run_id)] == \
        ["the sweep is FINISHED but this trial has no FINISHED run"]
    stores.client.set_tag(run_id, "nnchain.status_reason", "diverged at epoch 3")
    assert found(stores.verify(), 2) == []


def test_ledger_out_of_step_with_mlflow(stores):
    sweep, trials = stores.trials()
    ledger_ops.update_trial(stores.ledger, trials[0].id, state="FAILED")
    ledger_ops.update_trial(stores.ledger, trials[1].id, last_step=EPOCHS + 5)
    ledger_ops.update_trial(stores.ledger, trials[2].id, run_id="0" * 32)
    violations = stores.verify()
    messages: dict[tuple, list[str]] = {}
    for v in violations:
        messages.setdefault((v.invariant, v.trial_key), []).append(v.message)
    assert messages[(1, trials[0].key)] == \
        ["the sweep is FINISHED but this trial is FAILED in the ledger"]
    assert messages[(LEDGER, trials[0].key)] == \
        ["trial is FAILED in the ledger but its run is FINISHED in MLflow"]
    assert messages[(LEDGER, trials[1].key)] == [
        f"the ledger's last step is {EPOCHS + 5} but the run's highest step in MLflow is "
        f"{EPOCHS - 1}"]
    # the ledger's run is gone, and the trial's real run is unknown to the ledger
    assert sorted(messages[(LEDGER, trials[2].key)]) == [
        "child run (FINISHED) is not the run of any ledger trial",
        f"the trial's run is not in the MLflow store (the sweep was recorded in "
        f"{stores.trials()[0].tracking_uri})"]
    assert {v.run_id for v in violations if v.trial_key == trials[2].key} == \
        {"0" * 32, trials[2].run_id}
    assert {v.invariant for v in violations} == {1, LEDGER}


def test_cli_exit_codes_and_formats(stores):
    runner = CliRunner()
    base = ["verify-grid", "--tracking-uri", stores.uri]
    clean = runner.invoke(verify_command, base)
    assert clean.exit_code == 0, clean.output
    assert clean.stdout == "sweep verify-grid: invariants 1-4 hold (5 runs checked)\n"
    as_json = runner.invoke(verify_command, [*base, "--format", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == []

    _, trials = stores.trials()
    stores.client.log_batch(trials[0].run_id, metrics=[Metric("val_cost", 1.0, 0, 0)])
    stores.client.update_run(trials[1].run_id, status="RUNNING")
    broken = runner.invoke(verify_command, base)
    assert broken.exit_code == 1, broken.output
    lines = broken.stdout.splitlines()
    assert lines[-1] == f"{len(lines) - 1} violations in sweep verify-grid"
    assert lines[0].startswith(f"invariant 1: trial {trials[1].key} run {trials[1].run_id}")
    rows = json.loads(runner.invoke(verify_command, [*base, "--format", "json"]).stdout)
    assert len(rows) == len(lines) - 1
    assert {row["invariant"] for row in rows} == {1, 2, 3, LEDGER}
    assert set(rows[0]) == {"invariant", "run_id", "trial_key", "message"}


def test_cli_bad_input_exits_2(stores, tmp_path):
    group = TranslatingGroup(commands={"verify": verify_command})
    runner = CliRunner()
    unknown = runner.invoke(group, ["verify", "no-such-sweep", "--tracking-uri", stores.uri])
    assert unknown.exit_code == 2
    assert "SWEEP: must name a sweep of this ledger" in unknown.stderr
    missing = tmp_path / "nowhere" / "mlflow.db"
    absent = runner.invoke(group, ["verify", "x", "--tracking-uri", f"sqlite:///{missing}"])
    assert absent.exit_code == 2 and "must point at an existing MLflow store" in absent.stderr
    assert not missing.parent.exists()  # nothing was created


def test_postgresql_sweep(runs_home, ray_local, pg_url):
    (runs_home / "spec.yaml").write_text(SPEC.replace("[0.1, 1.0]", "[0.1]"))
    result = run_sweep(str(runs_home / "spec.yaml"), [], SweepOptions(tracking_uri=pg_url))
    assert result.status == "FINISHED"
    ledger = open_ledger(pg_url, create=False)
    stores = Stores(pg_url, None, ledger, MlflowClient(pg_url), result.name)
    try:
        assert stores.verify() == []
        _, trials = stores.trials()
        stores.client.log_batch(trials[1].run_id, metrics=[Metric("train_cost", 5.0, 0, 7)])
        violations = stores.verify()
        assert [(v.invariant, v.run_id) for v in violations] == [(3, trials[1].run_id)]
        assert "7 (2 times)" in violations[0].message
    finally:
        ledger.dispose()


def test_a_live_sweep_in_the_middle_of_a_write_is_not_a_violation(stores):
    sweep, trials = stores.trials()
    # a driver on another host: its heartbeat decides whether it is live
    ledger_ops.update_sweep(stores.ledger, sweep.id, status="RUNNING", heartbeat_at=utcnow(),
                            driver="elsewhere:7", driver_host="elsewhere", driver_pid=7)
    stores.client.update_run(sweep.parent_run_id, status="RUNNING")
    # the driver ended the run in MLflow and is about to record it in the ledger
    ledger_ops.update_trial(stores.ledger, trials[0].id, state="RUNNING")
    # the driver created a run and is about to record it in the ledger
    newborn = stores.client.create_run(sweep.experiment_id, tags={
        "mlflow.parentRunId": sweep.parent_run_id, "nnchain.kind": "trial",
        "nnchain.sweep_id": sweep.id, "nnchain.trial_key": trials[1].key})
    ledger_ops.update_sweep(stores.ledger, sweep.id, status="RUNNING", heartbeat_at=utcnow())
    assert [v for v in stores.verify() if v.invariant != 4] == []
    ledger_ops.update_sweep(stores.ledger, sweep.id,
                            heartbeat_at=utcnow() - timedelta(seconds=90))
    stale = {(v.invariant, v.run_id) for v in stores.verify()}
    assert {(2, trials[0].run_id), (LEDGER, trials[0].run_id), (2, newborn.info.run_id),
            (LEDGER, newborn.info.run_id), (2, sweep.parent_run_id)} <= stale


@pytest.mark.parametrize("path", ["sql", "history", "untested"])
def test_run_nested_under_the_parent_without_the_sweep_tag_is_found(stores, path, monkeypatch):
    sweep, _ = stores.trials()
    stray = stores.client.create_run(sweep.experiment_id,
                                     tags={"mlflow.parentRunId": sweep.parent_run_id})
    stores.client.set_terminated(stray.info.run_id, "KILLED")
    violations = verify_by(stores, path, monkeypatch)
    assert [(v.invariant, v.message) for v in violations] == [
        (2, "run is KILLED without a nnchain.status_reason tag"),
        (LEDGER, "child run (KILLED) is not the run of any ledger trial")]
    assert {v.run_id for v in violations} == {stray.info.run_id}


def test_a_sweep_on_an_untested_revision_is_recorded_through_the_client(
        runs_home, ray_local, monkeypatch, capsys):
    """MLflow newer than nnchain knows: the sweep's runs, metrics, starts and ends all go
    through MLflow's client, say so once, and verify clean."""
    monkeypatch.setattr(mlflow_sql, "TESTED_REVISIONS", frozenset({"0123456789ab"}))
    monkeypatch.setattr(versions, "_said", set())
    (runs_home / "spec.yaml").write_text(SPEC.replace("[0.1, 1.0]", "[0.1]"))
    uri = f"sqlite:///{runs_home / 'runs' / 'mlflow.db'}"
    result = run_sweep(str(runs_home / "spec.yaml"), [], SweepOptions(tracking_uri=uri))
    assert result.status == "FINISHED"
    ledger = open_ledger(f"sqlite:///{runs_home / 'runs' / 'ledger.db'}", create=False)
    try:
        assert Stores(uri, runs_home / "runs", ledger, MlflowClient(uri),
                      result.name).verify() == []
    finally:
        ledger.dispose()
    assert capsys.readouterr().err.count("not one nnchain was tested with") == 1
