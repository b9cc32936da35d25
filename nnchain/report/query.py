"""Loading the trials of one or more sweeps from the ledger as plain dicts, in two SELECTs.

One SELECT finds the sweeps named on the command line (by id, name or unique id prefix),
one more reads every trial of those sweeps, only the columns a comparison shows. No
per-trial queries and no MLflow: a 1,000-trial sweep loads in a few tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select

from nnchain.config import PARAM_DEFAULTS, flatten
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import Sweep, Trial
from nnchain.ledger.store import Ledger

MIN_PREFIX = 4  # shortest id prefix that names a sweep (as ``find_sweep``)


@dataclass(frozen=True)
class SweepInfo:
    """What a comparison needs to know about one sweep."""

    id: str
    name: str
    metric_name: str
    metric_goal: str  # "minimize" | "maximize"
    status: str
    trial_count: int


@dataclass(frozen=True)
class Loaded:
    """The sweeps asked for, in the order given, and their trials as row dicts.

    Each row holds ``sweep``, ``sweep_id``, ``metric_name`` (the sweep's), ``index``,
    ``key``, ``repeat``, ``state``, ``reason``, ``run_id``, ``attempt``, ``epochs``,
    ``train_seconds``, ``metric`` (the ledger's value of the sweep's metric), ``params``
    (the resolved config, flattened to dotted keys), ``overrides`` (the cell's own dotted
    keys and values) and ``summary`` (metric key -> ``{"last", "min", "max"}``).
    Rows come sweep by sweep, by trial index.
    """

    sweeps: list[SweepInfo]
    rows: list[dict[str, Any]]


_TRIAL_COLUMNS = (Trial.sweep_id, Trial.index, Trial.key, Trial.repeat, Trial.state,
                  Trial.reason, Trial.run_id, Trial.attempt, Trial.epochs, Trial.train_seconds,
                  Trial.metric, Trial.config, Trial.overrides, Trial.summary)


def load_trials(ledger: Ledger, refs: Sequence[str]) -> Loaded:
    """The trials of the sweeps named by ``refs`` (names, ids or unique id prefixes).

    A ref that names no sweep raises ``SpecError`` (field ``SWEEP``) with a suggestion;
    a sweep named twice is loaded once.
    """
    refs = list(dict.fromkeys(refs))
    with ledger.session() as session:
        prefixes = [Sweep.id.like(f"{ref}%") for ref in refs if len(ref) >= MIN_PREFIX]
        candidates = list(session.scalars(select(Sweep).where(
            or_(Sweep.id.in_(refs), Sweep.name.in_(refs), *prefixes))))
        found = [_pick(ref, candidates) for ref in refs]
        if any(sweep is None for sweep in found):
            missing = next(ref for ref, sweep in zip(refs, found, strict=True) if sweep is None)
            ledger_ops.find_sweep(ledger, missing)  # raises SpecError with a did-you-mean
        sweeps = [_info(sweep) for sweep in dict.fromkeys(found)]
        by_id = {sweep.id: sweep for sweep in sweeps}
        order = {sweep.id: position for position, sweep in enumerate(sweeps)}
        result = session.execute(select(*_TRIAL_COLUMNS).where(
            Trial.sweep_id.in_(list(by_id))))
        rows = [_row(by_id, record) for record in result]
    rows.sort(key=lambda row: (order[row["sweep_id"]], row["index"]))
    return Loaded(sweeps, rows)


def _pick(ref: str, candidates: list[Sweep]) -> Sweep | None:
    """The sweep ``ref`` names, with ``find_sweep``'s precedence: id, name, unique prefix."""
    for matches in ((s for s in candidates if s.id == ref),
                    (s for s in candidates if s.name == ref)):
        sweep = next(matches, None)
        if sweep is not None:
            return sweep
    if len(ref) < MIN_PREFIX:
        return None
    by_prefix = [s for s in candidates if s.id.startswith(ref)]
    return by_prefix[0] if len(by_prefix) == 1 else None


def _info(sweep: Sweep) -> SweepInfo:
    return SweepInfo(sweep.id, sweep.name, sweep.metric_name, sweep.metric_goal, sweep.status,
                     sweep.trial_count)


def _row(sweeps: dict[str, SweepInfo], record: Any) -> dict[str, Any]:
    (sweep_id, index, key, repeat, state, reason, run_id, attempt, epochs, train_seconds,
     metric, config, overrides, summary) = record
    sweep = sweeps[sweep_id]
    return {"sweep": sweep.name, "sweep_id": sweep_id, "metric_name": sweep.metric_name,
            "index": index, "key": key, "repeat": repeat, "state": state,
            "reason": reason or "", "run_id": run_id or "", "attempt": attempt,
            "epochs": epochs, "train_seconds": train_seconds, "metric": metric,
            "params": {**PARAM_DEFAULTS, **flatten(config or {})},  # as MLflow's params
            "overrides": overrides or {},
            "summary": summary or {}}
