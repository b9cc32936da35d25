"""The guard on nnchain's private Ray hooks: a plain Ray start gives the same sweep.

``NNCHAIN_PLAIN_RAY=1`` or an untested Ray turns every private hook of a local start off
(``cluster.fast_start``); the sweep must not notice, except for one line on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from nnchain import versions
from nnchain.runner import cluster

SPEC = """
name: plain-grid
experiment: plain
seed: 3
metric: {name: val_cost, goal: minimize}
data: {name: xor, n_samples: 40, noise: 0.05, val_fraction: 0.25}
model: {hidden: [4], activation: tanh}
train: {epochs: 20, lr: 0.5}
parameters:
  train.lr: {values: [0.1, 1.0]}
  model.hidden: {values: [[2], [4]]}
"""
PLAIN_LINE = "nnchain: NNCHAIN_PLAIN_RAY=1: starting Ray plainly"


@pytest.fixture
def tested_ray(monkeypatch):
    """The guard's view: the tested Ray installed, NNCHAIN_PLAIN_RAY unset."""
    monkeypatch.delenv(versions.PLAIN_RAY, raising=False)
    monkeypatch.setattr(versions, "installed_version",
                        lambda lib: f"{versions.TESTED[lib]}.7")
    monkeypatch.setattr(versions, "_said", set())


def test_the_tested_ray_allows_the_hooks(tested_ray):
    assert cluster.fast_start() and versions.private_hooks_allowed("mlflow")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_nnchain_plain_ray_turns_the_hooks_off(tested_ray, monkeypatch, value):
    monkeypatch.setenv(versions.PLAIN_RAY, value)
    assert not cluster.fast_start()
    assert versions.private_hooks_allowed("mlflow")  # a switch for Ray's hooks only
    assert versions.plain_ray_reason() == f"NNCHAIN_PLAIN_RAY={value}: starting Ray plainly"


@pytest.mark.parametrize("value", ["", "0"])
def test_nnchain_plain_ray_unset_or_zero_keeps_them(tested_ray, monkeypatch, value):
    monkeypatch.setenv(versions.PLAIN_RAY, value)
    assert cluster.fast_start()


@pytest.mark.parametrize("installed", ["2.61.0", "2.6.0", "2.59.1", "3.60.0", None])
def test_an_untested_ray_turns_the_hooks_off(tested_ray, monkeypatch, installed):
    monkeypatch.setattr(versions, "installed_version", lambda lib: installed)
    assert not cluster.fast_start()
    assert versions.plain_ray_reason() == (
        f"Ray {installed} is not a version nnchain's fast start was tested with "
        f"({versions.TESTED['ray']}); starting Ray plainly")


def test_the_installed_versions_are_the_tested_ones():
    # what CI installs (pyproject.toml's ranges): the fast start is what the suite tests
    assert versions.is_tested("ray") and versions.is_tested("mlflow")


def test_say_once_says_each_line_once(tested_ray, capsys):
    for _ in range(3):
        versions.say_once("one")
    versions.say_once("two")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == ["nnchain: one", "nnchain: two"]


FAILED_START = """
from nnchain.runner import cluster
try:
    cluster.connect(None, num_cpus=-1)
except cluster.RayStartError as exc:
    print(exc)
"""


def test_a_local_start_that_fails_says_so_not_address(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", FAILED_START], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip()
    assert line.startswith("could not start a local Ray: ") and "\n" not in line, line
    assert "--address" not in line


def _sweep(home, plain: bool) -> tuple[dict, str]:
    """``sweep run`` of SPEC in ``home`` with its own local Ray: (its JSON result, stderr)."""
    (home / "spec.yaml").write_text(SPEC)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "NNCHAIN_LEDGER_URL",
                        "NNCHAIN_HOME", versions.PLAIN_RAY)}
    if plain:
        env[versions.PLAIN_RAY] = "1"
    done = subprocess.run([sys.executable, "-m", "nnchain", "sweep", "run", "spec.yaml",
                           "--quiet", "--format", "json", "--max-concurrent", "2"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=home)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), done.stderr


def _recorded(home, sweep_id: str) -> dict:
    """Each trial's run as MLflow holds it: state, params and every metric's history."""
    client = MlflowClient(f"sqlite:///{home / 'nnchain-runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("plain")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parent = next(r for r in runs if r.data.tags.get("nnchain.kind") == "sweep"
                  and r.data.tags.get("nnchain.sweep_id") == sweep_id)
    trials = {}
    for run in runs:
        if run.data.tags.get("mlflow.parentRunId") != parent.info.run_id:
            continue
        histories = {key: [(m.step, m.value) for m in sorted(
            client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
            for key in run.data.metrics}
        trials[run.data.tags["nnchain.trial_key"]] = {
            "status": run.info.status, "params": run.data.params, "metrics": histories}
    return trials


@pytest.mark.slow
def test_plain_ray_and_the_fast_start_give_equal_sweeps(tmp_path):
    (tmp_path / "fast").mkdir()
    (tmp_path / "plain").mkdir()
    fast, fast_err = _sweep(tmp_path / "fast", plain=False)
    plain, plain_err = _sweep(tmp_path / "plain", plain=True)
    assert PLAIN_LINE not in fast_err and "starting Ray plainly" not in fast_err
    assert plain_err.count(PLAIN_LINE) == 1
    for out in (fast, plain):
        assert out["status"] == "FINISHED" and out["counts"] == {"FINISHED": 4}
    assert fast["best_trial"] == plain["best_trial"] and fast["best"] == plain["best"]
    fast_trials = _recorded(tmp_path / "fast", fast["sweep_id"])
    plain_trials = _recorded(tmp_path / "plain", plain["sweep_id"])
    assert len(fast_trials) == 4
    assert {"train_cost", "val_cost"} <= set(next(iter(fast_trials.values()))["metrics"])
    assert all(len(history) == 20 for trial in fast_trials.values()
               for history in trial["metrics"].values())
    # same keys, states, params, and every metric's history value for value (a seeded
    # training is deterministic)
    assert plain_trials == fast_trials


def test_the_cli_tells_a_failed_local_start_in_one_line(runs_home, monkeypatch):
    from click.testing import CliRunner

    from nnchain.cli.main import main

    def refuse(address=None, *, num_cpus=None):
        raise cluster.RayStartError("could not start a local Ray: no raylet")

    monkeypatch.setattr(cluster, "connect", refuse)
    (runs_home / "spec.yaml").write_text(SPEC)
    result = CliRunner().invoke(main, ["sweep", "run", "spec.yaml", "--quiet"])
    assert result.exit_code == 1  # not bad input: this machine's Ray
    assert result.stderr == "error: could not start a local Ray: no raylet\n"
