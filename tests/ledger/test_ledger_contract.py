"""Every ledger operation, run the same way on SQLite and on PostgreSQL (as optuna's
StorageTestCase runs every storage): sweeps, trials, the state operations and the table of
allowed state changes, checkpoints."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nnchain.errors import SpecError
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.states import (
    FAILED,
    FINISHED,
    KILLED,
    PENDING,
    PRUNED,
    RUNNING,
    TRANSITIONS,
    TRIAL_STATES,
    TransitionError,
)


def cells(n: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(key=f"k{i}", index=i, repeat=i % 2, config={"i": i},
                            overrides={("model", "hidden"): [i]}) for i in range(n)]


def add_sweep(ledger, sweep_id: str = "s1", name: str = "grid", n: int = 3) -> dict[int, int]:
    """A sweep of ``n`` PENDING trials; returns index -> trial id."""
    ledger_ops.create_sweep(ledger, sweep_id=sweep_id, name=name, experiment="exp",
                            spec_text="name: grid", fingerprint="f", metric_name="val_cost",
                            metric_goal="minimize", options={"max_retries": 2},
                            tracking_uri="sqlite:///x", trials=cells(n))
    return {t.index: t.id for t in ledger_ops.trials_of(ledger, sweep_id)}


def states(ledger, sweep_id: str = "s1") -> list[str]:
    return [t.state for t in ledger_ops.trials_of(ledger, sweep_id)]


def force(ledger, trial_id: int, state: str) -> None:
    """Put a trial in ``state`` whatever it was (building a case, not an operation)."""
    ledger_ops.update_trial(ledger, trial_id, state=state)


# ---- sweeps ----------------------------------------------------------------------------
def test_create_and_find_a_sweep(ledger):
    add_sweep(ledger, "abcdef123456", "grid")
    sweep = ledger_ops.find_sweep(ledger, "grid")
    assert (sweep.id, sweep.name, sweep.trial_count, sweep.status) == \
        ("abcdef123456", "grid", 3, "RUNNING")
    assert sweep.options == {"max_retries": 2} and sweep.heartbeat_at is not None
    assert ledger_ops.find_sweep(ledger, "abcdef123456").name == "grid"
    assert ledger_ops.find_sweep(ledger, "abcd").name == "grid"  # a unique id prefix
    with pytest.raises(SpecError, match="must name a sweep.*got 'gird'.*grid"):
        ledger_ops.find_sweep(ledger, "gird")


def test_free_name_numbers_a_taken_name(ledger):
    assert ledger_ops.free_name(ledger, "grid") == "grid"
    add_sweep(ledger, "s1", "grid")
    assert ledger_ops.free_name(ledger, "grid") == "grid-2"
    add_sweep(ledger, "s2", "grid-2")
    add_sweep(ledger, "s3", "grid-7")
    assert ledger_ops.free_name(ledger, "grid") == "grid-8"
    assert ledger_ops.free_name(ledger, "gr") == "gr"


def test_update_sweep_and_list_sweeps_with_counts(ledger):
    ids = add_sweep(ledger, "s1", "first")
    add_sweep(ledger, "s2", "second", n=2)
    ledger_ops.update_sweep(ledger, "s1", status="FINISHED", cancel_requested=1)
    ledger_ops.start_trial(ledger, ids[0], "run0", 0)
    listed = {sweep.id: (sweep.status, dict(counts)) for sweep, counts in
              ledger_ops.list_sweeps(ledger)}
    assert listed == {"s1": ("FINISHED", {RUNNING: 1, PENDING: 2}),
                      "s2": ("RUNNING", {PENDING: 2})}
    assert ledger_ops.find_sweep(ledger, "s1").cancel_requested == 1
    assert ledger_ops.cancel_requested(ledger, "s1") is True
    assert ledger_ops.cancel_requested(ledger, "s2") is False


def test_create_sweep_takes_a_stream_a_statement_at_a_time(ledger):
    """Trials from a generator (no len): read TRIALS_PER_INSERT at a time, each chunk
    inserted before the next is drawn; the sweep's trial_count is the trials inserted."""
    from sqlalchemy import event

    n, per_insert = 2_500, ledger_ops.TRIALS_PER_INSERT
    drawn = 0

    def stream():
        nonlocal drawn
        for trial in cells(n):
            drawn += 1
            yield trial

    drawn_at_inserts: list[int] = []

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO NNCHAIN_TRIALS"):
            drawn_at_inserts.append(drawn)

    event.listen(ledger.engine, "before_cursor_execute", on_execute)
    try:
        ledger_ops.create_sweep(ledger, sweep_id="s1", name="big", experiment="exp",
                                spec_text="", fingerprint="f", metric_name="val_cost",
                                metric_goal="minimize", options={}, tracking_uri="x",
                                trials=stream())
    finally:
        event.remove(ledger.engine, "before_cursor_execute", on_execute)
    assert ledger_ops.find_sweep(ledger, "big").trial_count == n
    assert ledger_ops.state_counts(ledger, "s1") == {PENDING: n}
    # one statement a chunk (or one a row where the driver runs executemany), never all
    # drawn before the first insert
    assert drawn_at_inserts and drawn_at_inserts[0] <= per_insert
    assert sorted(set(drawn_at_inserts)) == [per_insert, 2 * per_insert, n]


def test_trial_pages_read_a_sweep_in_order_a_page_at_a_time(ledger):
    ids = add_sweep(ledger, n=7)
    add_sweep(ledger, "s2", "other", n=3)
    pages = list(ledger_ops.trial_pages(ledger, "s1", page=3))
    assert [[t.index for t in page] for page in pages] == [[0, 1, 2], [3, 4, 5], [6]]
    assert [t.config for t in pages[1]] == [{"i": 3}, {"i": 4}, {"i": 5}]
    ledger_ops.start_trial(ledger, ids[1], "run1", 0)
    ledger_ops.start_trial(ledger, ids[5], "run5", 0)
    running = list(ledger_ops.trial_pages(ledger, "s1", [RUNNING], page=1))
    assert [[t.index for t in page] for page in running] == [[1], [5]]
    assert list(ledger_ops.trial_pages(ledger, "nope")) == []
    every = [t.id for page in ledger_ops.trial_pages(ledger, "s1") for t in page]
    assert every == [t.id for t in ledger_ops.trials_of(ledger, "s1")]


# ---- trials ----------------------------------------------------------------------------
def test_trials_of_in_index_order_and_by_state(ledger):
    ids = add_sweep(ledger, n=4)
    add_sweep(ledger, "s2", "other", n=2)
    trials = ledger_ops.trials_of(ledger, "s1")
    assert [t.index for t in trials] == [0, 1, 2, 3]
    assert [(t.key, t.repeat, t.config) for t in trials[:2]] == [
        ("k0", 0, {"i": 0}), ("k1", 1, {"i": 1})]
    assert trials[1].overrides == {"('model', 'hidden')": [1]}  # JSON keys are strings
    assert all((t.state, t.run_id, t.last_step, t.attempt) == (PENDING, "", -1, 0)
               for t in trials)
    ledger_ops.start_trial(ledger, ids[2], "run2", 0)
    assert [t.index for t in ledger_ops.trials_of(ledger, "s1", [RUNNING])] == [2]
    assert [t.index for t in ledger_ops.trials_of(ledger, "s1", [RUNNING, PENDING])] == \
        [0, 1, 2, 3]
    assert ledger_ops.state_counts(ledger, "s1") == {PENDING: 3, RUNNING: 1}
    assert ledger_ops.state_counts(ledger, "nope") == {}


def test_set_runs_and_update_trial(ledger):
    ids = add_sweep(ledger)
    ledger_ops.set_runs(ledger, {ids[0]: ("r0", "file:///a/r0"), ids[2]: ("r2", "s3://b/r2")})
    ledger_ops.set_runs(ledger, {})
    ledger_ops.update_trial(ledger, ids[1], last_step=7)
    trials = ledger_ops.trials_of(ledger, "s1")
    assert [(t.run_id, t.artifact_uri) for t in trials] == [
        ("r0", "file:///a/r0"), ("", ""), ("r2", "s3://b/r2")]
    assert trials[1].last_step == 7 and states(ledger) == [PENDING] * 3


def test_one_flush_writes_starts_progress_and_ends(ledger):
    ids = add_sweep(ledger)
    ledger_ops.write_trials(
        ledger,
        starts={ids[i]: ledger_ops.start_values(f"run{i}", i, f"host:{i}") for i in ids},
        progress={ids[0]: {"last_step": 9, "epochs": 10, "summary": {"c": {"last": 1.0}}}},
        ends=[(ids[2], FAILED, "diverged at epoch 3", {"epochs": 3, "last_step": 2}),
              (ids[1], FINISHED, "", {"metric": 0.25, "epochs": 20, "last_step": 19})])
    trials = ledger_ops.trials_of(ledger, "s1")
    assert [(t.state, t.run_id, t.attempt, t.worker) for t in trials] == [
        (RUNNING, "run0", 0, "host:0"), (FINISHED, "run1", 1, "host:1"),
        (FAILED, "run2", 2, "host:2")]
    assert (trials[0].last_step, trials[0].epochs, trials[0].summary) == \
        (9, 10, {"c": {"last": 1.0}})
    assert (trials[1].metric, trials[1].epochs, trials[2].reason) == \
        (0.25, 20, "diverged at epoch 3")
    assert trials[0].ended_at is None and trials[1].ended_at and trials[2].ended_at
    assert all(t.started_at is not None and t.heartbeat_at is not None for t in trials)


def test_a_flush_with_nothing_to_write_and_a_trial_no_longer_there(ledger):
    ids = add_sweep(ledger)
    ledger_ops.write_trials(ledger)
    ledger_ops.write_trials(ledger, starts={ids[0]: ledger_ops.start_values("r", 0),
                                            999_999: ledger_ops.start_values("gone", 0)},
                            ends=[(999_998, FINISHED, "", {})])
    assert states(ledger) == [RUNNING, PENDING, PENDING]


# ---- state operations ------------------------------------------------------------------
def test_a_trial_started_retried_started_again_and_finished(ledger):
    ids = add_sweep(ledger)
    trial = ids[1]
    ledger_ops.start_trial(ledger, trial, "run1", 0, "host:1")
    ledger_ops.retry_trial(ledger, trial, retries=1, attempt=1, reason="worker lost")
    found = ledger_ops.trials_of(ledger, "s1")[1]
    assert (found.state, found.retries, found.attempt, found.reason, found.run_id) == \
        (PENDING, 1, 1, "worker lost", "run1")
    ledger_ops.start_trial(ledger, trial, "run1", 1, "host:2")
    ledger_ops.end_trial(ledger, trial, FINISHED, metric=0.5, last_step=9)
    found = ledger_ops.trials_of(ledger, "s1")[1]
    assert (found.state, found.reason, found.worker, found.metric, found.last_step) == \
        (FINISHED, "", "host:2", 0.5, 9)
    with pytest.raises(ValueError, match="state must be one of"):
        ledger_ops.end_trial(ledger, trial, PENDING)


def test_requeue_and_kill(ledger):
    ids = add_sweep(ledger, n=4)
    for i in (0, 1, 2):
        ledger_ops.start_trial(ledger, ids[i], f"run{i}", 0)
    ledger_ops.end_trial(ledger, ids[0], FAILED, "diverged")
    ledger_ops.kill_trials(ledger, [ids[1], ids[3]], "cancelled")  # RUNNING and PENDING
    trials = ledger_ops.trials_of(ledger, "s1")
    assert [(t.state, t.reason) for t in trials] == [
        (FAILED, "diverged"), (KILLED, "cancelled"), (RUNNING, ""), (KILLED, "cancelled")]
    assert trials[1].ended_at is not None
    ledger_ops.requeue_trials(ledger, [ids[0], ids[1], ids[2], ids[3]])  # a resume
    assert states(ledger) == [PENDING] * 4
    ledger_ops.requeue_trials(ledger, [])
    ledger_ops.kill_trials(ledger, [], "nothing")


def test_heartbeat_of_running_trials(ledger):
    ids = add_sweep(ledger)
    ledger_ops.beat_trials(ledger, [ids[0], ids[2]])
    ledger_ops.beat_trials(ledger, [])
    beats = [t.heartbeat_at for t in ledger_ops.trials_of(ledger, "s1")]
    assert beats[0] is not None and beats[1] is None and beats[2] is not None


def test_a_write_retried_after_its_answer_was_lost_is_accepted(ledger):
    ids = add_sweep(ledger)
    for _ in range(2):
        ledger_ops.write_trials(ledger, starts={ids[0]: ledger_ops.start_values("r0", 0)},
                                ends=[(ids[0], FINISHED, "", {"metric": 1.0})])
    assert states(ledger)[0] == FINISHED


OPERATIONS = {
    RUNNING: lambda ledger, trial: ledger_ops.start_trial(ledger, trial, "run", 0),
    FINISHED: lambda ledger, trial: ledger_ops.end_trial(ledger, trial, FINISHED),
    PRUNED: lambda ledger, trial: ledger_ops.end_trial(ledger, trial, PRUNED),
    FAILED: lambda ledger, trial: ledger_ops.end_trial(ledger, trial, FAILED, "bad"),
    KILLED: lambda ledger, trial: ledger_ops.kill_trials(ledger, [trial], "cancelled"),
    PENDING: lambda ledger, trial: ledger_ops.requeue_trials(ledger, [trial]),
}


def test_every_state_change_follows_the_table(ledger):
    """Each operation from each state: done if the table allows it (or nothing changes),
    else TransitionError naming the trial and both states, and the row untouched."""
    assert set(OPERATIONS) == set(TRIAL_STATES) == set(TRANSITIONS)
    ids = add_sweep(ledger, n=1)
    trial = ids[0]
    refused = 0
    for old in TRIAL_STATES:
        for new, operation in OPERATIONS.items():
            force(ledger, trial, old)
            if new == old or new in TRANSITIONS[old]:
                operation(ledger, trial)
                assert states(ledger) == [new], (old, new)
            else:
                with pytest.raises(TransitionError) as caught:
                    operation(ledger, trial)
                assert (caught.value.trial_id, caught.value.old, caught.value.new) == \
                    (trial, old, new)
                assert f"{old} -> {new} is not allowed" in str(caught.value)
                assert states(ledger) == [old], (old, new)
                refused += 1
    assert refused == 20  # FINISHED and PRUNED: 5 each, FAILED and KILLED: 4 each, PENDING: 2


def test_a_refused_change_rolls_back_its_whole_flush(ledger):
    ids = add_sweep(ledger)
    ledger_ops.start_trial(ledger, ids[0], "run0", 0)
    with pytest.raises(TransitionError, match=f"trial {ids[2]}: PENDING -> FINISHED"):
        ledger_ops.write_trials(
            ledger, starts={ids[1]: ledger_ops.start_values("run1", 0)},
            progress={ids[0]: {"last_step": 4}},
            ends=[(ids[0], FINISHED, "", {}), (ids[2], FINISHED, "", {})])
    trials = ledger_ops.trials_of(ledger, "s1")
    assert [t.state for t in trials] == [RUNNING, PENDING, PENDING]
    assert trials[0].last_step == -1 and trials[1].run_id == ""
    ledger_ops.end_trial(ledger, ids[0], FINISHED)
    with pytest.raises(TransitionError, match="FINISHED -> PENDING is not allowed"):
        ledger_ops.retry_trial(ledger, ids[0], retries=1, attempt=1, reason="lost")
    assert ledger_ops.trials_of(ledger, "s1")[0].retries == 0


# ---- checkpoints -----------------------------------------------------------------------
def test_checkpoints_saved_loaded_and_unfinished(ledger):
    ids = add_sweep(ledger)
    add_sweep(ledger, "s2", "other", n=1)
    assert ledger_ops.load_checkpoint(ledger, ids[0]) is None
    payload = bytes(range(256)) * 40  # binary, not text
    for index in ids:
        ledger_ops.save_checkpoint(ledger, ids[index], 10 * index, payload[index:])
    ledger_ops.save_checkpoint(ledger, ids[1], 15, b"later")  # the latest one counts
    assert ledger_ops.load_checkpoint(ledger, ids[1]) == (15, b"later")
    assert ledger_ops.load_checkpoint(ledger, ids[2]) == (20, payload[2:])
    ledger_ops.start_trial(ledger, ids[0], "run0", 0)
    ledger_ops.end_trial(ledger, ids[0], FINISHED)
    assert ledger_ops.unfinished_checkpoints(ledger, "s1") == {
        ids[1]: (15, b"later"), ids[2]: (20, payload[2:])}
    assert ledger_ops.unfinished_checkpoints(ledger, "s2") == {}
