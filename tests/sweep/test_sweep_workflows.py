"""Every example spec in workflows/ loads and expands, and stays small enough to run on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnchain.sweep import expand, load_sweep_spec

WORKFLOWS = sorted((Path(__file__).parents[2] / "workflows").glob("*.yaml"))


def test_the_examples_are_there():
    names = {path.name for path in WORKFLOWS}
    assert {"xor.yaml", "spirals_depth.yaml", "digits.yaml", "random_lr.yaml"} <= names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_workflow_loads_and_expands(path):
    text = path.read_text()
    assert text.startswith("#") and f"nnchain sweep run workflows/{path.name}" in text
    spec = load_sweep_spec(path)
    trials = expand(spec)
    assert 1 <= len(trials) <= 50
    assert len({trial.key for trial in trials}) == len(trials)
    assert all(trial.config["train"]["epochs"] <= 500 for trial in trials)


def test_xor_quick_start_is_a_3x3_grid():
    trials = expand(load_sweep_spec(WORKFLOWS[0].parent / "xor.yaml"))
    assert len(trials) == 9
    assert all(trial.config["train"]["batch_size"] is None for trial in trials)  # full batch
