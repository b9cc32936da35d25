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


@functools.cache
def _remote_pack():
    """``run_pack`` as a Ray streaming task (made once a process); a lost task is not
    retried by Ray: the driver retries its trials from their checkpoints."""
    import ray

    from nnchain.runner.task import run_pack

    return ray.remote(num_returns="streaming", max_retries=0)(run_pack)


class RayExecutor:
    """Packs as Ray streaming tasks: datasets ``ray.put`` once, each task gets
    ``cpus_per_task`` CPUs (BLAS threads limited to match), messages taken with
    ``ray.wait`` in completion order."""

    def __init__(self, datasets: Sequence[Split], *, cpus_per_task: float,
                 flush_seconds: float) -> None:
        import ray

        self._ray = ray
        self._cpus = cpus_per_task
        self._flush_seconds = flush_seconds
        self._data_refs = [ray.put(split) for split in datasets]

    def submit(self, pack: Sequence[Work]) -> Handle:
        return _remote_pack().options(num_cpus=self._cpus).remote(
            list(pack), max(1, int(self._cpus)), self._flush_seconds, *self._data_refs)

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
