"""Early stopping: the rung arithmetic of ASHA, Hyperband and the median rule. Pure: no I/O.

Epochs count from 1 (a decision "at epoch 5" is made on the metric after 5 epochs, step
4). With ``min_iter`` r, ``eta`` and ``train.epochs`` R, the rung epochs are
r, r·eta, r·eta², ... below R. Decisions are asynchronous, as in ASHA (Li et al., 2020)
and Ray Tune's ``ASHAScheduler``: a trial reaching a rung is compared with the values
other trials recorded at that rung so far, and stops unless it is in their best 1/eta;
the first trial at a rung always goes on, and no trial waits for a rung to fill.

- ``asha``: one bracket, rungs from r.
- ``hyperband``: brackets b = 0..J (J the number of rungs), bracket b's rungs start at
  r·eta^b (bracket J never stops); trials are dealt to brackets in Hyperband's
  proportions (bracket b gets ceil((J+1)/(s+1)·eta^s) of every cycle, s = J-b) by a
  smooth weighted round robin over the trial index, so the assignment is deterministic.
- ``median``: at every epoch from r, a trial stops if its value is worse than the median
  of the other trials' values at the same epoch (once ``MEDIAN_MIN_OTHERS`` have one).

A NaN value stops a trial at any decision. Decisions are kept: a decision asked again
(a replayed epoch after a retry or resume) returns the recorded one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

TYPES = ("hyperband", "asha", "median")
MEDIAN_MIN_OTHERS = 2  # the median rule decides once this many other trials have a value


@dataclass(frozen=True)
class EarlyTerminate:
    """The spec's ``early_terminate``: the rule, its first rung and its reduction factor."""

    type: str  # hyperband | asha | median
    min_iter: int
    eta: int = 3


@dataclass(frozen=True)
class Decision:
    """One decision on one trial: at ``epoch`` (epochs run), in ``bracket``, at ``rung``
    (the rung's index in the bracket; the epoch itself for the median rule), its
    ``value`` against ``cutoff`` (None: nothing to compare with yet) -> ``stop``."""

    trial_id: int
    epoch: int
    bracket: int
    rung: int
    value: float
    cutoff: float | None
    stop: bool


def rung_epochs(min_iter: int, eta: int, epochs: int) -> list[int]:
    """r, r·eta, r·eta², ... below ``epochs``."""
    rungs, epoch = [], min_iter
    while epoch < epochs:
        rungs.append(epoch)
        epoch *= eta
    return rungs


def bracket_sizes(levels: int, eta: int) -> list[int]:
    """Hyperband's configurations per bracket b = 0..levels: ceil((J+1)/(s+1)·eta^s),
    s = J - b (the most aggressive bracket first)."""
    return [-(-(levels + 1) * eta ** s // (s + 1))
            for s in (levels - b for b in range(levels + 1))]


def round_robin(weights: list[int]) -> list[int]:
    """One cycle of a smooth weighted round robin: ``sum(weights)`` picks, ``weights[i]``
    of them ``i``, interleaved (ties go to the lower index)."""
    total, current, picks = sum(weights), [0] * len(weights), []
    for _ in range(total):
        current = [c + w for c, w in zip(current, weights, strict=True)]
        pick = max(range(len(weights)), key=lambda i: (current[i], -i))
        current[pick] -= total
        picks.append(pick)
    return picks


def quantile(values: list[float], q: float) -> float:
    """The ``q``-quantile of ``values`` with linear interpolation (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


class Pruner:
    """Decides, trial by trial and epoch by epoch, which trials of a sweep stop."""

    def __init__(self, rule: EarlyTerminate, epochs: int, goal: str) -> None:
        self.rule, self.epochs, self.goal = rule, epochs, goal
        self.levels = rung_epochs(rule.min_iter, rule.eta, epochs)
        if rule.type == "hyperband":
            self._cycle = round_robin(bracket_sizes(len(self.levels), rule.eta))
        else:
            self._cycle = [0]
        # (bracket, epoch) -> trial id -> value recorded there
        self._recorded: dict[tuple[int, int], dict[int, float]] = {}
        self._decided: dict[tuple[int, int], Decision] = {}  # (trial id, epoch) -> decision
        self.stopped: dict[int, Decision] = {}  # trial id -> its stop decision

    def bracket(self, index: int) -> int:
        """The bracket of the trial with expansion (or proposal) index ``index``."""
        return self._cycle[index % len(self._cycle)]

    def decision_epochs(self, index: int) -> tuple[int, ...]:
        """The epochs at which the trial ``index`` is judged."""
        if self.rule.type == "median":
            return tuple(range(self.rule.min_iter, self.epochs))
        return tuple(self.levels[self.bracket(index):])

    def load(self, decisions: Iterable[Decision]) -> None:
        """Take decisions recorded before (a resume): they are kept, never re-decided."""
        for decision in decisions:
            self._keep(decision)

    def decide(self, trial_id: int, index: int, epoch: int, value: float | None
               ) -> tuple[Decision, bool] | None:
        """The decision on ``trial_id`` after ``epoch`` epochs with metric ``value``, and
        whether it is new; None where the trial is not judged (not a rung, or stopped)."""
        kept = self._decided.get((trial_id, epoch))
        if kept is not None:
            return kept, False
        if trial_id in self.stopped or epoch not in self.decision_epochs(index):
            return None
        bracket = 0 if self.rule.type == "median" else self.bracket(index)
        value = math.nan if value is None else float(value)
        others = [v for t, v in self._recorded.get((bracket, epoch), {}).items()
                  if t != trial_id and not math.isnan(v)]
        cutoff = self._cutoff(others)
        stop = math.isnan(value) or (cutoff is not None and self._worse(value, cutoff))
        rung = epoch if self.rule.type == "median" else self.levels.index(epoch) - bracket
        decision = Decision(trial_id, epoch, bracket, rung, value, cutoff, stop)
        self._keep(decision)
        return decision, True

    def _keep(self, decision: Decision) -> None:
        self._decided[decision.trial_id, decision.epoch] = decision
        self._recorded.setdefault((decision.bracket, decision.epoch), {})[
            decision.trial_id] = decision.value
        if decision.stop:
            self.stopped[decision.trial_id] = decision

    def _cutoff(self, others: list[float]) -> float | None:
        if self.rule.type == "median":
            return quantile(others, 0.5) if len(others) >= MEDIAN_MIN_OTHERS else None
        if not others:
            return None
        keep = 1 / self.rule.eta  # the best 1/eta go on
        return quantile(others, keep if self.goal == "minimize" else 1 - keep)

    def _worse(self, value: float, cutoff: float) -> bool:
        return value > cutoff if self.goal == "minimize" else value < cutoff
