"""A real sweep on a real local Ray, recorded in SQLite and PostgreSQL, read back via MLflow."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from nnchain.cli.main import main
from nnchain.config import to_params
from nnchain.sweep import expand, load_sweep_spec

EPOCHS = 30
SPEC = f"""
name: tiny-grid
experiment: tiny
seed: 1
metric: {{name: val_cost, goal: minimize}}
data: {{name: xor, n_samples: 40, noise: 0.05, val_fraction: 0.25}}
model: {{hidden: [4], activation: tanh}}
train: {{epochs: {EPOCHS}, lr: 0.5}}
parameters:
  train.lr: {{values: [0.1, 0.5, 2.0]}}
  model.hidden: {{values: [[2], [4]]}}
"""


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def check_sweep_in_mlflow(client: MlflowClient, spec_path, sweep_id: str) -> None:
    trials = expand(load_sweep_spec(spec_path))
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("nnchain.kind") == "sweep"
               and r.data.tags.get("nnchain.sweep_id") == sweep_id]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == len(trials) == 6
    by_key = {r.data.tags["nnchain.trial_key"]: r for r in children}
    assert set(by_key) == {t.key for t in trials}
    for trial in trials:
        run = by_key[trial.key]
        assert run.info.status == "FINISHED"
        assert run.data.params == to_params(trial.config)
        for key in ("train_cost", "val_cost", "grad_norm/layer1", "grad_norm/layer2"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(EPOCHS)), (key, steps)
        assert "weights.npz" in {a.path for a in client.list_artifacts(run.info.run_id)}
    best = parent.data.tags["nnchain.best_run_id"]
    best_value = min(r.data.metrics["val_cost"] for r in children)
    assert client.get_run(best).data.metrics["val_cost"] == best_value
    # the best trial logged as a model, from its config (the ledger's: the driver let it go)
    assert parent.data.tags["nnchain.best_model_uri"].startswith("models:/"), parent.data.tags


@pytest.mark.slow
def test_sweep_on_sqlite_default(runs_home, ray_local):
    spec = runs_home / "tiny.yaml"
    spec.write_text(SPEC)
    result = run_cli("sweep", "run", str(spec), "--format", "json", "--quiet")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "FINISHED" and out["counts"] == {"FINISHED": 6}
    client = MlflowClient(f"sqlite:///{runs_home / 'nnchain-runs' / 'mlflow.db'}")
    check_sweep_in_mlflow(client, spec, out["sweep_id"])

    status = run_cli("sweep", "status", "tiny-grid", "--format", "json")
    info = json.loads(status.stdout)
    assert info["done"] == info["total"] == 6 and info["counts"]["FINISHED"] == 6
    listing = json.loads(run_cli("sweep", "list", "--format", "json").stdout)
    assert [row["name"] for row in listing] == ["tiny-grid"]

    compared = run_cli("compare", "tiny-grid", "--format", "json")
    assert compared.exit_code == 0, compared.output
    rows = json.loads(compared.stdout)
    runs = {r.data.tags.get("nnchain.trial_key"): r for r in client.search_runs(
        [client.get_experiment_by_name("tiny").experiment_id])}
    values = [row["val_cost"] for row in rows]
    assert values == sorted(values)
    expected = sorted(r.data.metrics["val_cost"] for k, r in runs.items() if k)
    assert values == pytest.approx(expected, rel=1e-12)

    again = run_cli("sweep", "run", str(spec), "--format", "json", "--quiet")
    assert json.loads(again.stdout)["name"] == "tiny-grid-2"


@pytest.mark.slow
def test_sweep_on_postgresql(runs_home, ray_local, pg_url):
    spec = runs_home / "tiny.yaml"
    spec.write_text(SPEC)
    result = run_cli("sweep", "run", str(spec), "--format", "json", "--quiet",
                     "--tracking-uri", pg_url)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    check_sweep_in_mlflow(MlflowClient(pg_url), spec, out["sweep_id"])
    status = run_cli("sweep", "status", out["sweep_id"], "--tracking-uri", pg_url,
                     "--format", "json")
    assert Counter(json.loads(status.stdout)["counts"])["FINISHED"] == 6
    # the store and the ledger are in PostgreSQL; only artifacts are local
    assert not list((runs_home / "nnchain-runs").glob("*.db"))
