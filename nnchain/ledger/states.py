"""Trial and sweep states, and the one table of allowed trial state changes.

No SQLAlchemy here: the trial task and ``nnchain train`` name states without the ledger.
"""

from __future__ import annotations

from nnchain.errors import NnchainError

# Trial states.
PENDING, RUNNING, FINISHED, FAILED, KILLED = "PENDING", "RUNNING", "FINISHED", "FAILED", "KILLED"
PRUNED = "PRUNED"  # stopped early by the sweep's early_terminate rule: a result, never rerun
TRIAL_STATES = (PENDING, RUNNING, FINISHED, PRUNED, FAILED, KILLED)
ENDED = (FINISHED, PRUNED, FAILED, KILLED)  # a trial in these states has run to its end
DONE = (FINISHED, PRUNED)  # final results: a resume never runs them again

# Sweep states.
SWEEP_RUNNING, SWEEP_FINISHED, SWEEP_FAILED, SWEEP_STOPPED = "RUNNING", "FINISHED", "FAILED", \
    "STOPPED"

# Every trial state change the ledger accepts: from -> the states it may go to.
TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({RUNNING, FAILED, KILLED}),  # started; refused or cancelled unstarted
    RUNNING: frozenset({FINISHED, PRUNED, FAILED, KILLED, PENDING}),  # ended; PENDING: lost
    FAILED: frozenset({PENDING}),  # resumed
    KILLED: frozenset({PENDING}),  # resumed
    FINISHED: frozenset(),  # final: a finished trial is never run again
    PRUNED: frozenset(),  # final, as FINISHED: its epochs so far are its result
}


class TransitionError(NnchainError):
    """A trial state change that the table above does not allow (a bug, not bad input)."""

    def __init__(self, trial_id: int, old: str, new: str) -> None:
        super().__init__(trial_id, old, new)
        self.trial_id, self.old, self.new = trial_id, old, new

    def __str__(self) -> str:
        allowed = ", ".join(sorted(TRANSITIONS.get(self.old, ()))) or "nothing"
        return (f"trial {self.trial_id}: {self.old} -> {self.new} is not allowed; from "
                f"{self.old} a trial may go to {allowed}")


def check_transition(trial_id: int, old: str, new: str) -> None:
    """Raise ``TransitionError`` unless ``old -> new`` is in ``TRANSITIONS`` (or unchanged)."""
    if old != new and new not in TRANSITIONS.get(old, frozenset()):
        raise TransitionError(trial_id, old, new)
