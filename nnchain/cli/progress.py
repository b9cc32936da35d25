"""Progress display on stderr (results go to stdout).

A display starts with its first update, not when its context is entered: a command
validates its input inside that context, and bad input must leave one line on stderr,
no bar drawn before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nnchain.ledger.states import ENDED


@contextmanager
def epoch_progress(epochs: int, *, enabled: bool = True) -> Iterator[Callable]:
    """Yield an ``on_epoch(record)`` callback that advances a bar showing the train cost."""
    if not enabled:
        yield lambda record: None
        return
    progress = Progress(
        TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
        TextColumn("cost {task.fields[cost]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=False)
    task = progress.add_task("train", total=epochs, cost="-")

    def on_epoch(record) -> None:
        cost = record.metrics.get("train_cost", float("nan"))
        progress.update(task, completed=record.epoch + 1, cost=f"{cost:.4g}")
        progress.start()  # no-op once started

    with _stopped_at_exit(progress):
        yield on_epoch


@contextmanager
def sweep_progress(*, enabled: bool = True) -> Iterator[Callable]:
    """Yield an ``on_progress(snapshot)`` callback driving a live line on stderr:
    done / running / failed, elapsed, ETA and the best metric so far."""
    if not enabled:
        yield lambda snapshot: None
        return
    progress = Progress(
        TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        TextColumn("{task.fields[best]}"), console=Console(stderr=True))
    task = progress.add_task("sweep", total=None, states="", best="")

    def on_progress(snapshot) -> None:
        counts = snapshot.counts
        done = sum(counts.get(state, 0) for state in ENDED)
        states = (f"running {max(0, counts.get('RUNNING', 0))} · failed "
                  f"{counts.get('FAILED', 0)}")
        best = "" if snapshot.best is None else f"best {snapshot.metric} {snapshot.best:.4g}"
        progress.update(task, total=snapshot.total, completed=done, states=states, best=best)
        progress.start()  # no-op once started

    with _stopped_at_exit(progress):
        yield on_progress


@contextmanager
def _stopped_at_exit(progress: Progress) -> Iterator[None]:
    """Stop the display if an update started it (stopping one never started draws it)."""
    try:
        yield
    finally:
        if progress.live.is_started:
            progress.stop()
