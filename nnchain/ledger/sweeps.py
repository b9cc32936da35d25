"""Ledger operations on sweeps and trials: create, find, move trials between states."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import groupby
from typing import Any

from sqlalchemy import bindparam, func, select, update

from nnchain.errors import SpecError
from nnchain.ledger.models import (
    ENDED,
    FINISHED,
    PENDING,
    RUNNING,
    Checkpoint,
    Sweep,
    Trial,
    utcnow,
)
from nnchain.ledger.store import Ledger


def new_sweep_id() -> str:
    return uuid.uuid4().hex[:12]


def free_name(ledger: Ledger, name: str) -> str:
    """``name`` if unused, else ``name-2``, ``name-3``, ... (a new run of the same spec)."""
    with ledger.session() as session:
        taken = set(session.scalars(select(Sweep.name).where(
            (Sweep.name == name) | Sweep.name.like(f"{name}-%"))))
    if name not in taken:
        return name
    pattern = re.compile(re.escape(name) + r"-(\d+)$")
    numbers = [int(m.group(1)) for t in taken if (m := pattern.match(t))]
    return f"{name}-{max(numbers, default=1) + 1}"


def create_sweep(ledger: Ledger, *, sweep_id: str, name: str, experiment: str, spec_text: str,
                 fingerprint: str, metric_name: str, metric_goal: str, options: Mapping,
                 tracking_uri: str, trials: Sequence[Any]) -> Sweep:
    """Insert a sweep and all of its trials (PENDING) in one transaction."""
    with ledger.session() as session:
        sweep = Sweep(id=sweep_id, name=name, experiment=experiment, spec_text=spec_text,
                      fingerprint=fingerprint, metric_name=metric_name,
                      metric_goal=metric_goal, options=dict(options),
                      tracking_uri=tracking_uri, trial_count=len(trials),
                      heartbeat_at=utcnow())
        session.add(sweep)
        session.flush()
        session.add_all(Trial(sweep_id=sweep_id, key=t.key, index=t.index, repeat=t.repeat,
                              config=t.config, overrides=_jsonable(t.overrides))
                        for t in trials)
    return sweep


def _jsonable(overrides: Mapping) -> dict:
    return {str(k): v for k, v in overrides.items()}


def find_sweep(ledger: Ledger, ref: str) -> Sweep:
    """The sweep whose id or name is ``ref``; a unique id prefix also works."""
    with ledger.session() as session:
        sweep = session.get(Sweep, ref) or session.scalar(select(Sweep).where(Sweep.name == ref))
        if sweep is None and len(ref) >= 4:
            matches = list(session.scalars(select(Sweep).where(Sweep.id.like(f"{ref}%"))))
            sweep = matches[0] if len(matches) == 1 else None
        if sweep is None:
            names = list(session.scalars(select(Sweep.name)))
            from nnchain.config import did_you_mean

            raise SpecError("SWEEP", f"must name a sweep of this ledger (by name or id), "
                                     f"got {ref!r}{did_you_mean(ref, names)}")
        return sweep


def list_sweeps(ledger: Ledger) -> list[tuple[Sweep, Counter]]:
    """Every sweep, newest first, with its trial counts by state."""
    with ledger.session() as session:
        sweeps = list(session.scalars(select(Sweep).order_by(Sweep.created_at.desc())))
        rows = session.execute(select(Trial.sweep_id, Trial.state, func.count())
                               .group_by(Trial.sweep_id, Trial.state)).all()
    counts: dict[str, Counter] = {s.id: Counter() for s in sweeps}
    for sweep_id, state, count in rows:
        counts.setdefault(sweep_id, Counter())[state] = count
    return [(s, counts[s.id]) for s in sweeps]


def trials_of(ledger: Ledger, sweep_id: str, states: Iterable[str] | None = None) -> list[Trial]:
    with ledger.session() as session:
        query = select(Trial).where(Trial.sweep_id == sweep_id)
        if states is not None:
            query = query.where(Trial.state.in_(list(states)))
        return list(session.scalars(query.order_by(Trial.index)))


def state_counts(ledger: Ledger, sweep_id: str) -> Counter:
    with ledger.session() as session:
        rows = session.execute(select(Trial.state, func.count()).where(
            Trial.sweep_id == sweep_id).group_by(Trial.state)).all()
    return Counter(dict(rows))


def set_runs(ledger: Ledger, runs: Mapping[int, tuple[str, str]]) -> None:
    """Record the runs created ahead for trials: trial id -> (run id, artifact URI)."""
    if not runs:
        return
    with ledger.session() as session:
        _update_trials(session, [{"trial": trial_id, "run_id": run_id, "artifact_uri": uri}
                                 for trial_id, (run_id, uri) in runs.items()])


def update_sweep(ledger: Ledger, sweep_id: str, **values: Any) -> None:
    with ledger.session() as session:
        session.execute(update(Sweep).where(Sweep.id == sweep_id)
                        .values(updated_at=utcnow(), **values))


def update_trial(ledger: Ledger, trial_id: int, **values: Any) -> None:
    with ledger.session() as session:
        session.execute(update(Trial).where(Trial.id == trial_id).values(**values))


def start_values(run_id: str, attempt: int, worker: str = "") -> dict:
    """A trial's ledger values when it starts, for ``write_trials``."""
    now = utcnow()
    return {"state": RUNNING, "run_id": run_id, "attempt": attempt, "started_at": now,
            "heartbeat_at": now, "reason": "", "worker": worker}


def end_trial(ledger: Ledger, trial_id: int, state: str, reason: str = "",
              **values: Any) -> None:
    write_trials(ledger, ends=[(trial_id, state, reason, values)])


def write_trials(ledger: Ledger, *, starts: Mapping[int, dict] | None = None,
                 progress: Mapping[int, dict] | None = None,
                 ends: Sequence[tuple[int, str, str, dict]] = ()) -> None:
    """In one transaction: trials started (trial id -> ``start_values``), their progress
    (trial id -> values), then trials ended (trial id, state, reason, other values)."""
    now = utcnow()
    rows = [{"trial": trial_id, **values}
            for changes in (starts or {}, progress or {}) for trial_id, values in changes.items()]
    for trial_id, state, reason, values in ends:
        assert state in (*ENDED, PENDING)
        rows.append({"trial": trial_id, "state": state, "reason": reason, "ended_at": now,
                     **values})
    if not rows:
        return
    with ledger.session() as session:
        _update_trials(session, rows)


def _update_trials(session, rows: list[dict]) -> None:
    """Trial rows updated by id (each row's "trial"), one ``executemany`` per run of rows
    with the same columns; an id no longer in the table is skipped."""
    table = Trial.__table__
    statement = update(table).where(table.c.id == bindparam("trial"))
    connection = session.connection()
    for _, group in groupby(rows, key=lambda row: tuple(row)):
        connection.execute(statement, list(group))


def save_checkpoint(ledger: Ledger, trial_id: int, epoch: int, payload: bytes) -> None:
    with ledger.session() as session:
        existing = session.get(Checkpoint, trial_id)
        if existing is None:
            session.add(Checkpoint(trial_id=trial_id, epoch=epoch, payload=payload))
        else:
            existing.epoch, existing.payload, existing.saved_at = epoch, payload, utcnow()


def unfinished_checkpoints(ledger: Ledger, sweep_id: str) -> dict[int, tuple[int, bytes]]:
    """The checkpoints of a sweep's trials not FINISHED: trial id -> (epoch, payload)."""
    with ledger.session() as session:
        rows = session.execute(
            select(Checkpoint.trial_id, Checkpoint.epoch, Checkpoint.payload)
            .join(Trial, Trial.id == Checkpoint.trial_id)
            .where(Trial.sweep_id == sweep_id, Trial.state != FINISHED))
        return {trial_id: (epoch, payload) for trial_id, epoch, payload in rows}


def load_checkpoint(ledger: Ledger, trial_id: int) -> tuple[int, bytes] | None:
    with ledger.session() as session:
        checkpoint = session.get(Checkpoint, trial_id)
        return None if checkpoint is None else (checkpoint.epoch, checkpoint.payload)
