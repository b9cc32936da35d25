"""Invariant 3 over a sweep's runs: per run and metric key, steps 0..n-1, each once.

SQL stores (SQLite, PostgreSQL) answer with one aggregate query over MLflow's ``metrics``
table, whatever the number of runs; the steps of a (run, key) pair are read only when
the aggregate shows it broken, to name its repeated and missing steps. Any other store
(a tracking server) is read with ``get_metric_history``, one call per run and key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from nnchain.tracking.store import is_sql_store
from nnchain.verify.store import Pair, step_aggregates, steps_of


@dataclass(frozen=True)
class StepStats:
    """What the aggregate query gives for one run and metric key."""

    count: int
    distinct: int
    low: int
    high: int

    @classmethod
    def of(cls, steps: Sequence[int]) -> StepStats:
        return cls(len(steps), len(set(steps)), min(steps), max(steps))

    @property
    def contiguous(self) -> bool:
        """Steps are exactly 0..n-1, each once."""
        return self.low == 0 and self.count == self.distinct == self.high + 1


@dataclass
class StepCheck:
    """The broken (run, key) pairs described, and each run's highest step (any key)."""

    problems: dict[Pair, str] = field(default_factory=dict)
    last_step: dict[str, int] = field(default_factory=dict)


def check_steps(client, tracking_uri: str, run_keys: Mapping[str, Iterable[str]]) -> StepCheck:
    """Check every metric of the runs ``run_keys`` (run id -> its metric keys).

    The keys are only needed by the history path; the SQL path finds them itself.
    """
    if not run_keys:
        return StepCheck()
    if is_sql_store(tracking_uri):
        stats = {pair: StepStats(*values)
                 for pair, values in step_aggregates(tracking_uri, list(run_keys)).items()}
        broken = [pair for pair, stat in stats.items() if not stat.contiguous]
        steps = steps_of(tracking_uri, broken) if broken else {}
    else:
        steps = {(run_id, key): [m.step for m in client.get_metric_history(run_id, key)]
                 for run_id, keys in run_keys.items() for key in keys}
        steps = {pair: values for pair, values in steps.items() if values}
        stats = {pair: StepStats.of(values) for pair, values in steps.items()}
        broken = [pair for pair, stat in stats.items() if not stat.contiguous]
    check = StepCheck()
    for (run_id, _key), stat in stats.items():
        check.last_step[run_id] = max(check.last_step.get(run_id, -1), stat.high)
    check.problems = {pair: describe_steps(steps[pair]) for pair in sorted(broken)}
    return check


def describe_steps(steps: Sequence[int]) -> str:
    """What is wrong with a metric's steps: repeated ones, missing ones, a wrong start."""
    counts = Counter(steps)
    ordered = sorted(counts)
    parts = []
    repeated = [f"{step} ({counts[step]} times)" for step in ordered if counts[step] > 1]
    if repeated:
        parts.append(f"step{'s' if len(repeated) > 1 else ''} recorded more than once: "
                     f"{_first(repeated)}")
    negative = [str(step) for step in ordered if step < 0]
    if negative:
        parts.append(f"negative steps: {_first(negative)}")
    gaps, expected = [], 0
    for step in (s for s in ordered if s >= 0):
        if step > expected:
            gaps.append(str(expected) if step == expected + 1 else f"{expected}-{step - 1}")
        expected = step + 1
    if gaps:
        parts.append(f"missing step{'s' if len(gaps) > 1 or '-' in gaps[0] else ''} "
                     f"{_first(gaps)}")
    summary = f"{len(steps)} values over steps {ordered[0]}..{ordered[-1]}" if steps \
        else "no values"
    return "; ".join(parts) + f" ({summary}, must be 0..n-1 each once)"


def _first(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")
