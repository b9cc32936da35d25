"""A 2,000-trial random search end to end on the session's local Ray and the default SQLite
store, read back through MLflow's own client: every trial one FINISHED run, every epoch's
values recorded once."""

from __future__ import annotations

import random

import pytest
from mlflow import MlflowClient

from nnchain.runner.sweep import SweepOptions, run_sweep

TRIALS, EPOCHS = 2000, 5
SPEC = f"""
name: scale-2k
experiment: scale
seed: 3
method: random
run_cap: {TRIALS}
metric: {{name: train_cost, goal: minimize}}
data: {{name: xor, n_samples: 16, noise: 0.1, val_fraction: 0.0}}
model: {{hidden: [2], activation: tanh}}
train: {{epochs: {EPOCHS}, lr: 0.1}}
parameters:
  train.lr: {{distribution: log_uniform, min: 0.001, max: 1.0}}
  seed: {{distribution: int_uniform, min: 0, max: 1000000}}
"""


@pytest.mark.slow
def test_a_2000_trial_sweep_records_every_trial_and_step(runs_home, ray_local):
    spec = runs_home / "scale.yaml"
    spec.write_text(SPEC)
    result = run_sweep(str(spec), [], SweepOptions())
    assert result.status == "FINISHED" and result.counts == {"FINISHED": TRIALS}

    client = MlflowClient(f"sqlite:///{runs_home / 'nnchain-runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("scale").experiment_id
    runs = client.search_runs([experiment], max_results=TRIALS + 10)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") ==
                result.parent_run_id]
    assert len(runs) == TRIALS + 1 and len(children) == TRIALS
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["nnchain.trial_key"] for r in children}) == TRIALS
    for run in children:  # the metric of the sweep, every run: steps 0..EPOCHS-1 once
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_cost")]
        assert sorted(steps) == list(range(EPOCHS)), (run.info.run_id, steps)
    keys = set(children[0].data.metrics)
    assert {"train_cost", "train_accuracy", "grad_norm/layer1", "grad_norm/layer2"} <= keys
    for run in random.Random(0).sample(children, 20):  # every key, on a sample of runs
        assert set(run.data.metrics) == keys
        for key in keys:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(EPOCHS)), (run.info.run_id, key, steps)
