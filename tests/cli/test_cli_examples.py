"""Every training spec in examples/ resolves, and its gradients check out."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnchain.config import resolve_config
from nnchain.gradients import check_spec
from nnchain.yamlio import load_yaml_mapping

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_resolves_and_gradchecks(path):
    config = resolve_config(load_yaml_mapping(path))
    reports = check_spec(config, samples=4)
    assert reports and all(r.rel_error < 1e-5 for r in reports.values())
