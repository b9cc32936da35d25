"""The Ray task: trains a pack of trials in turn and streams what happens to the driver.

The task is a streaming generator. It never writes to MLflow or the ledger: it yields
messages (``nnchain.runner.messages``: start, metrics, checkpoint, end), in batches, and
the driver, the one writer, records them. A trial's metrics are gathered in columns (one
array per metric key) and leave with the next batch, at most every ``flush_seconds``, so
curves show while a trial trains.
Short trials are packed several to a task so that Ray's per-task cost stays small.
"""

from __future__ import annotations

import io
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from nnchain.errors import DivergedError
from nnchain.job import FAILED, FINISHED, Split, build_job
from nnchain.runner.messages import CheckpointSaved, End, Message, Metrics, Start
from nnchain.tracking.artifacts import trial_files, wanted_key


@dataclass(frozen=True)
class Work:
    """One trial of a pack, as the driver hands it out."""

    trial_id: int
    key: str
    config: dict
    attempt: int
    data_index: int
    checkpoint: bytes | None = None
    checkpoint_every: int = 0
    report_at: tuple[int, ...] = ()  # epochs run whose metrics go at once: decisions on them
    stop_after: int = 0  # a recorded early stop: stop once this many epochs are run
    title: str = ""  # the trial's short name, for its pictures
    pictures: bool = False  # draw cost_curve.png and gradient_flow.png here
    timed: bool = False  # under a trial timeout: its start is sent at once


# Whether the driver stops a trial's attempt: (trial id, attempt, epoch) -> bool, asked by
# a trial under early stopping at each of its decision epochs (only there is it judged),
# waiting for the verdict on that epoch.
StopCheck = Callable[[int, int, int], bool]


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Columns:
    """Per-epoch metrics gathered in columns until the next flush."""

    def __init__(self, first_step: int) -> None:
        self.first_step = first_step
        self.columns: dict[str, list[float]] = {}
        self.timestamps: list[int] = []

    def add(self, step: int, metrics: dict[str, float]) -> None:
        offset = step - self.first_step
        for key, value in metrics.items():
            column = self.columns.setdefault(key, [])
            if len(column) < offset:  # a key that appears late (rare): pad with NaN
                column.extend([float("nan")] * (offset - len(column)))
            column.append(value)
        self.timestamps.append(_now_ms())

    def take(self, trial_id: int) -> Metrics | None:
        if not self.timestamps:
            return None
        message = Metrics(trial_id, self.first_step,
                          {k: np.asarray(v, dtype=np.float64) for k, v in self.columns.items()},
                          self.timestamps)
        self.first_step += len(self.timestamps)
        self.columns, self.timestamps = {}, []
        return message


def weights_bytes(weights: dict[str, np.ndarray] | None) -> bytes | None:
    if weights is None:
        return None
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    return buffer.getvalue()


def run_trial(work: Work, data: Split, flush_seconds: float,
              stops: StopCheck | None = None) -> Iterator[Message]:
    """Train one trial, yielding start / metrics / checkpoint / end messages."""
    from nnchain.checkpoint import pack_checkpoint, restore_checkpoint

    started = time.perf_counter()
    yield Start(work.trial_id, work.attempt, _now_ms(), f"{socket.gethostname()}:{os.getpid()}")
    try:
        job = build_job(work.config, data=data)
        start_epoch = restore_checkpoint(job, work.checkpoint) if work.checkpoint else 0
    except Exception as exc:  # a trial's own config or data: permanent, not retried
        yield End(work.trial_id, FAILED, f"{type(exc).__name__}: {exc}", 0, {}, None,
                  time.perf_counter() - started, True)
        return
    columns = _Columns(start_epoch)
    history: dict[str, list[float]] = {}  # what the pictures draw, from this attempt's start
    last_flush = time.monotonic()
    final: dict[str, float] = {}
    status, reason, epochs_run = FINISHED, "", start_epoch
    total = work.config["train"]["epochs"]
    try:
        for record in _epochs(job, work, start_epoch):
            columns.add(record.epoch, record.metrics)
            if work.pictures:
                _keep_history(history, record.epoch - start_epoch, record.metrics)
            final, epochs_run = record.metrics, record.epoch + 1
            due = bool(work.checkpoint_every) and epochs_run % work.checkpoint_every == 0 \
                and epochs_run < total
            if due or epochs_run in work.report_at or \
                    time.monotonic() - last_flush >= flush_seconds:
                message = columns.take(work.trial_id)
                if message is not None:
                    yield message
                last_flush = time.monotonic()
            if due:
                yield CheckpointSaved(work.trial_id, epochs_run, pack_checkpoint(job, epochs_run))
            judged = epochs_run if epochs_run in work.report_at else 0
            if work.report_at and epochs_run < total and (
                    epochs_run >= work.stop_after > 0 or
                    (stops is not None and judged and
                     stops(work.trial_id, work.attempt, judged))):
                break  # stopped early: what ran so far is the trial's result
    except DivergedError as exc:
        status, reason = FAILED, str(exc)
    message = columns.take(work.trial_id)
    if message is not None:
        yield message
    seconds = time.perf_counter() - started  # the trial's own time, pictures left out
    yield End(work.trial_id, status, reason, epochs_run, dict(final),
              weights_bytes(job.network.get_weights()), seconds, False,
              trial_files(work.config, history, work.title, start_epoch, work.pictures))


def _keep_history(history: dict[str, list[float]], offset: int, metrics: dict) -> None:
    for key, value in metrics.items():
        if wanted_key(key):
            column = history.setdefault(key, [])
            if len(column) < offset:  # a key that appears late: pad with NaN
                column.extend([float("nan")] * (offset - len(column)))
            column.append(value)


def _epochs(job, work: Work, start_epoch: int):
    """The job's epochs from ``start_epoch``; none when a recorded early stop comes at or
    before it (a retry from a later checkpoint)."""
    if work.stop_after and start_epoch >= work.stop_after:
        return iter(())
    return job.epochs(start_epoch)


def run_pack(works: list[Work], cpus: int, flush_seconds: float,
             *datasets: Split, stops: StopCheck | None = None) -> Iterator[list[Message]]:
    """The body of the Ray task: each trial of the pack in turn, BLAS limited to ``cpus``.

    Messages leave in batches (lists, in order): at most every ``flush_seconds``, at once
    where the driver must hear now (metrics at a decision epoch, which the trial waits
    for a verdict on; the start of a trial under a timeout, which the driver clocks from
    it), and at the pack's end. A pack of short trials then costs Ray one object a flush
    rather than several a trial (a start, metrics, an end).

    ``datasets`` come as separate arguments so that Ray resolves each object reference.
    ``stops``: the driver's verdicts, waited for by each trial at its decision epochs.
    """
    from threadpoolctl import threadpool_limits

    batch: list[Message] = []
    sent = time.monotonic()
    with threadpool_limits(limits=cpus):
        for work in works:
            for message in _trial_messages(work, datasets, flush_seconds, stops):
                batch.append(message)
                if _urgent(work, message) or time.monotonic() - sent >= flush_seconds:
                    yield batch
                    batch, sent = [], time.monotonic()
    if batch:
        yield batch


def _trial_messages(work: Work, datasets, flush_seconds: float,
                    stops: StopCheck | None) -> Iterator[Message]:
    try:
        yield from run_trial(work, datasets[work.data_index], flush_seconds, stops)
    except Exception as exc:  # a bug in nnchain itself: report it as the trial's end
        reason = f"{type(exc).__name__}: {exc}"
        yield End(work.trial_id, FAILED, reason, 0, {}, None, 0.0, True)
        traceback.print_exc()


def _urgent(work: Work, message: Message) -> bool:
    """Whether the driver must have ``message`` now: metrics ending at a decision epoch
    (the trial waits for the verdict on them next), or the start of a timed trial."""
    if isinstance(message, Metrics):
        return message.first_step + len(message.stamps) in work.report_at
    return work.timed and isinstance(message, Start)
