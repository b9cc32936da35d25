"""The seam between the driver and where trials run.

The driver submits packs of trials and reads each task's messages in completion order;
it never names Ray. ``RayExecutor`` runs packs as Ray streaming tasks in production;
the driver's unit tests run them in-process behind the same interface.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

from nnchain.job import Split
from nnchain.runner.messages import Message
from nnchain.runner.task import Work

Handle = Hashable  # a submitted task, as its executor knows it


@dataclass(frozen=True)
class TaskEnded:
    """A task has no more messages: it returned (``error`` None) or it crashed, its
    worker or node lost (``error`` says how)."""

    error: BaseException | None = None


class Executor(Protocol):
    def submit(self, pack: Sequence[Work]) -> Handle:
        """Start a task that runs the trials of ``pack`` in turn."""

    def wait(self, handles: Sequence[Handle], timeout: float) -> list[Handle]:
        """Handles among ``handles`` whose next message (or end) is ready, waiting up to
        ``timeout`` s for one; an empty list when none became ready."""

    def take(self, handle: Handle) -> Message | TaskEnded:
        """The task's next message, or ``TaskEnded`` once it has none (then forget it)."""

    def cancel(self, handle: Handle) -> None:
        """Stop the task now; its trials' ends will not come."""

    def stop(self, handle: Handle, trial_id: int, attempt: int) -> None:
        """Ask the task to stop the trial's attempt early (its end still comes): the trial
        asks at its decision epochs."""

    def decided(self, handle: Handle, trial_id: int, attempt: int, epoch: int) -> None:
        """Tell the task the trial's attempt goes on past its decision at ``epoch`` (a
        trial that waits for the verdict after a decision epoch goes on at once)."""


@functools.cache
def _remote_pack():
    """``run_pack`` as a Ray streaming task (made once a process); a lost task is not
    retried by Ray: the driver retries its trials from their checkpoints."""
    import ray

    from nnchain.runner.task import run_pack

    return ray.remote(num_returns="streaming", max_retries=0)(run_pack)


class _StopFlags:
    """The early-stopping verdicts of one sweep's driver: a Ray actor (no CPU) trials poll."""

    def __init__(self) -> None:
        self.stopped: set[tuple[int, int]] = set()
        self.decided: dict[tuple[int, int], int] = {}  # go on past this decision epoch

    def stop(self, trial_id: int, attempt: int) -> None:
        self.stopped.add((trial_id, attempt))

    def go_on(self, trial_id: int, attempt: int, epoch: int) -> None:
        key = (trial_id, attempt)
        self.decided[key] = max(epoch, self.decided.get(key, 0))

    def verdict(self, trial_id: int, attempt: int, epoch: int) -> bool | None:
        """True: stop; False: go on; None: the decision at ``epoch`` is not made yet."""
        if (trial_id, attempt) in self.stopped:
            return True
        if self.decided.get((trial_id, attempt), 0) < epoch:
            return None
        return False


class RayStops:
    """A trial's view of the verdicts, asked at its decision epochs only: it waits for the
    verdict on the epoch it just reported, asking again while it is not made, as a Ray Tune
    trial waits on each report, so a stop lands at the epoch judged however loaded the
    driver. A driver that does not answer in ``MAX_WAIT_SECONDS`` (stuck) lets it go on.
    No other epoch asks: a round trip to the actor costs milliseconds, as much as a small
    net's epoch."""

    MAX_WAIT_SECONDS = 60.0
    ASK_EVERY = 0.002

    def __init__(self, actor) -> None:
        self.actor = actor

    def __call__(self, trial_id: int, attempt: int, epoch: int) -> bool:
        import ray

        deadline = time.monotonic() + self.MAX_WAIT_SECONDS
        while True:
            asked = self.actor.verdict.remote(trial_id, attempt, epoch)
            ready, _ = ray.wait([asked], timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                return False
            answer = ray.get(asked)
            if answer is not None:
                return answer
            if time.monotonic() + self.ASK_EVERY >= deadline:
                return False
            time.sleep(self.ASK_EVERY)


class RayExecutor:
    """Packs as Ray streaming tasks: datasets ``ray.put`` once, each task gets
    ``cpus_per_task`` CPUs (BLAS threads limited to match), messages taken with
    ``ray.wait`` in completion order. With ``stops`` (early stopping) an actor holds the
    driver's stops for the trials to poll."""

    def __init__(self, datasets: Sequence[Split], *, cpus_per_task: float,
                 flush_seconds: float, stops: bool = False) -> None:
        import ray

        self._ray = ray
        self._cpus = cpus_per_task
        self._flush_seconds = flush_seconds
        self._data_refs = [ray.put(split) for split in datasets]
        self._flags = ray.remote(num_cpus=0)(_StopFlags).remote() if stops else None
        self._stops = RayStops(self._flags) if stops else None
        self._pending: dict[Handle, deque[Message]] = {}  # a task's batch, being taken

    def submit(self, pack: Sequence[Work]) -> Handle:
        return _remote_pack().options(num_cpus=self._cpus).remote(
            list(pack), max(1, int(self._cpus)), self._flush_seconds, *self._data_refs,
            stops=self._stops)

    def stop(self, handle: Handle, trial_id: int, attempt: int) -> None:
        if self._flags is not None:
            self._flags.stop.remote(trial_id, attempt)

    def decided(self, handle: Handle, trial_id: int, attempt: int, epoch: int) -> None:
        if self._flags is not None:
            self._flags.go_on.remote(trial_id, attempt, epoch)

    def wait(self, handles: Sequence[Handle], timeout: float) -> list[Handle]:
        if not handles:
            return []
        pending = [h for h in handles if self._pending.get(h)]
        if pending:  # messages of a batch already taken
            return pending
        ready, _ = self._ray.wait(list(handles), num_returns=1, timeout=timeout)
        return ready

    def take(self, handle: Handle) -> Message | TaskEnded:
        """The next message of the task's current batch; the next batch from Ray when
        that is done."""
        pending = self._pending.get(handle)
        if not pending:
            try:
                pending = self._pending[handle] = deque(self._ray.get(next(handle)))
            except StopIteration:
                self._pending.pop(handle, None)
                return TaskEnded()
            except Exception as error:  # the worker, its node or the object died
                self._pending.pop(handle, None)
                return TaskEnded(error)
        return pending.popleft() if pending else self.take(handle)

    def cancel(self, handle: Handle) -> None:
        self._pending.pop(handle, None)
        self._ray.cancel(handle, force=True)
