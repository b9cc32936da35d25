"""The seam between the driver and where trials run.

The driver submits packs of trials and reads each task's messages in completion order;
it never names Ray. ``RayExecutor`` runs packs as Ray streaming tasks in production;
the driver's unit tests run them in-process behind the same interface.
"""

from __future__ import annotations

import functools
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
        polls once an epoch, without waiting for the answer."""


@functools.cache
def _remote_pack():
    """``run_pack`` as a Ray streaming task (made once a process); a lost task is not
    retried by Ray: the driver retries its trials from their checkpoints."""
    import ray

    from nnchain.runner.task import run_pack

    return ray.remote(num_returns="streaming", max_retries=0)(run_pack)


class _StopFlags:
    """The early stops of one sweep's driver: a Ray actor (no CPU) trials poll."""

    def __init__(self) -> None:
        self.stopped: set[tuple[int, int]] = set()

    def stop(self, trial_id: int, attempt: int) -> None:
        self.stopped.add((trial_id, attempt))

    def is_stopped(self, trial_id: int, attempt: int) -> bool:
        return (trial_id, attempt) in self.stopped


class RayStops:
    """A trial's view of the stop flags. A poll asks the actor and waits for its answer a
    few milliseconds at most (an answer late is taken at the next poll), so a stop decided
    during an epoch is seen at its end and an epoch never waits long."""

    WAIT_SECONDS = 0.005

    def __init__(self, actor) -> None:
        self.actor = actor
        self._asked: dict[tuple[int, int], object] = {}

    def __getstate__(self) -> dict:
        return {"actor": self.actor}

    def __setstate__(self, state: dict) -> None:
        self.actor, self._asked = state["actor"], {}

    def __call__(self, trial_id: int, attempt: int) -> bool:
        import ray

        key = (trial_id, attempt)
        asked = self._asked.pop(key, None) or self.actor.is_stopped.remote(trial_id, attempt)
        ready, _ = ray.wait([asked], timeout=self.WAIT_SECONDS)
        if not ready:
            self._asked[key] = asked
            return False
        return bool(ray.get(asked))


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

    def submit(self, pack: Sequence[Work]) -> Handle:
        return _remote_pack().options(num_cpus=self._cpus).remote(
            list(pack), max(1, int(self._cpus)), self._flush_seconds, *self._data_refs,
            stops=self._stops)

    def stop(self, handle: Handle, trial_id: int, attempt: int) -> None:
        if self._flags is not None:
            self._flags.stop.remote(trial_id, attempt)

    def wait(self, handles: Sequence[Handle], timeout: float) -> list[Handle]:
        if not handles:
            return []
        ready, _ = self._ray.wait(list(handles), num_returns=1, timeout=timeout)
        return ready

    def take(self, handle: Handle) -> Message | TaskEnded:
        try:
            return self._ray.get(next(handle))
        except StopIteration:
            return TaskEnded()
        except Exception as error:  # the worker, its node or the object died: transient
            return TaskEnded(error)

    def cancel(self, handle: Handle) -> None:
        self._ray.cancel(handle, force=True)
