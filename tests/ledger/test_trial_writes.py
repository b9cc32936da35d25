"""The driver's ledger writes: trials started, their progress and their ends, in one
transaction a flush, in that order."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import FINISHED, PENDING, RUNNING
from nnchain.ledger.store import open_ledger


@pytest.fixture
def ledger(tmp_path):
    ledger = open_ledger(f"sqlite:///{tmp_path}/ledger.db")
    cells = [SimpleNamespace(key=f"k{i}", index=i, repeat=0, config={"i": i}, overrides={})
             for i in range(3)]
    ledger_ops.create_sweep(ledger, sweep_id="s1", name="s", experiment="s", spec_text="",
                            fingerprint="f", metric_name="train_cost",
                            metric_goal="minimize", options={}, tracking_uri="", trials=cells)
    yield ledger
    ledger.dispose()


def _by_index(ledger):
    return {t.index: t for t in ledger_ops.trials_of(ledger, "s1")}


def test_starts_progress_and_ends_of_one_flush(ledger):
    ids = {index: trial.id for index, trial in _by_index(ledger).items()}
    ledger_ops.write_trials(
        ledger,
        starts={ids[0]: ledger_ops.start_values("run0", 0, "host:1"),
                ids[1]: ledger_ops.start_values("run1", 2, "host:2")},
        progress={ids[0]: {"last_step": 9, "epochs": 10}},
        ends=[(ids[1], FINISHED, "", {"metric": 0.25, "last_step": 19, "epochs": 20})])
    trials = _by_index(ledger)
    assert (trials[0].state, trials[0].run_id, trials[0].worker) == (RUNNING, "run0", "host:1")
    assert (trials[0].last_step, trials[0].epochs) == (9, 10)
    assert trials[0].started_at is not None and trials[0].ended_at is None
    # started and ended within one flush: the end wins, the start's run and attempt stay
    assert (trials[1].state, trials[1].run_id, trials[1].attempt) == (FINISHED, "run1", 2)
    assert (trials[1].metric, trials[1].epochs) == (0.25, 20)
    assert trials[1].started_at is not None and trials[1].ended_at is not None
    assert trials[2].state == PENDING and trials[2].run_id in (None, "")


def test_nothing_to_write_opens_no_transaction(ledger, monkeypatch):
    def no_session():
        raise AssertionError("a session was opened")

    monkeypatch.setattr(ledger, "session", no_session)
    ledger_ops.write_trials(ledger, starts={}, progress={}, ends=[])


def test_many_trials_of_one_flush_each_get_their_own_values(ledger):
    """Rows with the same columns go in together; each trial still gets its own values."""
    ids = {index: trial.id for index, trial in _by_index(ledger).items()}
    ledger_ops.write_trials(
        ledger, starts={ids[i]: ledger_ops.start_values(f"run{i}", i, f"host:{i}") for i in ids},
        ends=[(ids[0], FINISHED, "", {"metric": 0.5, "epochs": 5}),
              (ids[2], PENDING, "worker lost", {"retries": 1})])
    trials = _by_index(ledger)
    assert [(t.run_id, t.attempt, t.worker) for t in trials.values()] == [
        (f"run{i}", i, f"host:{i}") for i in range(3)]
    assert [(t.state, t.reason) for t in trials.values()] == [
        (FINISHED, ""), (RUNNING, ""), (PENDING, "worker lost")]
    assert (trials[0].metric, trials[0].epochs, trials[2].retries) == (0.5, 5, 1)


def test_unfinished_checkpoints_of_the_sweep_only(ledger):
    ids = {index: trial.id for index, trial in _by_index(ledger).items()}
    for index in ids:
        ledger_ops.save_checkpoint(ledger, ids[index], 10 * index, f"weights {index}".encode())
    ledger_ops.save_checkpoint(ledger, ids[1], 15, b"later")  # the latest one counts
    ledger_ops.write_trials(ledger, starts={ids[0]: ledger_ops.start_values("run0", 0)},
                            ends=[(ids[0], FINISHED, "", {})])
    assert ledger_ops.unfinished_checkpoints(ledger, "s1") == {
        ids[1]: (15, b"later"), ids[2]: (20, b"weights 2")}
    assert ledger_ops.unfinished_checkpoints(ledger, "another") == {}
