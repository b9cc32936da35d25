"""Describing broken metric steps (pure, no stores)."""

from __future__ import annotations

from nnchain.verify.steps import StepStats, describe_steps


def test_describe_steps():
    assert describe_steps([0, 1, 1, 2, 5, 6, 9]) == (
        "step recorded more than once: 1 (2 times); missing steps 3-4, 7-8 "
        "(7 values over steps 0..9, must be 0..n-1 each once)")
    assert describe_steps([2, 3]).startswith("missing steps 0-1 (")
    assert describe_steps([-1, 0]).startswith("negative steps: -1 (")


def test_step_stats_contiguous():
    assert StepStats.of([0, 1, 2]).contiguous
    assert not StepStats.of([0, 1, 1]).contiguous
    assert not StepStats.of([1, 2]).contiguous
    assert not StepStats.of([0, 2]).contiguous
