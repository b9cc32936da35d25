"""A task's messages leave in batches: a pack of short trials in one, cut where the driver
must hear at once (a decision epoch's metrics, a timed trial's start)."""

from __future__ import annotations

import numpy as np

from nnchain.job import make_data
from nnchain.runner.messages import End, Metrics
from nnchain.runner.task import Work, run_pack
from nnchain.sweep import expand
from nnchain.sweep.spec import parse_sweep_spec
from nnchain.yamlio import parse_yaml

SPEC = """
name: batches
experiment: batches
seed: 1
metric: {name: train_cost, goal: minimize}
data: {name: xor, n_samples: 16, noise: 0.05, val_fraction: 0.0}
model: {hidden: [2], activation: tanh}
train: {epochs: 6, lr: 0.5, track: []}
parameters:
  train.lr: {values: [0.1, 0.5, 2.0]}
"""


def pack(**fields) -> tuple[list[Work], list]:
    trials = expand(parse_sweep_spec(parse_yaml(SPEC, "spec"), SPEC))
    data = [make_data(trials[0].config["data"])]
    return [Work(i, t.key, t.config, 0, 0, **fields) for i, t in enumerate(trials)], data


def kinds(batch) -> list[str]:
    return [type(message).__name__ for message in batch]


def test_a_pack_of_short_trials_is_one_batch_in_order():
    works, data = pack()
    batches = list(run_pack(works, 1, 60.0, *data))
    assert [kinds(b) for b in batches] == [["Start", "Metrics", "End"] * 3]
    assert [m.trial_id for m in batches[0]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    ends = [m for m in batches[0] if isinstance(m, End)]
    assert all(end.status == "FINISHED" and end.epochs == 6 for end in ends)


def test_with_no_wait_every_message_is_its_own_batch():
    works, data = pack()
    batches = list(run_pack(works, 1, 0.0, *data))
    assert {len(b) for b in batches} == {1}
    assert kinds(b[0] for b in batches) == (["Start"] + ["Metrics"] * 6 + ["End"]) * 3


def test_a_timed_trial_is_seen_starting_at_once():
    works, data = pack(timed=True)
    batches = list(run_pack(works, 1, 60.0, *data))
    assert [kinds(b) for b in batches] == [["Start"], ["Metrics", "End", "Start"],
                                           ["Metrics", "End", "Start"], ["Metrics", "End"]]


def test_metrics_at_a_decision_epoch_end_their_batch():
    works, data = pack(report_at=(2, 4))
    asked: list[tuple[int, int]] = []

    def stops(trial_id: int, attempt: int, epoch: int) -> bool:
        asked.append((trial_id, epoch))
        return False

    batches = list(run_pack([works[0]], 1, 60.0, *data, stops=stops))
    assert [kinds(b) for b in batches] == [["Start", "Metrics"], ["Metrics"],
                                           ["Metrics", "End"]]
    assert [(m.first_step, len(m.stamps)) for b in batches for m in b
            if isinstance(m, Metrics)] == [(0, 2), (2, 2), (4, 2)]
    assert asked == [(0, 2), (0, 4)]


def test_the_values_are_the_same_batched_or_not():
    works, data = pack()

    def curves(flush_seconds: float) -> dict[int, np.ndarray]:
        found: dict[int, list] = {}
        for batch in run_pack(works, 1, flush_seconds, *data):
            for m in batch:
                if isinstance(m, Metrics):
                    found.setdefault(m.trial_id, []).extend(m.columns["train_cost"])
        return {trial: np.array(values) for trial, values in found.items()}

    batched, each = curves(60.0), curves(0.0)
    assert batched.keys() == each.keys() == {0, 1, 2}
    for trial in batched:
        assert len(batched[trial]) == 6
        np.testing.assert_array_equal(batched[trial], each[trial])
