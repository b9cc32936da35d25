"""The sweep driver's loop: dispatch packs of trials to an executor, record what comes back.

The driver is the one writer: worker tasks stream messages, the driver writes metrics
to MLflow in bulk, runs' status and tags through ``MlflowClient``, and trial states,
checkpoints and heartbeats to the ledger. It talks to an ``Executor`` (Ray in
production, see ``runner/executor.py``), never to Ray itself: tasks in flight are
bounded and their messages are taken in completion order.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice

from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import Sweep, Trial, utcnow
from nnchain.ledger.states import (
    DONE,
    ENDED,
    FAILED,
    FINISHED,
    KILLED,
    PENDING,
    PRUNED,
    RUNNING,
    check_transition,
)
from nnchain.ledger.store import Ledger
from nnchain.runner.executor import Executor, Handle, TaskEnded
from nnchain.runner.flusher import Batch, Flusher, RunFiles
from nnchain.runner.messages import CheckpointSaved, End, Metrics, Start
from nnchain.runner.task import Work
from nnchain.sweep.pruning import Decision, Pruner
from nnchain.tracking import sweep_runs
from nnchain.tracking.metrics import Block, MetricWriter
from nnchain.tracking.mlflow_sql import RunEnd
from nnchain.tracking.retry import is_transient, with_retry

# A trial handed to a task that has not started it yet: in the driver's memory only, the
# ledger still says PENDING (and the counts do too).
QUEUED = "QUEUED"


def ledger_state(state: str) -> str:
    """The ledger's name for a state of the driver's memory."""
    return PENDING if state == QUEUED else state


@dataclass(slots=True)
class Live:
    """What the driver knows of one trial while the sweep runs. Its ``state`` changes only
    through ``Driver._move``, which keeps the counts. Its config and overrides are held
    only from a little before it is handed out until it ends (``Driver._hold_configs``),
    its summary only while it may still run: a sweep of many trials is not held whole."""

    trial_id: int
    key: str
    index: int
    repeat: int
    data_index: int
    config: dict | None = None
    overrides: dict | None = None
    run_id: str = ""
    artifact_uri: str = ""
    attempt: int = 0
    retries: int = 0
    last_step: int = -1
    summary: dict = field(default_factory=dict)
    started: float | None = None
    state: str = PENDING
    stopping: bool = False  # early stopping decided it stops: its end is PRUNED
    rerun: bool = False  # its run had steps before this attempt (a retry or resume)


@dataclass
class Snapshot:
    """Progress of a sweep, for the display: ``counts`` by ledger state."""

    total: int
    counts: Counter
    best: float | None
    best_key: str | None
    metric: str
    elapsed: float


@dataclass
class Settings:
    cpus_per_trial: float = 1.0
    max_concurrent: int = 2
    in_flight: int = 0  # tasks submitted at once; 0: max_concurrent
    trials_in_flight: int = 0  # if > 0, instead: trials submitted and not ended, at most
    pack: int = 1
    flush_seconds: float = 1.0
    max_retries: int = 2
    trial_timeout: float | None = None
    checkpoint_every: int = 0
    pictures: bool = True  # workers draw each trial's pictures (see runner/sweep.py)
    top_pictures: int = 0  # else the pictures of this many best trials, at the sweep's end


# Buffered metric values that start a flush before its time: the sweep's last flush,
# which nothing overlaps, stays short.
FLUSH_VALUES = 25_000
# Queued trials whose configs are read from the ledger at once, as the queue reaches them.
CONFIGS_PER_READ = 1000
# Buffered values past which the loop waits for the flush being written to hand over the
# next one (its memory bound when the store is slower than the trials).
HOLD_VALUES = 4 * FLUSH_VALUES

# How often the loop beats for its running trials, checks their timeouts and reads the
# sweep's cancel request.
BEAT_SECONDS = 1.0


class StopSweep(Exception):
    """Raised inside the loop when a cancel was requested."""


class Driver:
    def __init__(self, *, ledger: Ledger, client, writer: MetricWriter, sweep: Sweep,
                 executor: Executor, data_keys: list[str], settings: Settings,
                 on_progress: Callable[[Snapshot], None] | None = None,
                 pruner: Pruner | None = None, proposals=None) -> None:
        self.ledger, self.client, self.writer, self.sweep = ledger, client, writer, sweep
        self.executor = executor
        self.settings = settings
        self.on_progress = on_progress
        self.data_keys = data_keys
        self._data_index = {key: index for index, key in enumerate(data_keys)}
        self.pruner = pruner  # early stopping's decisions, or None
        self.proposals = proposals  # bayes: trials proposed as slots free (sweep.bayes)
        self._decisions: list[Decision] = []  # new decisions, until the next flush
        self._batch = Batch()  # what the next flush writes to MLflow (and the ledger)
        self._flusher: Flusher | None = None  # writes batches while ``run`` runs
        self._handle_of: dict[int, Handle] = {}  # trial id -> the task it went out in
        self.live: dict[int, Live] = {}
        self.queue: deque[int] = deque()  # trial ids, in the order they go out
        self._checkpoints: dict[int, tuple[int, bytes]] = {}  # queued trial -> its checkpoint
        self.in_flight: dict[Handle, list[int]] = {}  # task -> its trial ids
        self._counts: Counter = Counter()  # by ledger state, kept by ``_move`` alone
        self._running: set[int] = set()  # trials RUNNING now, kept by ``_move`` alone
        self.best: tuple[float, str] | None = None
        self.started = time.monotonic()
        self._last_flush = self._last_beat = time.monotonic()
        self._starts: dict[int, dict] = {}  # trial id -> ledger values, until the next flush
        self._dirty: set[int] = set()
        self._ends: list[tuple] = []
        self._creating: set[int] = set()  # trials whose run create was sent at least once
        self.stop_reason = ""  # set by Ctrl-C or `sweep cancel`: stop at the next turn
        self._handlers: dict[type, Callable] = {
            Start: self._on_start, Metrics: self._on_metrics,
            CheckpointSaved: self._on_checkpoint, End: self._on_end}

    @property
    def counts(self) -> Counter:
        """Trials by ledger state (states with none left out)."""
        return +self._counts

    def _move(self, live: Live, state: str) -> None:
        """The one place a trial's state changes in memory: checked against the ledger's
        table, counted."""
        old, new = ledger_state(live.state), ledger_state(state)
        check_transition(live.trial_id, old, new)
        self._counts[old] -= 1
        self._counts[new] += 1
        if state == RUNNING:
            self._running.add(live.trial_id)
        else:
            self._running.discard(live.trial_id)
        live.state = state

    # ---- setup -------------------------------------------------------------------------
    def load(self, trials: Iterable[Trial]) -> None:
        """Take the sweep's trials (any iterable: pages of the ledger); those not FINISHED
        or PRUNED are requeued in the ledger (a resume) and queued here, with their
        checkpoints. Recorded early-stopping decisions are kept: a trial decided to stop
        stops there again. Configs are not kept: the queue reads them as it goes."""
        checkpoints = ledger_ops.unfinished_checkpoints(self.ledger, self.sweep.id)
        if self.proposals is not None:
            trials = list(trials)
            self.proposals.load(trials)
        if self.pruner is not None:
            self.pruner.load(_decision(row) for row in
                             with_retry(ledger_ops.decisions_of, self.ledger, self.sweep.id,
                                        what="the ledger"))
        requeued = []
        for trial in trials:
            done = trial.state in DONE
            live = Live(trial.id, trial.key, trial.index, trial.repeat,
                        self._data_index[_data_key(trial.config)], run_id=trial.run_id,
                        artifact_uri=trial.artifact_uri, attempt=trial.attempt,
                        retries=trial.retries, last_step=trial.last_step,
                        summary={} if done else dict(trial.summary or {}), state=trial.state)
            self.live[trial.id] = live
            self._counts[trial.state] += 1
            if trial.state == RUNNING:
                self._running.add(trial.id)
            if trial.state == FINISHED:
                self._consider_best(live, trial.metric)
            elif not done:
                if trial.state != PENDING:
                    requeued.append(trial.id)
                live.stopping = self.pruner is not None and trial.id in self.pruner.stopped
                self._move(live, PENDING)
                if trial.id in checkpoints:
                    self._checkpoints[trial.id] = checkpoints[trial.id]
                self.queue.append(trial.id)
        with_retry(ledger_ops.requeue_trials, self.ledger, requeued, what="the ledger")
        self._progress()

    def _hold_configs(self, trial_ids: Sequence[int]) -> None:
        """The configs of these queued trials, and of the next ones in the queue (up to
        ``CONFIGS_PER_READ`` in all), read from the ledger in one query where not held."""
        if all(self.live[t].config is not None for t in trial_ids):
            return
        wanted = [t for t in (*trial_ids, *islice(self.queue, CONFIGS_PER_READ))
                  if self.live[t].config is None][:CONFIGS_PER_READ]
        found = with_retry(ledger_ops.configs_of, self.ledger, wanted, what="the ledger")
        for trial_id, (config, overrides) in found.items():
            live = self.live[trial_id]
            live.config, live.overrides = config, overrides

    def _work(self, live: Live, checkpoint: tuple[int, bytes] | None) -> Work:
        report_at, stop_after = (), 0
        if self.pruner is not None:
            report_at = self.pruner.decision_epochs(live.index)
            stopped = self.pruner.stopped.get(live.trial_id)
            stop_after = stopped.epoch if stopped else 0
        return Work(trial_id=live.trial_id, key=live.key, config=live.config,
                    attempt=live.attempt, data_index=live.data_index,
                    report_at=report_at, stop_after=stop_after,
                    checkpoint=checkpoint[1] if checkpoint else None,
                    checkpoint_every=self.settings.checkpoint_every,
                    title=sweep_runs.trial_run_name(live.index, live.overrides,
                                                      live.repeat),
                    pictures=self.settings.pictures, timed=bool(self.settings.trial_timeout))

    # ---- the loop ----------------------------------------------------------------------
    def run(self) -> Counter:
        """Run every queued trial to an end; returns the final counts by state."""
        previous = self._catch_interrupts()
        stop_beating = threading.Event()
        beat = threading.Thread(target=self._beat_forever, args=(stop_beating,), daemon=True,
                                name="nnchain-heartbeat")
        beat.start()
        self._flusher = Flusher(self._write)
        try:
            while self.queue or self.in_flight or self._may_propose():
                if self.stop_reason:
                    raise StopSweep(self.stop_reason)
                self._submit()
                for handle in self.executor.wait(list(self.in_flight), timeout=0.2):
                    self._take(handle)
                self._housekeeping()
            self._flush()
        except (KeyboardInterrupt, StopSweep):
            self._stop_all(self.stop_reason or "interrupted by the user")
            self._flush()
            raise
        finally:
            stop_beating.set()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self._flusher.close()
            self._flusher = None
        return self.counts

    def _catch_interrupts(self):
        """Ctrl-C sets a flag that the loop acts on between writes (never in the middle of
        one); a second Ctrl-C interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def on_interrupt(signum, frame) -> None:
            if self.stop_reason:
                raise KeyboardInterrupt
            self.stop_reason = "interrupted by the user"

        return signal.signal(signal.SIGINT, on_interrupt)

    def _may_propose(self) -> bool:
        return self.proposals is not None and self.proposals.remaining()

    def _propose(self) -> bool:
        """Queue the next proposed trial (bayes); False when there is none."""
        trial = with_retry(self.proposals.propose, what="the ledger") \
            if self._may_propose() else None
        if trial is None:
            return False
        live = Live(trial.id, trial.key, trial.index, trial.repeat,
                    self._data_index[_data_key(trial.config)], trial.config,
                    trial.overrides)
        self.live[trial.id] = live
        self._counts[PENDING] += 1
        self.queue.append(trial.id)
        return True

    def _submit(self) -> None:
        room = self._room()
        while room > 0 and (self.queue or self._propose()):
            size = pack_size(len(self.queue), self.settings.pack, self.settings.max_concurrent)
            trial_ids = [self.queue.popleft() for _ in range(size)]
            room -= len(trial_ids) if self.settings.trials_in_flight else 1
            self._hold_configs(trial_ids)
            pack = [self._work(self.live[t], self._checkpoints.pop(t, None)) for t in trial_ids]
            handle = self.executor.submit(pack)
            self.in_flight[handle] = [w.trial_id for w in pack]
            for work in pack:
                self._handle_of[work.trial_id] = handle
                self._move(self.live[work.trial_id], QUEUED)

    def _room(self) -> int:
        """How many more trials (with ``trials_in_flight``) or tasks may go out now; a
        pack goes out while there is any. Bounding trials rather than tasks lets the
        small packs at a sweep's end queue in Ray, which hands each to the first free
        worker without waiting for the driver (busy writing)."""
        settings = self.settings
        if settings.trials_in_flight:
            waiting = sum(self.live[t].state not in ENDED
                          for trial_ids in self.in_flight.values() for t in trial_ids)
            return settings.trials_in_flight - waiting
        return (settings.in_flight or max(1, settings.max_concurrent)) - len(self.in_flight)

    def _take(self, handle: Handle) -> None:
        message = self.executor.take(handle)
        if isinstance(message, TaskEnded):
            self._finish_pack(handle, message.error)
        else:
            self._handlers[type(message)](message)

    # ---- messages ----------------------------------------------------------------------
    def _on_start(self, message: Start) -> None:
        live = self.live[message.trial_id]
        self._move(live, RUNNING)
        live.started = time.monotonic()
        live.rerun = live.last_step >= 0
        with_retry(self._open_run, live, message.attempt, message.start_ms,
                   what="the MLflow store")
        self._starts[live.trial_id] = ledger_ops.start_values(live.run_id, message.attempt,
                                                              message.worker)
        self._progress()

    def _open_run(self, live: Live, attempt: int, start_ms: int) -> None:
        """The trial's run: created on its first attempt, reopened on a retry or resume.

        A create retried after a lost answer first looks for the run it may have made."""
        if not live.run_id and live.trial_id in self._creating:
            live.run_id, live.artifact_uri = sweep_runs.recover_trial_run(
                self.client, self.sweep.experiment_id, sweep_id=self.sweep.id,
                trial_key=live.key, config=live.config)
        if live.run_id:
            self._batch.run_starts[live.run_id] = {"nnchain.attempt": str(attempt)} \
                if attempt else None
            if not live.artifact_uri:
                live.artifact_uri = self.client.get_run(live.run_id).info.artifact_uri
        else:
            self._creating.add(live.trial_id)
            live.run_id, live.artifact_uri = sweep_runs.create_trial_run(
                self.client, self.sweep.experiment_id, parent_run_id=self.sweep.parent_run_id,
                sweep_id=self.sweep.id, trial_key=live.key, index=live.index,
                repeat=live.repeat, attempt=attempt, config=live.config,
                overrides=live.overrides, start_ms=start_ms)

    def _on_metrics(self, message: Metrics) -> None:
        live = self.live[message.trial_id]
        columns, stamps, first_step = message.columns, message.stamps, message.first_step
        _update_summary(live.summary, columns)  # replayed steps repeat recorded values
        if self.pruner is not None:
            self._judge(live, first_step, columns.get(self.sweep.metric_name))
        skip = max(0, live.last_step + 1 - first_step)  # steps already recorded (a retry)
        if skip >= len(stamps):
            return
        if skip:
            columns = {k: v[skip:] for k, v in columns.items()}
            stamps, first_step = stamps[skip:], first_step + skip
        self._batch.add(Block(live.run_id, first_step, columns, stamps))
        live.last_step = first_step + len(stamps) - 1
        self._dirty.add(live.trial_id)

    def _judge(self, live: Live, first_step: int, values) -> None:
        """Early stopping's decisions on the epochs of a metrics message (a replayed epoch
        gets its recorded decision); a stop goes to the trial's task at once."""
        if values is None or live.state != RUNNING:
            return
        for offset, value in enumerate(values):
            judged = self.pruner.decide(live.trial_id, live.index, first_step + offset + 1,
                                        float(value))
            if judged is None:
                continue
            decision, new = judged
            if new:
                self._decisions.append(decision)
            handle = self._handle_of[live.trial_id]
            if decision.stop and not live.stopping:
                live.stopping = True
                self.executor.stop(handle, live.trial_id, live.attempt)
            elif not decision.stop:
                self.executor.decided(handle, live.trial_id, live.attempt, decision.epoch)

    def _on_checkpoint(self, message: CheckpointSaved) -> None:
        self._flush()  # metrics up to the checkpoint are in MLflow before it counts
        with_retry(ledger_ops.save_checkpoint, self.ledger, message.trial_id, message.epoch,
                   message.payload, what="the ledger")

    def _on_end(self, message: End) -> None:
        """A trial ended: its files are stored, then its run and ledger row closed, at the
        next flush, after its metrics (so a FINISHED trial never lacks metrics)."""
        live, status, reason = self.live[message.trial_id], message.status, message.reason
        epochs, tags = message.epochs, {"nnchain.status_reason": reason[:5000]} if reason else {}
        if status == FINISHED and live.stopping and \
                live.last_step + 1 < live.config["train"]["epochs"]:  # stopped early
            status, epochs = PRUNED, live.last_step + 1
            tags["nnchain.pruned_at"] = str(epochs)
        metric = _metric_value(live.summary, self.sweep.metric_name) if status in DONE \
            else None
        files = dict(message.files or {})
        if message.weights is not None:
            files["weights.npz"] = message.weights
        if files:
            self._batch.files.append(RunFiles(live.run_id, live.artifact_uri, files))
        if status == FINISHED and live.rerun and self.pruner is not None:
            with_retry(self._drop_stale_prune_tag, live, what="the MLflow store")
        self._batch.run_ends[live.run_id] = RunEnd(FINISHED if status == PRUNED else status,
                                                   int(time.time() * 1000), tags)
        self._ends.append((live, status, reason, epochs, message.seconds, metric))
        self._move(live, status)
        live.config = live.overrides = None  # its summary goes once the end is gathered
        if self.proposals is not None:
            self.proposals.tell(live.trial_id, status, metric, epochs)
        if status == FINISHED:
            self._consider_best(live, metric)
        self._progress()

    def _drop_stale_prune_tag(self, live: Live) -> None:
        """A pruned end that reached MLflow but not the ledger (a driver killed between)
        left its tag; the trial, decided again, ran to its end: the tag goes."""
        if "nnchain.pruned_at" in self.client.get_run(live.run_id).data.tags:
            self.client.delete_tag(live.run_id, "nnchain.pruned_at")

    def _finish_pack(self, handle: Handle, error: BaseException | None) -> None:
        """A pack's task ended; after a crash, its unfinished trials are retried or failed."""
        trial_ids = self.in_flight.pop(handle)
        for trial_id in trial_ids:
            self._handle_of.pop(trial_id, None)
        if any(self.live[t].state == RUNNING for t in trial_ids):
            self._flush()  # their starts and progress first, then their retry
        for trial_id in trial_ids:
            live = self.live[trial_id]
            if live.state in ENDED:
                continue
            if live.state == RUNNING:
                live.retries += 1
                reason = _lost_reason(error)
                if live.retries > self.settings.max_retries:
                    self._fail(live, f"{reason}; retries exhausted ({self.settings.max_retries})")
                    continue
                live.attempt += 1
                with_retry(ledger_ops.retry_trial, self.ledger, trial_id, retries=live.retries,
                           attempt=live.attempt, reason=reason, what="the ledger")
            self._move(live, PENDING)
            checkpoint = ledger_ops.load_checkpoint(self.ledger, trial_id)
            if checkpoint is not None:
                self._checkpoints[trial_id] = checkpoint
            self.queue.appendleft(trial_id)

    def _fail(self, live: Live, reason: str) -> None:
        self._flush()
        if live.run_id:
            with_retry(sweep_runs.end_run, self.client, live.run_id, FAILED, reason,
                       what="the MLflow store")
        with_retry(ledger_ops.end_trial, self.ledger, live.trial_id, FAILED, reason,
                   retries=live.retries, last_step=live.last_step, summary=live.summary,
                   what="the ledger")
        self._move(live, FAILED)
        live.config = live.overrides = None
        live.summary = {}
        if self.proposals is not None:
            self.proposals.tell(live.trial_id, FAILED, None, 0)
        self._progress()

    # ---- periodic work -----------------------------------------------------------------
    def _housekeeping(self) -> None:
        now = time.monotonic()
        self._flusher.check()
        if now - self._last_flush >= self.settings.flush_seconds or \
                self._batch.values >= FLUSH_VALUES:
            # while a flush is being written the next one grows, up to HOLD_VALUES
            if not self._flusher.busy or self._batch.values >= HOLD_VALUES:
                self._flush(wait=False)
        if now - self._last_beat >= BEAT_SECONDS:
            self._last_beat = now
            try:
                self._heartbeat()
            except Exception as error:  # a missed beat during an outage is harmless
                if not is_transient(error):
                    raise
            self._check_timeouts()
            self._progress()

    def _beat_forever(self, stop: threading.Event) -> None:
        """The sweep's heartbeat, from its own thread: the loop may wait for minutes in a
        retry through an MLflow outage, and the reaper must not take it for dead."""
        while not stop.wait(1.0):
            try:
                ledger_ops.update_sweep(self.ledger, self.sweep.id, heartbeat_at=utcnow())
            except Exception as error:  # the ledger itself is away: the beat waits too
                if not is_transient(error):
                    return

    def _heartbeat(self) -> None:
        ledger_ops.beat_trials(self.ledger, sorted(self._running))
        if ledger_ops.cancel_requested(self.ledger, self.sweep.id):
            self.stop_reason = "cancelled"

    def _check_timeouts(self) -> None:
        timeout = self.settings.trial_timeout
        if not timeout:
            return
        for handle, trial_ids in list(self.in_flight.items()):
            for trial_id in trial_ids:
                live = self.live[trial_id]
                if live.state == RUNNING and time.monotonic() - live.started > timeout:
                    self.executor.cancel(handle)
                    live.retries = self.settings.max_retries  # a hung trial is not retried
                    self._fail(live, f"timed out after {timeout:g} s")
                    self._finish_pack(handle, None)
                    break

    def _flush(self, wait: bool = True) -> None:
        """Hand what the loop gathered to the writer thread, and with ``wait`` return once
        it is written (outside ``run``: write it now). A batch with nothing in it is not
        handed over."""
        batch = self._gather()
        if self._flusher is None:
            if not batch.empty():
                self._write(batch)
            return
        if not batch.empty():
            self._flusher.hand(batch)
        if wait:
            self._flusher.wait()

    def _gather(self) -> Batch:
        """The next batch: what the loop buffered since the last one, with the ledger's
        values of trials started, progressed and ended (summaries copied: the loop goes on
        updating them while the batch is written)."""
        batch, self._batch = self._batch, Batch()
        batch.decisions = [ledger_ops.decision_values(self.sweep.id, d)
                           for d in self._decisions]
        now = utcnow()
        batch.trial_starts = self._starts
        batch.progress = {
            live.trial_id: {"last_step": live.last_step, "summary": _copied(live.summary),
                            "heartbeat_at": now, "epochs": live.last_step + 1}
            for live in (self.live[t] for t in self._dirty) if live.state == RUNNING}
        batch.trial_ends = [
            (live.trial_id, status, reason,
             {"metric": metric, "summary": live.summary, "epochs": epochs,
              "last_step": live.last_step, "train_seconds": seconds, "heartbeat_at": now})
            for live, status, reason, epochs, seconds, metric in self._ends]
        for live, *_ in self._ends:  # ended: the batch has its summary, the loop not
            live.summary = {}
        self._decisions, self._starts, self._dirty, self._ends = [], {}, set(), []
        self._last_flush = time.monotonic()
        return batch

    def _write(self, batch: Batch) -> None:
        """Write a batch (the writer thread's work); retried through a store outage."""
        with_retry(self._write_once, batch, what="the MLflow store or ledger")

    def _write_once(self, batch: Batch) -> None:
        """Early-stopping decisions, the runs' files, the MLflow writer's flush, then one
        ledger transaction: trials started, trials' progress, trials ended (after their
        runs, so a FINISHED trial has its metrics). Decisions go first, so that a run ended
        as pruned in MLflow always has its stop decision kept in the ledger, for a resume
        to repeat. Each part written is dropped from the batch (a retry goes on from
        there); the MLflow writer keeps what it did not write."""
        if batch.decisions:
            ledger_ops.write_trials(self.ledger, decisions=batch.decisions)
            batch.decisions = []
        while batch.files:
            run = batch.files[-1]
            sweep_runs.log_files(self.client, run.run_id, run.files, run.artifact_uri)
            batch.files.pop()
        for run_id, tags in batch.run_starts.items():
            self.writer.start_run(run_id, tags)
        for block in batch.blocks:
            self.writer.add(block)
        for run_id, end in batch.run_ends.items():
            self.writer.end_run(run_id, end.status, end.tags, end.end_ms)
        batch.run_starts, batch.blocks, batch.run_ends = {}, [], {}
        self.writer.flush()
        if batch.trial_starts or batch.progress or batch.trial_ends:
            ledger_ops.write_trials(self.ledger, starts=batch.trial_starts,
                                    progress=batch.progress, ends=batch.trial_ends)
            batch.trial_starts, batch.progress, batch.trial_ends = {}, {}, []

    def _stop_all(self, reason: str) -> None:
        """Cancel the tasks in flight and mark their running trials KILLED."""
        for handle in list(self.in_flight):
            self.executor.cancel(handle)
        self._flush()
        running = [live for live in self.live.values() if live.state == RUNNING]
        for live in running:
            sweep_runs.end_run(self.client, live.run_id, KILLED, reason)
        ledger_ops.write_trials(self.ledger, ends=[
            (live.trial_id, KILLED, reason, {"last_step": live.last_step,
                                             "summary": live.summary})
            for live in running])
        for live in running:
            self._move(live, KILLED)
        self.in_flight.clear()

    # ---- best and progress -------------------------------------------------------------
    def _consider_best(self, live: Live, metric: float | None) -> None:
        if metric is None or not math.isfinite(metric):
            return
        sign = 1.0 if self.sweep.metric_goal == "minimize" else -1.0
        if self.best is None or sign * metric < sign * self.best[0]:
            self.best = (metric, live.key)

    def _progress(self) -> None:
        if self.on_progress is None:
            return
        best, key = self.best if self.best else (None, None)
        self.on_progress(Snapshot(total=max(len(self.live), self.sweep.trial_count),
                                  counts=self.counts, best=best,
                                  best_key=key, metric=self.sweep.metric_name,
                                  elapsed=time.monotonic() - self.started))


def pack_size(queued: int, pack: int, slots: int) -> int:
    """Trials for the next task: up to ``pack``, shrinking as the queue drains (a slot's
    share of half the queue), so that the slots finish together."""
    return max(1, min(pack, queued // (2 * max(1, slots))))


def _decision(row) -> Decision:
    """A decision recorded in the ledger, as the pruner keeps it (null value: NaN)."""
    return Decision(row.trial_id, row.epoch, row.bracket, row.rung,
                    math.nan if row.value is None else row.value, row.cutoff, bool(row.stop))


def _data_key(config: dict) -> str:
    import json

    return json.dumps(config["data"], sort_keys=True)


def _update_summary(summary: dict, columns: dict) -> None:
    """Keep last / min / max of each metric's curve (NaN and infinities ignored for min
    and max). In plain Python: a message holds a few epochs, where numpy's calls would cost
    more than the values."""
    import numpy as np

    isfinite = math.isfinite
    for key, values in columns.items():
        values = np.asarray(values, dtype=float).tolist()
        if not values:
            continue
        entry = summary.setdefault(key, {"last": None, "min": None, "max": None})
        entry["last"] = values[-1] if isfinite(values[-1]) else None
        finite = list(filter(isfinite, values))
        if finite:
            low, high = min(finite), max(finite)
            entry["min"] = low if entry["min"] is None else min(entry["min"], low)
            entry["max"] = high if entry["max"] is None else max(entry["max"], high)


def _copied(summary: dict) -> dict:
    return {key: dict(entry) for key, entry in summary.items()}


def _metric_value(summary: dict, name: str) -> float | None:
    entry = summary.get(name)
    return None if entry is None else entry.get("last")


def _lost_reason(error: Exception | None) -> str:
    if error is None:
        return "task ended without finishing the trial"
    text = str(error).strip().splitlines()
    return f"worker lost ({type(error).__name__}: {text[0] if text else ''})"[:500]

