"""The driver's writes, from a thread beside its message loop.

The loop gathers what its messages say must be written into a ``Batch``; a ``Flusher``
thread writes one batch at a time, in the order they were handed over, while the loop
goes on taking messages and handing out work. SQLite and PostgreSQL run their inserts with
the GIL released, so the store's work overlaps the loop's. A batch handed over while the
one before it is still being written waits for it: at most one is written at a time, and
the loop keeps gathering into the next (bigger batches cost less a value).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nnchain.tracking.metrics import Block
from nnchain.tracking.mlflow_sql import RunEnd


@dataclass
class RunFiles:
    """Files of a trial's run (its weights, its config, its pictures), stored before the
    run's end is written."""

    run_id: str
    artifact_uri: str
    files: Mapping[str, bytes]


@dataclass
class Batch:
    """What one flush writes, in this order: early-stopping decisions (ledger), runs'
    files (artifacts), runs starting, metric blocks and runs ending (MLflow, one
    transaction on an SQL store), then trials started, trials' progress and trials ended
    (ledger, one transaction). Each part is emptied once written, so that a flush retried
    after an outage does not write it twice."""

    decisions: list[dict] = field(default_factory=list)
    files: list[RunFiles] = field(default_factory=list)
    run_starts: dict[str, dict | None] = field(default_factory=dict)  # run id -> tags
    blocks: list[Block] = field(default_factory=list)
    run_ends: dict[str, RunEnd] = field(default_factory=dict)
    trial_starts: dict[int, dict] = field(default_factory=dict)
    progress: dict[int, dict] = field(default_factory=dict)
    trial_ends: list[tuple] = field(default_factory=list)
    values: int = 0  # metric values in ``blocks``

    def add(self, block: Block) -> None:
        self.blocks.append(block)
        self.values += len(block.timestamps) * len(block.columns)

    def empty(self) -> bool:
        return not (self.decisions or self.files or self.run_starts or self.blocks
                    or self.run_ends or self.trial_starts or self.progress
                    or self.trial_ends)


class Flusher:
    """A thread that writes the batches it is handed, one at a time, with ``write``. An
    error ``write`` raises (after its own retries) stops the thread and is raised again
    in the loop, at its next ``hand``, ``wait`` or ``check``."""

    def __init__(self, write: Callable[[Batch], None]) -> None:
        self._write = write
        self._changed = threading.Condition()
        self._next: Batch | None = None  # handed over, not yet taken by the thread
        self._writing = False
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="nnchain-writer")
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a batch is being written or waits to be."""
        with self._changed:
            return self._writing or self._next is not None

    def hand(self, batch: Batch) -> None:
        """Queue ``batch``, once the batch before it is written."""
        with self._changed:
            self._wait_idle()
            self._next = batch
            self._changed.notify_all()

    def wait(self) -> None:
        """Return once every batch handed over is written."""
        with self._changed:
            self._wait_idle()

    def check(self) -> None:
        """Raise the thread's error, if it stopped on one."""
        with self._changed:
            self._raise_error()

    def close(self) -> None:
        """Stop the thread after the batches handed over (an error is not raised here)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()

    def _wait_idle(self) -> None:
        while (self._writing or self._next is not None) and self._error is None:
            self._changed.wait()
        self._raise_error()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._next is None and not self._closing:
                    self._changed.wait()
                if self._next is None:
                    return
                batch, self._next, self._writing = self._next, None, True
            try:
                self._write(batch)
            except BaseException as error:  # noqa: BLE001 - the loop raises it
                with self._changed:
                    self._error, self._writing = error, False
                    self._changed.notify_all()
                return
            with self._changed:
                self._writing = False
                self._changed.notify_all()
