"""Every example spec in workflows/ loads and expands, and stays small enough to run on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnchain.sweep import expand, load_sweep_spec
from nnchain.sweep.expansion import bayes_template

WORKFLOWS = sorted((Path(__file__).parents[2] / "workflows").glob("*.yaml"))
MAX_TRIALS = {"megaphone.yaml": 90}  # 2 datasets x 3 orders x 3 activations x 5 seeds


def test_the_examples_are_there():
    names = {path.name for path in WORKFLOWS}
    assert {"xor.yaml", "spirals_depth.yaml", "digits.yaml", "random_lr.yaml",
            "hyperband_digits.yaml", "bayes_digits.yaml"} <= names


def test_the_search_examples_stop_early_and_propose():
    folder = WORKFLOWS[0].parent
    hyperband = load_sweep_spec(folder / "hyperband_digits.yaml")
    assert (hyperband.early_terminate.type, hyperband.method) == ("hyperband", "random")
    bayes = load_sweep_spec(folder / "bayes_digits.yaml")
    assert bayes.method == "bayes" and bayes.early_terminate is not None
    assert {"train.lr", "model.hidden", "train.weight_decay"} <= set(bayes.parameters)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_workflow_loads_and_expands(path):
    text = path.read_text()
    assert text.startswith("#") and f"nnchain sweep run workflows/{path.name}" in text
    spec = load_sweep_spec(path)
    trials = expand(spec)
    if spec.method == "bayes":  # proposed as it runs: the first cell stands for them
        assert trials == [] and 1 <= spec.run_cap <= 50
        assert bayes_template(spec)["train"]["epochs"] <= 500
        return
    assert 1 <= len(trials) <= MAX_TRIALS.get(path.name, 50)
    assert len({trial.key for trial in trials}) == len(trials)
    assert all(trial.config["train"]["epochs"] <= 500 for trial in trials)


def test_xor_quick_start_is_a_3x3_grid():
    trials = expand(load_sweep_spec(WORKFLOWS[0].parent / "xor.yaml"))
    assert len(trials) == 9
    assert all(trial.config["train"]["batch_size"] is None for trial in trials)  # full batch


@pytest.mark.parametrize("name,layers,datasets", [
    ("megaphone.yaml", 3, {"spirals", "digits"}),
    ("megaphone_deep.yaml", 6, {"spirals"}),
])
def test_megaphone_crosses_orders_activations_and_five_seeds(name, layers, datasets):
    from nnchain.config import resolve_config
    from nnchain.job import build_job

    trials = expand(load_sweep_spec(WORKFLOWS[0].parent / name))
    orders = {trial.config["train"].get("update_order", "simultaneous") for trial in trials}
    assert orders == {"simultaneous", "output_first", "input_first"}
    assert {trial.config["model"]["activation"] for trial in trials} == {"sigmoid", "tanh",
                                                                         "relu"}
    assert {trial.config["data"]["name"] for trial in trials} == datasets
    assert len({trial.config["seed"] for trial in trials}) == 5
    assert len(trials) == 3 * 3 * 5 * len(datasets)
    for trial in trials:
        assert len(trial.config["model"]["hidden"]) + 1 == layers
        assert {"effect", "sensitivity"} <= set(trial.config["train"]["track"])
    config = resolve_config({**trials[0].config,
                             "train": {**trials[0].config["train"], "epochs": 1}})
    job = build_job(config)
    record, = job.epochs()
    assert {f"effect/layer{k}" for k in range(1, layers + 1)} <= set(record.metrics)
