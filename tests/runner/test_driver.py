"""The driver's logic through an in-process executor: no Ray, real trials, real stores.

``FakeExecutor`` runs each pack's real ``run_pack`` generator in this process and hands
its messages over one at a time; a test's ``fault`` replaces a message with a crash
(``TaskEnded``, like a lost worker) or with a changed message. The ledger (SQLite) and the
MLflow store (SQLite, one per module) are real, and are read back to check what the
driver wrote.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from mlflow import MlflowClient

from nnchain.job import make_data
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.states import FAILED, FINISHED, KILLED, PENDING, PRUNED
from nnchain.ledger.store import open_ledger
from nnchain.runner import driver as driver_module
from nnchain.runner.driver import Driver, Settings, StopSweep, ledger_state, pack_size
from nnchain.runner.executor import TaskEnded
from nnchain.runner.messages import End, Message, Metrics, Start
from nnchain.runner.task import Work, run_pack
from nnchain.sweep import expand
from nnchain.sweep.bayes import Proposals
from nnchain.sweep.expansion import bayes_template
from nnchain.sweep.pruning import Pruner
from nnchain.sweep.spec import parse_sweep_spec
from nnchain.tracking import sweep_runs
from nnchain.tracking.metrics import MetricWriter
from nnchain.tracking.store import artifact_root, experiment_id, open_client
from nnchain.verify.checks import verify_sweep
from nnchain.yamlio import parse_yaml

EPOCHS = 12


def spec_text(*, lrs: Sequence[float] = (0.1, 0.5, 2.0), seeds: int = 1, goal: str = "minimize",
              metric: str = "val_cost", checkpoint_every: int = 0, max_retries: int = 2,
              extra: str = "") -> str:
    return f"""
name: drv
{extra}
experiment: driver-tests
seed: 1
repeats: {seeds}
max_retries: {max_retries}
metric: {{name: {metric}, goal: {goal}}}
data: {{name: xor, n_samples: 40, noise: 0.05, val_fraction: 0.25}}
model: {{hidden: [3], activation: tanh}}
train: {{epochs: {EPOCHS}, lr: 0.5, checkpoint_every: {checkpoint_every}, track: []}}
parameters:
  train.lr: {{values: {list(lrs)}}}
"""


# ---- the fake executor -----------------------------------------------------------------
@dataclass(eq=False)
class FakeTask:
    number: int
    pack: list[Work]
    messages: Iterator[Message]
    delivered: list = field(default_factory=list)


Fault = Callable[[FakeTask, Message], "Message | TaskEnded | None"]


def _one_by_one(batches: Iterator[list[Message]]) -> Iterator[Message]:
    """The messages of ``run_pack``'s batches in order; closing it closes the task."""
    try:
        for batch in batches:
            yield from batch
    finally:
        batches.close()


class FakeExecutor:
    """Each pack's real ``run_pack`` in-process, one message a ``take``. ``fault(task,
    message)`` may return what the driver gets instead (a ``TaskEnded`` ends the task);
    ``hung`` tasks never become ready."""

    def __init__(self, datasets: list, fault: Fault | None = None) -> None:
        self.datasets, self.fault = datasets, fault
        self.tasks: list[FakeTask] = []
        self.cancelled: list[FakeTask] = []
        self.hung: set[int] = set()
        self.stopped: list[tuple[int, int]] = []  # early stops asked, in order
        self.going_on: list[tuple[int, int, int]] = []  # decisions to go on, in order
        self.most_in_flight = 0

    def submit(self, pack: Sequence[Work]) -> FakeTask:
        batches = run_pack(list(pack), 1, 0.0, *self.datasets,
                           stops=lambda trial_id, attempt, epoch:
                           (trial_id, attempt) in self.stopped)
        task = FakeTask(len(self.tasks), list(pack), _one_by_one(batches))
        self.tasks.append(task)
        return task

    def wait(self, handles: Sequence[FakeTask], timeout: float) -> list[FakeTask]:
        self.most_in_flight = max(self.most_in_flight, len(handles))
        ready = [task for task in handles if task.number not in self.hung]
        if not ready:
            time.sleep(min(timeout, 0.01))
        return ready

    def take(self, task: FakeTask) -> Message | TaskEnded:
        try:
            message = next(task.messages)
        except StopIteration:
            return TaskEnded()
        if self.fault is not None:
            replaced = self.fault(task, message)
            if replaced is not None:
                message = replaced
                if isinstance(message, TaskEnded):
                    task.messages.close()
        task.delivered.append(message)
        return message

    def cancel(self, task: FakeTask) -> None:
        task.messages.close()
        self.cancelled.append(task)

    def stop(self, task: FakeTask, trial_id: int, attempt: int) -> None:
        self.stopped.append((trial_id, attempt))

    def decided(self, task: FakeTask, trial_id: int, attempt: int, epoch: int) -> None:
        self.going_on.append((trial_id, attempt, epoch))


# ---- stores and a sweep ----------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (making one takes a while)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    return uri, open_client(uri)


@pytest.fixture
def ledger(tmp_path):
    ledger = open_ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield ledger
    ledger.dispose()


@dataclass
class Sweep:
    """A sweep recorded as ``nnchain sweep run`` records it, ready for a driver."""

    ledger: object
    uri: str
    client: MlflowClient
    id: str
    datasets: list
    data_keys: list[str]
    max_retries: int
    checkpoint_every: int

    @property
    def row(self):
        return ledger_ops.find_sweep(self.ledger, self.id)

    def trials(self) -> list:
        return ledger_ops.trials_of(self.ledger, self.id)

    def by_key(self) -> dict:
        return {t.key: t for t in self.trials()}

    def run(self, fault: Fault | None = None, *, pack: int = 1, slots: int = 2,
            in_flight: int = 0, trial_timeout: float | None = None,
            executor: FakeExecutor | None = None) -> tuple[Driver, FakeExecutor, list]:
        """A driver on the sweep's trials to its end; returns it, its executor and the
        progress snapshots it gave."""
        executor = executor or FakeExecutor(self.datasets, fault)
        settings = Settings(max_concurrent=slots, in_flight=in_flight, pack=pack,
                            flush_seconds=0.05, max_retries=self.max_retries,
                            trial_timeout=trial_timeout, checkpoint_every=self.checkpoint_every)
        writer = MetricWriter(self.client, self.uri)
        snapshots: list = []

        def on_progress(snapshot) -> None:  # the counts are always the trials' states
            assert snapshot.counts == +Counter(ledger_state(live.state)
                                               for live in driver.live.values())
            snapshots.append(snapshot)

        driver = Driver(ledger=self.ledger, client=self.client, writer=writer, sweep=self.row,
                        executor=executor, data_keys=self.data_keys, settings=settings,
                        on_progress=on_progress, pruner=self.pruner(),
                        proposals=self.proposals())
        driver.load(self.trials())
        try:
            driver.run()
        finally:
            writer.dispose()
        return driver, executor, snapshots

    def proposals(self) -> Proposals | None:
        spec = parse_sweep_spec(parse_yaml(self.row.spec_text, "spec"))
        return Proposals(self.ledger, self.row, spec) if spec.method == "bayes" else None

    def pruner(self) -> Pruner | None:
        spec = parse_sweep_spec(parse_yaml(self.row.spec_text, "spec"))
        if spec.early_terminate is None:
            return None
        return Pruner(spec.early_terminate, EPOCHS, spec.metric.goal)

    def history(self, run_id: str, key: str = "train_cost") -> list:
        return MlflowClient(self.uri).get_metric_history(run_id, key)


def new_sweep(ledger, store, text: str, edit: Callable[[list], None] | None = None) -> Sweep:
    uri, client = store
    spec = parse_sweep_spec(parse_yaml(text, "spec"), text)
    cells = expand(spec)
    if edit is not None:
        edit(cells)
    configs = [c.config for c in cells] or [bayes_template(spec)]  # bayes: proposed later
    count = spec.run_cap if spec.method == "bayes" else len(cells)
    sweep_id = ledger_ops.new_sweep_id()
    ledger_ops.create_sweep(ledger, sweep_id=sweep_id, name=f"drv-{sweep_id}",
                            experiment=spec.experiment, spec_text=text, fingerprint="f",
                            metric_name=spec.metric.name, metric_goal=spec.metric.goal,
                            options={}, tracking_uri=uri, trials=cells, trial_count=count)
    exp_id = experiment_id(client, spec.experiment, artifact_root(uri))
    parent = sweep_runs.create_parent_run(client, exp_id, sweep_id=sweep_id, name=sweep_id,
                                          spec_text=text, trial_count=count, settings={})
    ledger_ops.update_sweep(ledger, sweep_id, experiment_id=exp_id, parent_run_id=parent)
    ledger_ops.set_runs(ledger, sweep_runs.insert_scheduled_runs(
        client, uri, exp_id, parent_run_id=parent, sweep_id=sweep_id,
        trials=ledger_ops.trials_of(ledger, sweep_id)))
    data_keys = list(dict.fromkeys(json.dumps(c["data"], sort_keys=True) for c in configs))
    return Sweep(ledger, uri, client, sweep_id, [make_data(json.loads(k)) for k in data_keys],
                 data_keys, spec.max_retries, configs[0]["train"]["checkpoint_every"])


def trial_of(sweep: Sweep, task: FakeTask, message: Message):
    return next(t for t in sweep.trials() if t.id == message.trial_id)


def assert_steps_once_each(sweep: Sweep, run_id: str, epochs: int = EPOCHS) -> None:
    for key in ("train_cost", "val_cost"):
        assert sorted(m.step for m in sweep.history(run_id, key)) == list(range(epochs)), key


def assert_counts_match_ledger(sweep: Sweep, driver: Driver) -> None:
    assert driver.counts == Counter(t.state for t in sweep.trials())


# ---- packs -----------------------------------------------------------------------------
def test_packs_shrink_as_the_queue_drains_and_tasks_in_flight_are_bounded(ledger, store):
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.3, 0.5, 1.0, 2.0, 3.0)))
    driver, executor, snapshots = sweep.run(pack=2, slots=1, in_flight=1)
    sizes, queued = [], 6
    while queued:
        sizes.append(pack_size(queued, 2, 1))
        queued -= sizes[-1]
    assert [len(task.pack) for task in executor.tasks] == sizes == [2, 2, 1, 1]
    assert executor.most_in_flight == 1
    assert driver.counts == {FINISHED: 6}
    assert_counts_match_ledger(sweep, driver)
    for trial in sweep.trials():
        assert (trial.state, trial.attempt, trial.retries, trial.epochs) == \
            (FINISHED, 0, 0, EPOCHS)
        assert sweep.client.get_run(trial.run_id).info.status == FINISHED
        assert_steps_once_each(sweep, trial.run_id)
    # the display's counts come from the trials' states: always all of them
    assert all(sum(s.counts.values()) == 6 for s in snapshots)
    assert snapshots[-1].counts == {FINISHED: 6} and snapshots[0].counts == {PENDING: 6}


# ---- retries ---------------------------------------------------------------------------
def test_a_lost_worker_is_retried_from_its_checkpoint_without_repeating_steps(ledger, store):
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.5,), seeds=2, checkpoint_every=5))
    victim = sweep.trials()[0].id

    def lose_worker(task, message):  # after the checkpoint at epoch 5 and steps 5 and 6
        if isinstance(message, Metrics) and message.trial_id == victim and \
                message.first_step == 7 and task.pack[0].attempt == 0:
            return TaskEnded(RuntimeError("node 10.0.0.7 died"))
        return None

    driver, executor, _ = sweep.run(lose_worker)
    retried = [task.pack[0] for task in executor.tasks if task.pack[0].trial_id == victim]
    assert [(w.attempt, w.checkpoint is not None) for w in retried] == [(0, False), (1, True)]
    trial = sweep.trials()[0]
    assert (trial.state, trial.attempt, trial.retries, trial.last_step) == \
        (FINISHED, 1, 1, EPOCHS - 1)
    run = sweep.client.get_run(trial.run_id)
    assert run.info.status == FINISHED and run.data.tags["nnchain.attempt"] == "1"
    assert_steps_once_each(sweep, trial.run_id)
    # the retry restored the checkpoint: its curve goes on as the other seed's would
    costs = [m.value for m in sorted(sweep.history(trial.run_id), key=lambda m: m.step)]
    assert np.all(np.isfinite(costs)) and costs[-1] < costs[0]
    assert driver.counts == {FINISHED: 2}
    assert_counts_match_ledger(sweep, driver)


def test_retries_running_out_fail_the_trial_with_the_reason(ledger, store):
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.5), max_retries=2))
    victim = sweep.trials()[1].id

    def always_lost(task, message):
        if isinstance(message, Metrics) and message.trial_id == victim:
            return TaskEnded(RuntimeError("worker died"))
        return None

    driver, executor, snapshots = sweep.run(always_lost)
    attempts = [task.pack[0].attempt for task in executor.tasks
                if task.pack[0].trial_id == victim]
    assert attempts == [0, 1, 2]
    trials = sweep.trials()
    reason = "worker lost (RuntimeError: worker died); retries exhausted (2)"
    assert (trials[1].state, trials[1].reason, trials[1].retries) == (FAILED, reason, 3)
    assert trials[0].state == FINISHED
    run = sweep.client.get_run(trials[1].run_id)
    assert run.info.status == FAILED and run.data.tags["nnchain.status_reason"] == reason
    assert driver.counts == {FINISHED: 1, FAILED: 1}
    assert_counts_match_ledger(sweep, driver)
    assert snapshots[-1].counts == {FINISHED: 1, FAILED: 1}


def test_a_bad_config_fails_at_once_and_is_not_retried(ledger, store):
    def break_second(cells) -> None:
        cells[1].config["model"]["activation"] = "nope"

    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.5)), edit=break_second)
    driver, executor, _ = sweep.run()
    bad = sweep.trials()[1]
    assert [task.pack[0].trial_id for task in executor.tasks].count(bad.id) == 1
    assert (bad.state, bad.retries, bad.attempt) == (FAILED, 0, 0)
    assert "nope" in bad.reason
    ends = [m for task in executor.tasks for m in task.delivered if isinstance(m, End)]
    assert [(m.status, m.permanent) for m in ends if m.trial_id == bad.id] == [(FAILED, True)]
    run = sweep.client.get_run(bad.run_id)
    assert run.info.status == FAILED and "nope" in run.data.tags["nnchain.status_reason"]
    assert driver.counts == {FINISHED: 1, FAILED: 1}


def test_a_task_that_never_starts_its_trial_requeues_it_without_a_retry(ledger, store):
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.5)))

    def first_task_dies_at_once(task, message):
        return TaskEnded() if task.number == 0 else None

    driver, executor, _ = sweep.run(first_task_dies_at_once, slots=1)
    first = executor.tasks[0].pack[0].trial_id
    again = [task for task in executor.tasks[1:] if task.pack[0].trial_id == first]
    assert len(again) == 1 and again[0].pack[0].attempt == 0
    trial = next(t for t in sweep.trials() if t.id == first)
    assert (trial.state, trial.attempt, trial.retries) == (FINISHED, 0, 0)
    assert driver.counts == {FINISHED: 2}


def test_a_hung_trial_times_out_and_is_not_retried(ledger, store, monkeypatch):
    monkeypatch.setattr(driver_module, "BEAT_SECONDS", 0.0)
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.5)))
    executor = FakeExecutor(sweep.datasets)

    def hang_after_start(task, message):
        if task.number == 0 and isinstance(message, Start):
            executor.hung.add(task.number)
        return None

    executor.fault = hang_after_start
    driver, _, _ = sweep.run(slots=2, trial_timeout=0.2, executor=executor)
    assert executor.cancelled == [executor.tasks[0]]
    hung = next(t for t in sweep.trials() if t.id == executor.tasks[0].pack[0].trial_id)
    assert (hung.state, hung.reason) == (FAILED, "timed out after 0.2 s")
    assert sweep.client.get_run(hung.run_id).info.status == FAILED
    assert driver.counts == {FINISHED: 1, FAILED: 1}


def test_the_heartbeat_beats_the_running_trials_and_no_others(ledger, store, monkeypatch):
    """Each beat names exactly the trials started and not yet ended (as the messages
    say), and reaches the ledger."""
    monkeypatch.setattr(driver_module, "BEAT_SECONDS", 0.0)
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.3, 0.5, 1.0)))
    running: set[int] = set()
    beats: list[tuple[list[int], list[int]]] = []  # (beaten, running as the messages say)
    real_beat = ledger_ops.beat_trials

    def beat(ledger_, trial_ids):
        beats.append((sorted(trial_ids), sorted(running)))
        real_beat(ledger_, trial_ids)

    def track(task, message):
        if isinstance(message, Start):
            running.add(message.trial_id)
        elif isinstance(message, End):
            running.discard(message.trial_id)
        return None

    monkeypatch.setattr(ledger_ops, "beat_trials", beat)
    driver, _, _ = sweep.run(track, slots=2)
    assert driver.counts == {FINISHED: 4}
    assert [beaten for beaten, expected in beats if beaten != expected] == []
    assert any(beaten for beaten, _ in beats), beats
    for trial in sweep.trials():
        assert trial.heartbeat_at is not None and trial.heartbeat_at >= trial.started_at


# ---- cancel and resume -----------------------------------------------------------------
@pytest.mark.parametrize("how", ["sweep cancel", "Ctrl-C"])
def test_cancel_kills_the_running_trials_and_a_resume_runs_them_again(ledger, store,
                                                                     monkeypatch, how):
    monkeypatch.setattr(driver_module, "BEAT_SECONDS", 0.0)
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.3, 0.5, 1.0, 2.0)))
    third = sweep.trials()[2].id

    def cancel_when_the_third_starts(task, message):
        if isinstance(message, Start) and message.trial_id == third:
            if how == "Ctrl-C":
                os.kill(os.getpid(), signal.SIGINT)  # the driver's handler sets a flag
            else:
                ledger_ops.update_sweep(ledger, sweep.id, cancel_requested=1)
        return None

    reason = "cancelled" if how == "sweep cancel" else "interrupted by the user"
    with pytest.raises(StopSweep, match=reason):
        sweep.run(cancel_when_the_third_starts, slots=2)
    trials = sweep.by_key()
    killed = [t for t in trials.values() if t.state == KILLED]
    assert third in {t.id for t in killed}
    assert all(t.reason == reason for t in killed)
    assert Counter(t.state for t in trials.values())[PENDING] == 1  # never started
    for trial in killed:
        run = sweep.client.get_run(trial.run_id)
        assert run.info.status == KILLED and run.data.tags["nnchain.status_reason"] == reason

    # a resume: KILLED trials go back to PENDING in the ledger, then run to their end
    ledger_ops.update_sweep(ledger, sweep.id, cancel_requested=0)
    seen = []

    def watch(task, message):
        if not seen:
            seen.append(Counter(t.state for t in sweep.trials()))
        return None

    driver, executor, _ = sweep.run(watch)
    assert seen[0][KILLED] == 0 and seen[0][PENDING] >= len(killed) + 1
    assert driver.counts == {FINISHED: 5}
    resumed = sweep.by_key()
    for trial in killed:
        assert resumed[trial.key].run_id == trial.run_id  # the same run, reopened
        assert_steps_once_each(sweep, trial.run_id)


# ---- best so far -----------------------------------------------------------------------
@pytest.mark.parametrize(("goal", "metric", "unbeatable"), [("minimize", "val_cost", -1.0),
                                                            ("maximize", "val_accuracy", 9.0)])
def test_best_so_far_ignores_nan_and_failed_trials(ledger, store, goal, metric, unbeatable):
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.5, 1.0, 2.0), goal=goal,
                                               metric=metric))
    trials = sweep.trials()
    nan_last, failed = trials[0].id, trials[1].id

    def fake_results(task, message):
        if isinstance(message, Metrics) and message.trial_id == failed:
            return dataclasses.replace(message, columns={
                **message.columns, metric: np.full(len(message.stamps), unbeatable)})
        if isinstance(message, End) and message.trial_id == failed:
            return dataclasses.replace(message, status=FAILED, reason="diverged at epoch 11")
        if isinstance(message, Metrics) and message.trial_id == nan_last and \
                message.first_step == EPOCHS - 1:
            return dataclasses.replace(message, columns={
                **message.columns, metric: np.array([np.nan])})
        return None

    driver, _, snapshots = sweep.run(fake_results)
    by_id = {t.id: t for t in sweep.trials()}
    assert by_id[nan_last].state == FINISHED and by_id[nan_last].metric is None
    assert by_id[failed].state == FAILED and by_id[failed].metric is None
    finished = [t for t in by_id.values() if t.metric is not None]
    assert len(finished) == 2
    pick = min if goal == "minimize" else max
    best = pick(finished, key=lambda t: t.metric)
    assert driver.best == (best.metric, best.key)
    keys = {s.best_key for s in snapshots} - {None}
    assert by_id[failed].key not in keys and by_id[nan_last].key not in keys
    values = [s.best for s in snapshots if s.best is not None]
    assert values == sorted(values, reverse=goal == "minimize")  # only ever improves
    assert all(math.isfinite(v) for v in values)


# ---- the order of writes ---------------------------------------------------------------
def test_a_trial_ends_in_the_ledger_only_after_its_run_with_all_its_metrics(ledger, store,
                                                                           monkeypatch):
    """Each time the ledger ends a trial, MLflow already has its run ended, with every
    step; each time MLflow holds a FINISHED run, it has every step."""
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.5, 2.0)))
    reader = MlflowClient(sweep.uri)
    run_ids = {t.id: t.run_id for t in sweep.trials()}
    checked: list[str] = []

    def complete(run_id: str) -> bool:
        return len(reader.get_metric_history(run_id, "val_cost")) == EPOCHS

    original_write = ledger_ops.write_trials

    def write_trials(ledger_, *, starts=None, progress=None, ends=(), decisions=()):
        for trial_id, status, _, _ in ends:
            run = reader.get_run(run_ids[trial_id])
            assert run.info.status == status and complete(run_ids[trial_id])
            checked.append(status)
        return original_write(ledger_, starts=starts, progress=progress, ends=ends,
                              decisions=decisions)

    original_flush = MetricWriter.flush

    def flush(self) -> None:
        original_flush(self)
        for run_id in run_ids.values():
            if reader.get_run(run_id).info.status == FINISHED:
                assert complete(run_id), run_id

    monkeypatch.setattr(ledger_ops, "write_trials", write_trials)
    monkeypatch.setattr(MetricWriter, "flush", flush)
    driver, _, _ = sweep.run()
    assert checked == [FINISHED] * 3
    assert driver.counts == {FINISHED: 3}


def test_configs_are_read_as_the_queue_reaches_them_and_let_go_at_the_end(ledger, store,
                                                                          monkeypatch):
    """The driver holds the configs of the trials queued next and in flight, not the
    sweep's; an ended trial keeps neither its config nor its summary."""
    monkeypatch.setattr(driver_module, "CONFIGS_PER_READ", 4)
    lrs = [round(0.05 * (i + 1), 2) for i in range(16)]
    sweep = new_sweep(ledger, store, spec_text(lrs=lrs))
    reads: list[int] = []
    held: list[int] = []
    original_read, original_submit = ledger_ops.configs_of, Driver._submit

    def configs_of(ledger_, trial_ids):
        reads.append(len(trial_ids))
        return original_read(ledger_, trial_ids)

    def submit(self) -> None:
        original_submit(self)
        held.append(sum(live.config is not None for live in self.live.values()))

    monkeypatch.setattr(ledger_ops, "configs_of", configs_of)
    monkeypatch.setattr(Driver, "_submit", submit)
    driver, _, _ = sweep.run(slots=2)
    assert driver.counts == {FINISHED: 16}
    assert max(reads) == 4 and sum(reads) == 16  # each config read once, 4 at a time
    assert max(held) <= 4 + 2, held  # the next read's and the two in flight
    assert all(live.config is None and live.summary == {} for live in driver.live.values())
    for trial in sweep.trials():
        assert_steps_once_each(sweep, trial.run_id)
        assert json.loads(sweep.client.get_run(trial.run_id).data.params["train.lr"]) == \
            trial.config["train"]["lr"]


def test_the_loop_takes_messages_while_a_flush_is_written(ledger, store, monkeypatch):
    """The store's writes run in the driver's writer thread: a slow flush does not stop
    the trials' messages from being taken, and the sweep still ends with every step once."""
    sweep = new_sweep(ledger, store, spec_text())
    # messages come 5 ms apart: the sweep outlasts its first flush
    executor = FakeExecutor(sweep.datasets, fault=lambda task, message: time.sleep(0.005))
    taken_during: list[int] = []
    original_flush = MetricWriter.flush

    def slow_flush(self) -> None:
        before = sum(len(task.delivered) for task in executor.tasks)
        time.sleep(0.3)
        taken_during.append(sum(len(task.delivered) for task in executor.tasks) - before)
        original_flush(self)

    ended: dict[int, tuple[int, int]] = {}  # trial id -> ms before and after its End
    original_end = Driver._on_end

    def on_end(self, message) -> None:
        before = int(time.time() * 1000)
        original_end(self, message)
        ended[message.trial_id] = (before, int(time.time() * 1000))

    monkeypatch.setattr(MetricWriter, "flush", slow_flush)
    monkeypatch.setattr(Driver, "_on_end", on_end)
    driver, _, _ = sweep.run(executor=executor)
    assert driver.counts == {FINISHED: 3}
    assert max(taken_during) > 0, taken_during
    for trial in sweep.trials():
        assert_steps_once_each(sweep, trial.run_id)
        before, after = ended[trial.id]  # the run's end time is its End's, not the flush's
        assert before <= sweep.client.get_run(trial.run_id).info.end_time <= after
    assert_counts_match_ledger(sweep, driver)


# ---- early stopping --------------------------------------------------------------------
# Each trial's scripted val_cost (constant over its epochs), by trial index; ASHA with
# min_iter 2, eta 2 over 12 epochs has rungs at epochs 2, 4 and 8. One slot: trials run in
# index order, so the decisions are worked by hand (cutoff: the median of the values
# recorded at the rung before, as eta = 2):
SCRIPT = [0.5, 0.7, 0.4, 0.6, 0.3, 0.9]
ASHA_DECISIONS = [  # (trial index, epoch, value, cutoff, stop), in the order made
    (0, 2, 0.5, None, False), (0, 4, 0.5, None, False), (0, 8, 0.5, None, False),
    (1, 2, 0.7, 0.5, True),
    (2, 2, 0.4, 0.6, False), (2, 4, 0.4, 0.5, False), (2, 8, 0.4, 0.5, False),
    (3, 2, 0.6, 0.5, True),
    (4, 2, 0.3, 0.55, False), (4, 4, 0.3, 0.45, False), (4, 8, 0.3, 0.45, False),
    (5, 2, 0.9, 0.5, True),
]
ASHA = "early_terminate: {type: asha, min_iter: 2, eta: 2}"


def scripted(sweep: Sweep) -> Fault:
    index_of = {t.id: t.index for t in sweep.trials()}

    def script(task, message):
        if isinstance(message, Metrics):
            value = SCRIPT[index_of[message.trial_id]]
            return dataclasses.replace(message, columns={
                **message.columns, "val_cost": np.full(len(message.stamps), value)})
        return None

    return script


def recorded_decisions(sweep: Sweep) -> list[tuple]:
    index_of = {t.id: t.index for t in sweep.trials()}
    return [(index_of[d.trial_id], d.epoch, d.value,
             None if d.cutoff is None else round(d.cutoff, 9), bool(d.stop))
            for d in ledger_ops.decisions_of(sweep.ledger, sweep.id)]


def test_asha_stops_trials_at_their_rung_and_they_stay_results(ledger, store):
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.2, 0.3, 0.5, 1.0, 2.0), extra=ASHA))
    driver, executor, _ = sweep.run(scripted(sweep), slots=1)
    assert recorded_decisions(sweep) == ASHA_DECISIONS
    by_index = {t.index: t for t in sweep.trials()}
    assert executor.stopped == [(by_index[i].id, 0) for i in (1, 3, 5)]
    assert executor.going_on == [(by_index[i].id, 0, epoch) for i, epoch, _, _, stop
                                 in ASHA_DECISIONS if not stop]
    assert driver.counts == {FINISHED: 3, PRUNED: 3}
    assert_counts_match_ledger(sweep, driver)
    for index, trial in by_index.items():
        run = sweep.client.get_run(trial.run_id)
        assert run.info.status == FINISHED  # MLflow has no PRUNED: the tag says it
        if index in (1, 3, 5):  # stopped within the epoch of the decision
            assert (trial.state, trial.epochs, trial.last_step) == (PRUNED, 2, 1)
            assert run.data.tags["nnchain.pruned_at"] == "2"
            assert trial.metric == SCRIPT[index]
            assert_steps_once_each(sweep, trial.run_id, epochs=2)
        else:
            assert (trial.state, trial.epochs) == (FINISHED, EPOCHS)
            assert "nnchain.pruned_at" not in run.data.tags
            assert_steps_once_each(sweep, trial.run_id)
        names = {f.path for f in sweep.client.list_artifacts(trial.run_id)}
        assert "weights.npz" in names  # weights kept
    # the best is a finished trial
    assert driver.best == (0.3, by_index[4].key)
    assert verify_sweep(ledger, sweep.client, sweep.uri, sweep.id) == []
    # verify knows pruned trials: a tag that disagrees with the steps is invariant 3
    sweep.client.set_tag(by_index[1].run_id, "nnchain.pruned_at", "3")
    found = verify_sweep(ledger, sweep.client, sweep.uri, sweep.id)
    assert [(v.invariant, v.trial_key) for v in found] == [(3, by_index[1].key)]
    assert "nnchain.pruned_at=3, must be its steps' count (2)" in found[0].message


def test_a_resumed_sweep_keeps_its_decisions_and_decides_the_rest(ledger, store, monkeypatch):
    monkeypatch.setattr(driver_module, "BEAT_SECONDS", 0.0)
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.2, 0.3, 0.5, 1.0, 2.0), extra=ASHA))
    script = scripted(sweep)
    fourth = next(t.id for t in sweep.trials() if t.index == 3)

    def cancel_at_the_fourths_rung(task, message):
        replaced = script(task, message)
        if isinstance(message, Metrics) and message.trial_id == fourth and \
                message.first_step == 1:  # its rung decision (stop) is made: then cancel
            ledger_ops.update_sweep(ledger, sweep.id, cancel_requested=1)
        return replaced

    with pytest.raises(StopSweep):
        sweep.run(cancel_at_the_fourths_rung, slots=1)
    first = ledger_ops.decisions_of(ledger, sweep.id)
    assert recorded_decisions(sweep) == ASHA_DECISIONS[:len(first)]
    assert [d[0] for d in recorded_decisions(sweep)][-1] == 3  # the stop of trial 3 is kept
    assert sweep.by_key()[next(t.key for t in sweep.trials() if t.index == 3)].state == KILLED

    ledger_ops.update_sweep(ledger, sweep.id, cancel_requested=0)
    driver, executor, _ = sweep.run(script, slots=1)
    assert recorded_decisions(sweep) == ASHA_DECISIONS  # none decided twice, none lost
    again = ledger_ops.decisions_of(ledger, sweep.id)
    assert [(d.id, d.decided_at) for d in again[:len(first)]] == \
        [(d.id, d.decided_at) for d in first]
    assert driver.counts == {FINISHED: 3, PRUNED: 3}
    third = next(t for t in sweep.trials() if t.index == 3)
    assert (third.state, third.epochs) == (PRUNED, 2)
    assert sweep.client.get_run(third.run_id).data.tags["nnchain.pruned_at"] == "2"
    assert_steps_once_each(sweep, third.run_id, epochs=2)
    assert verify_sweep(ledger, sweep.client, sweep.uri, sweep.id) == []


def test_the_median_rule_stops_a_trial_below_the_others_median(ledger, store):
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.2, 0.3, 0.5), extra=(
        "early_terminate: {type: median, min_iter: 3}")))
    driver, _, _ = sweep.run(scripted(sweep), slots=1)
    # values 0.5, 0.7, 0.4, 0.6: trial 2 (0.4) is the first with two others, their median
    # 0.6 (at every epoch from 3); trial 3 (0.6) meets [0.5, 0.7, 0.4]: median 0.5, stops
    decisions = recorded_decisions(sweep)
    assert [d for d in decisions if d[0] == 2][0] == (2, 3, 0.4, 0.6, False)
    assert [d for d in decisions if d[0] == 3] == [(3, 3, 0.6, 0.5, True)]
    assert all(d[3] is None for d in decisions if d[0] in (0, 1))
    assert driver.counts == {FINISHED: 3, PRUNED: 1}


# ---- bayes -----------------------------------------------------------------------------
def search_spec(method: str, run_cap: int = 24, extra: str = "") -> str:
    return f"""
name: search
experiment: driver-tests
seed: 3
method: {method}
run_cap: {run_cap}
metric: {{name: val_cost, goal: minimize}}
{extra}
data: {{name: xor, n_samples: 40, noise: 0.05, val_fraction: 0.25}}
model: {{hidden: [3], activation: tanh}}
train: {{epochs: {EPOCHS}, lr: 0.5, track: []}}
parameters:
  train.lr: {{distribution: log_uniform, min: 0.0001, max: 10.0}}
"""


OPTIMUM = 0.03  # the scripted val_cost is (log10 lr - log10 0.03)^2: its lr is known


def bowl(sweep: Sweep) -> Fault:
    """val_cost replaced by a bowl in log10(lr), lowest at ``OPTIMUM``."""
    def script(task, message):
        if isinstance(message, Metrics):
            lr = task.pack[0].config["train"]["lr"]
            value = (math.log10(lr) - math.log10(OPTIMUM)) ** 2
            return dataclasses.replace(message, columns={
                **message.columns, "val_cost": np.full(len(message.stamps), value)})
        return None

    return script


def proposed_lrs(sweep: Sweep) -> list[float]:
    return [t.config["train"]["lr"] for t in sorted(sweep.trials(), key=lambda t: t.index)]


def distance(lrs: Sequence[float]) -> float:
    """The median distance of ``lrs`` from the optimum, in decades."""
    return float(np.median([abs(math.log10(lr) - math.log10(OPTIMUM)) for lr in lrs]))


def test_bayes_concentrates_near_the_optimum_where_random_search_does_not(ledger, store):
    bayes = new_sweep(ledger, store, search_spec("bayes", run_cap=30))
    driver, _, _ = bayes.run(bowl(bayes), slots=1)
    assert driver.counts == {FINISHED: 30}
    assert [t.index for t in bayes.trials()] == list(range(30))
    random = new_sweep(ledger, store, search_spec("random", run_cap=30))
    random.run(bowl(random), slots=1)
    tpe, draws = proposed_lrs(bayes)[10:], proposed_lrs(random)[10:]  # after TPE's start
    # TPE's 20 proposals lie closer to the optimum than random search's (the space spans
    # 5 decades); the sequence is Optuna's own for this seed (the driver adds nothing)
    assert distance(tpe) < 0.5 * distance(draws), (distance(tpe), distance(draws))
    # the ledger is the record: runs made as trials start, verify clean
    assert verify_sweep(ledger, bayes.client, bayes.uri, bayes.id) == []
    # with one trial in flight, the same seed proposes the same trials
    again = new_sweep(ledger, store, search_spec("bayes", run_cap=30))
    again.run(bowl(again), slots=1)
    assert proposed_lrs(again) == proposed_lrs(bayes)


def test_bayes_with_hyperband_resumes_from_its_history_in_the_ledger(ledger, store,
                                                                    monkeypatch):
    monkeypatch.setattr(driver_module, "BEAT_SECONDS", 0.0)
    text = search_spec("bayes", run_cap=12,
                       extra="early_terminate: {type: hyperband, min_iter: 2, eta: 3}")
    sweep = new_sweep(ledger, store, text)
    script = bowl(sweep)
    started = []

    def cancel_at_the_sixth(task, message):
        if isinstance(message, Start):
            started.append(message.trial_id)
            if len(started) == 6:
                ledger_ops.update_sweep(ledger, sweep.id, cancel_requested=1)
        return script(task, message)

    with pytest.raises(StopSweep):
        sweep.run(cancel_at_the_sixth, slots=2)
    first = {t.id: t for t in sweep.trials()}
    assert 6 <= len(first) < 12
    ledger_ops.update_sweep(ledger, sweep.id, cancel_requested=0)
    loaded = []
    original = Proposals.load

    def watch(self, trials):
        original(self, trials)
        loaded.append((len(self.sampler.study.trials), self.proposed))

    monkeypatch.setattr(Proposals, "load", watch)
    driver, _, _ = sweep.run(script, slots=2)
    assert loaded == [(len(first), len(first))]  # every trial proposed before, reloaded
    trials = sweep.trials()
    assert len(trials) == 12 == len({t.key for t in trials})  # run_cap counts them all
    assert [t.index for t in trials] == list(range(12))
    assert {t.state for t in trials} <= {FINISHED, PRUNED}
    assert sum(driver.counts.values()) == 12
    assert verify_sweep(ledger, sweep.client, sweep.uri, sweep.id) == []


def test_a_stale_prune_tag_goes_when_the_trial_runs_to_its_end(ledger, store):
    """A PRUNED end that reached MLflow but not the ledger (its driver killed between) left
    the tag; decided again to go on, the trial finishes and the tag goes."""
    sweep = new_sweep(ledger, store, spec_text(lrs=(0.1, 0.2), extra=ASHA))
    script = scripted(sweep)
    first = next(t for t in sweep.trials() if t.index == 0)

    def lose_once_tagged(task, message):
        if isinstance(message, Metrics) and message.trial_id == first.id and \
                message.first_step == 3 and task.pack[0].attempt == 0:
            sweep.client.set_tag(first.run_id, "nnchain.pruned_at", "3")
            return TaskEnded(RuntimeError("node lost"))
        return script(task, message)

    driver, _, _ = sweep.run(lose_once_tagged, slots=1)
    trial = next(t for t in sweep.trials() if t.id == first.id)
    assert (trial.state, trial.attempt) == (FINISHED, 1)
    assert "nnchain.pruned_at" not in sweep.client.get_run(first.run_id).data.tags
    assert verify_sweep(ledger, sweep.client, sweep.uri, sweep.id) == []
