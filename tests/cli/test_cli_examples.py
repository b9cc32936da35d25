"""Every spec in examples/ and workflows/ passes ``nnchain gradcheck`` at its defaults (a sweep
spec: its first cell), and a broken derivative still fails it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nnchain.cli.main import main
from nnchain.config import resolve_config
from nnchain.nn import activations
from nnchain.yamlio import load_yaml_mapping

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
WORKFLOWS = sorted((ROOT / "workflows").glob("*.yaml"))
# job.py hands train.momentum to optimizers whose hyperparameter is called mu: every
# momentum/nesterov config is refused when its job is built (not a gradient problem).

def gradcheck(path: Path, *args: str):
    return CliRunner().invoke(main, ["gradcheck", str(path), "--format", "json", *args])


def test_there_are_examples_and_workflows():
    assert EXAMPLES and WORKFLOWS


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_resolves(path):
    assert resolve_config(load_yaml_mapping(path))


@pytest.mark.parametrize("path", EXAMPLES + WORKFLOWS, ids=lambda p: p.name)
def test_gradcheck_passes_at_its_defaults(path):
    result = gradcheck(path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and report["parameters"]
    if path in WORKFLOWS:
        assert "is a sweep spec: checking its first cell" in result.stderr


def test_a_derivative_off_by_a_factor_fails_gradcheck(monkeypatch):
    def off_by_half_a_percent(a, da, out=None):
        return np.multiply(da, 1.005 * (1 - a * a), out=out)

    monkeypatch.setattr(activations.Tanh, "derivative", staticmethod(off_by_half_a_percent))
    result = gradcheck(ROOT / "examples" / "spirals.yaml")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert not report["passed"]
    assert report["parameters"]["W1"]["rel_error"] > 1e-3
    assert report["parameters"]["b3"]["rel_error"] <= report["tolerance"]
