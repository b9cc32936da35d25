"""Ledger operations on sweeps and trials: create, find, move trials between states.

Every trial state change is one of the named operations below (start, end, retry, requeue,
kill), checked against ``states.TRANSITIONS`` as it is made: the UPDATE only matches rows
whose current state may go to the new one, in the same transaction, and a row it missed
raises ``TransitionError`` (the transaction is rolled back). ``update_trial`` writes other
fields only.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import groupby, islice
from typing import Any

from sqlalchemy import bindparam, false, func, insert, literal_column, select, update

from nnchain.errors import SpecError
from nnchain.ledger.models import Checkpoint, Decision, Sweep, Trial, utcnow
from nnchain.ledger.states import (
    DONE,
    ENDED,
    KILLED,
    PENDING,
    RUNNING,
    TRANSITIONS,
    TRIAL_STATES,
    check_transition,
)
from nnchain.ledger.store import Ledger
from nnchain.names import NAME_MAX_LENGTH

# The states a trial may be in to move to each state (itself included: a write retried
# after its answer was lost finds it already done).
PREDECESSORS: dict[str, frozenset[str]] = {
    new: frozenset({new} | {old for old, targets in TRANSITIONS.items() if new in targets})
    for new in TRIAL_STATES}


SWEEP_ID = re.compile(r"[0-9a-f]{12}")  # what new_sweep_id makes
TRIALS_PER_INSERT = 1_000  # trials inserted per statement when a sweep is recorded


def new_sweep_id() -> str:
    return uuid.uuid4().hex[:12]


def free_name(ledger: Ledger, name: str) -> str:
    """``name`` if unused, else ``name-2``, ``name-3``, ... (a new run of the same spec)."""
    with ledger.session() as session:
        taken = set(session.scalars(select(Sweep.name).where(
            (Sweep.name == name) | Sweep.name.like(f"{name}-%"))))
    if name not in taken:
        return name
    pattern = re.compile(re.escape(name) + r"-(\d+)")
    numbers = [int(m.group(1)) for t in taken if (m := pattern.fullmatch(t))]
    free = f"{name}-{max(numbers, default=1) + 1}"
    if len(free) > NAME_MAX_LENGTH:
        raise SpecError("--name", f"must be a free name; {name!r} is taken and {free!r} is "
                                  f"longer than {NAME_MAX_LENGTH} characters")
    return free


def create_sweep(ledger: Ledger, *, sweep_id: str, name: str, experiment: str, spec_text: str,
                 fingerprint: str, metric_name: str, metric_goal: str, options: Mapping,
                 tracking_uri: str, trials: Iterable[Any],
                 driver: Mapping[str, Any] | None = None,
                 trial_count: int | None = None) -> Sweep:
    """Insert a sweep and all of its trials (PENDING) in one transaction; ``driver``: the
    columns naming the driver process (``reaper.driver_values``), so that a driver killed
    from here on is recognised as gone. ``trials`` may be a stream (``iter_trials``): they
    are read TRIALS_PER_INSERT at a time, never all held. ``trial_count``: the trials it
    will have, when they are proposed as it runs (bayes); default: the trials inserted."""
    with ledger.session() as session:
        sweep = Sweep(id=sweep_id, name=name, experiment=experiment, spec_text=spec_text,
                      fingerprint=fingerprint, metric_name=metric_name,
                      metric_goal=metric_goal, options=dict(options),
                      tracking_uri=tracking_uri,
                      trial_count=0 if trial_count is None else trial_count,
                      heartbeat_at=utcnow(), **dict(driver or {}))
        session.add(sweep)
        session.flush()
        rows = ({"sweep_id": sweep_id, "key": t.key, "index": t.index, "repeat": t.repeat,
                 "config": t.config, "overrides": _jsonable(t.overrides)} for t in trials)
        inserted = 0
        while chunk := list(islice(rows, TRIALS_PER_INSERT)):  # bulk, not an object a row
            session.execute(insert(Trial), chunk)
            inserted += len(chunk)
        if trial_count is None:
            sweep.trial_count = inserted
    return sweep


def trial_pages(ledger: Ledger, sweep_id: str, states: Iterable[str] | None = None,
                page: int = TRIALS_PER_INSERT) -> Iterator[list[Trial]]:
    """The sweep's trials, ``page`` at a time, in the order they were recorded (index
    order: ``create_sweep`` and ``add_trial`` insert them so): ``trials_of`` without
    holding them all. Each page is read in its own session, after the last page's id, so
    no cursor stays open between pages."""
    after = 0
    while True:
        with ledger.session() as session:
            query = select(Trial).where(Trial.sweep_id == sweep_id, Trial.id > after)
            if states is not None:
                query = query.where(Trial.state.in_(list(states)))
            rows = list(session.scalars(query.order_by(Trial.id).limit(page)))
        if not rows:
            return
        yield rows
        after = rows[-1].id


def add_trial(ledger: Ledger, sweep_id: str, *, key: str, index: int, config: dict,
              overrides: Mapping) -> Trial:
    """A trial proposed while the sweep runs (bayes), PENDING."""
    with ledger.session() as session:
        trial = Trial(sweep_id=sweep_id, key=key, index=index, repeat=0, config=config,
                      overrides=_jsonable(overrides))
        session.add(trial)
        session.flush()
        session.refresh(trial)
        return trial


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
    """Write fields of a trial other than its state (``last_step``, ``run_id``, ...).

    Not checked against the table: the runner changes states only through the operations
    below; tests that build a ledger in a given state may pass ``state`` here."""
    with ledger.session() as session:
        session.execute(update(Trial).where(Trial.id == trial_id).values(**values))


def start_values(run_id: str, attempt: int, worker: str = "") -> dict:
    """A trial's ledger values when it starts (PENDING -> RUNNING), for ``write_trials``."""
    now = utcnow()
    return {"state": RUNNING, "run_id": run_id, "attempt": attempt, "started_at": now,
            "heartbeat_at": now, "reason": "", "worker": worker}


def start_trial(ledger: Ledger, trial_id: int, run_id: str, attempt: int,
                worker: str = "") -> None:
    """PENDING -> RUNNING, alone (the driver batches starts through ``write_trials``)."""
    write_trials(ledger, starts={trial_id: start_values(run_id, attempt, worker)})


def end_trial(ledger: Ledger, trial_id: int, state: str, reason: str = "",
              **values: Any) -> None:
    """RUNNING -> FINISHED, PRUNED, FAILED or KILLED (PENDING -> FAILED or KILLED: never
    started)."""
    if state not in ENDED:
        raise ValueError(f"state must be one of {', '.join(ENDED)}, got {state!r}")
    write_trials(ledger, ends=[(trial_id, state, reason, values)])


def retry_trial(ledger: Ledger, trial_id: int, *, retries: int, attempt: int,
                reason: str) -> None:
    """RUNNING -> PENDING: its worker was lost; it runs again as ``attempt``."""
    with ledger.session() as session:
        _update_trials(session, [{"trial": trial_id, "state": PENDING, "retries": retries,
                                  "attempt": attempt, "reason": reason}])


def requeue_trials(ledger: Ledger, trial_ids: Iterable[int]) -> None:
    """FAILED or KILLED -> PENDING, for a resume to run them again (and RUNNING -> PENDING:
    a trial whose driver is gone and that no reaper closed). A FINISHED trial is refused."""
    rows = [{"trial": trial_id, "state": PENDING} for trial_id in trial_ids]
    if rows:
        with ledger.session() as session:
            _update_trials(session, rows)


def kill_trials(ledger: Ledger, trial_ids: Iterable[int], reason: str) -> None:
    """RUNNING (or PENDING) -> KILLED, in one transaction: cancelled, or their driver lost."""
    now = utcnow()
    rows = [{"trial": trial_id, "state": KILLED, "reason": reason, "ended_at": now}
            for trial_id in trial_ids]
    if rows:
        with ledger.session() as session:
            _update_trials(session, rows)


def cancel_requested(ledger: Ledger, sweep_id: str) -> bool:
    """Whether ``sweep cancel`` asked the sweep to stop (one column read)."""
    with ledger.session() as session:
        return bool(session.scalar(select(Sweep.cancel_requested)
                                   .where(Sweep.id == sweep_id)))


def beat_trials(ledger: Ledger, trial_ids: Sequence[int]) -> None:
    """The running trials' heartbeat."""
    if trial_ids:
        with ledger.session() as session:
            session.execute(update(Trial).where(Trial.id.in_(list(trial_ids)))
                            .values(heartbeat_at=utcnow()))


def write_trials(ledger: Ledger, *, starts: Mapping[int, dict] | None = None,
                 progress: Mapping[int, dict] | None = None,
                 ends: Sequence[tuple[int, str, str, dict]] = (),
                 decisions: Sequence[Mapping[str, Any]] = ()) -> None:
    """In one transaction: trials started (trial id -> ``start_values``), their progress
    (trial id -> values, no state), then trials ended (trial id, state, reason, other
    values; each trial at most once), and early-stopping decisions (``decision_values``;
    one already recorded is kept). Each state change is checked against the table.

    A trial started and ended in the same call is one row, its start's values under its
    end's, checked as PENDING -> RUNNING -> end: the same call retried after its answer was
    lost then finds it ended, and is accepted."""
    now = utcnow()
    starts = dict(starts or {})
    ended: list[dict] = []
    started_and_ended: list[dict] = []
    # ends of one state together: one executemany each
    for trial_id, state, reason, values in sorted(ends, key=lambda end: end[1]):
        start = starts.pop(trial_id, None)
        row = {"trial": trial_id, **(start or {}), "state": state, "reason": reason,
               "ended_at": now, **values}
        (ended if start is None else started_and_ended).append(row)
    rows = [{"trial": trial_id, **values}
            for changes in (starts, progress or {}) for trial_id, values in changes.items()]
    if not (rows or ended or started_and_ended or decisions):
        return
    with ledger.session() as session:
        _update_trials(session, rows + ended)
        _update_trials(session, started_and_ended, via=RUNNING)
        if decisions:
            _insert_decisions(session, decisions)


def decision_values(sweep_id: str, decision) -> dict:
    """A ``pruning.Decision`` as a ledger row (NaN as null)."""
    value = decision.value if decision.value == decision.value else None
    return {"sweep_id": sweep_id, "trial_id": decision.trial_id, "epoch": decision.epoch,
            "bracket": decision.bracket, "rung": decision.rung, "value": value,
            "cutoff": decision.cutoff, "stop": int(decision.stop), "decided_at": utcnow()}


def _insert_decisions(session, decisions: Sequence[Mapping[str, Any]]) -> None:
    """Insert decisions not yet recorded (a write retried after its answer was lost finds
    them there): the first decision on a trial at an epoch is the one kept."""
    trial_ids = sorted({d["trial_id"] for d in decisions})
    have = set(session.execute(select(Decision.trial_id, Decision.epoch)
                               .where(Decision.trial_id.in_(trial_ids))).all())
    new = []
    for row in decisions:
        if (row["trial_id"], row["epoch"]) not in have:
            have.add((row["trial_id"], row["epoch"]))
            new.append(dict(row))
    if new:
        session.execute(Decision.__table__.insert(), new)


def decisions_of(ledger: Ledger, sweep_id: str) -> list[Decision]:
    """A sweep's early-stopping decisions in the order made (none in a ledger older than
    the table)."""
    from sqlalchemy import inspect

    if not inspect(ledger.engine).has_table(Decision.__tablename__):
        return []
    with ledger.session() as session:
        return list(session.scalars(select(Decision).where(Decision.sweep_id == sweep_id)
                                    .order_by(Decision.id)))


def _allowed(state: str, via: str | None) -> frozenset[str]:
    """The states a trial may be in to move to ``state`` (through ``via``, if given)."""
    if via is None:
        return PREDECESSORS.get(state, frozenset())
    return frozenset({state}) | (PREDECESSORS.get(via, frozenset())
                                 if via in PREDECESSORS.get(state, ()) else frozenset())


@functools.cache
def _update_statement(state: str | None, via: str | None = None):
    """UPDATE of one trial by id; with a new ``state``, only from the states allowed."""
    table = Trial.__table__
    statement = update(table).where(table.c.id == bindparam("trial"))
    if state is not None:
        # the states as SQL literals (our own constants): executemany takes no expanding IN
        allowed = [literal_column(f"'{old}'") for old in sorted(_allowed(state, via))]
        statement = statement.where(table.c.state.in_(allowed) if allowed else false())
    return statement


def _update_trials(session, rows: list[dict], via: str | None = None) -> None:
    """Trial rows updated by id (each row's "trial"), one ``executemany`` per run of rows
    with the same columns and new state; an id no longer in the table is skipped. A state
    change the table refuses raises ``TransitionError``."""
    connection = session.connection()
    for (_, state), group in groupby(rows, key=lambda row: (tuple(row), row.get("state"))):
        group = list(group)
        result = connection.execute(_update_statement(state, via), group)
        if state is not None and result.rowcount != len(group):
            _raise_refused(connection, [row["trial"] for row in group], state, via)


def _raise_refused(connection, trial_ids: list[int], state: str, via: str | None) -> None:
    """Name the first trial whose change to ``state`` was refused: rows the UPDATE took
    are in ``state`` now, refused ones are still in theirs, missing ones are skipped."""
    table = Trial.__table__
    current = dict(connection.execute(select(table.c.id, table.c.state)
                                      .where(table.c.id.in_(trial_ids))).all())
    for trial_id in trial_ids:
        if trial_id in current:
            if via is not None and current[trial_id] != state:
                check_transition(trial_id, current[trial_id], via)
                check_transition(trial_id, via, state)
            else:
                check_transition(trial_id, current[trial_id], state)


def save_checkpoint(ledger: Ledger, trial_id: int, epoch: int, payload: bytes) -> None:
    with ledger.session() as session:
        existing = session.get(Checkpoint, trial_id)
        if existing is None:
            session.add(Checkpoint(trial_id=trial_id, epoch=epoch, payload=payload))
        else:
            existing.epoch, existing.payload, existing.saved_at = epoch, payload, utcnow()


def unfinished_checkpoints(ledger: Ledger, sweep_id: str) -> dict[int, tuple[int, bytes]]:
    """The checkpoints of a sweep's trials not done: trial id -> (epoch, payload)."""
    with ledger.session() as session:
        rows = session.execute(
            select(Checkpoint.trial_id, Checkpoint.epoch, Checkpoint.payload)
            .join(Trial, Trial.id == Checkpoint.trial_id)
            .where(Trial.sweep_id == sweep_id, Trial.state.not_in(list(DONE))))
        return {trial_id: (epoch, payload) for trial_id, epoch, payload in rows}


def load_checkpoint(ledger: Ledger, trial_id: int) -> tuple[int, bytes] | None:
    with ledger.session() as session:
        checkpoint = session.get(Checkpoint, trial_id)
        return None if checkpoint is None else (checkpoint.epoch, checkpoint.payload)


def configs_of(ledger: Ledger, trial_ids: Sequence[int]) -> dict[int, tuple[dict, dict]]:
    """Trial id -> (config, overrides) of these trials, one query (the driver reads them as
    its queue reaches them, not a whole sweep's at once)."""
    if not trial_ids:
        return {}
    with ledger.session() as session:
        rows = session.execute(select(Trial.id, Trial.config, Trial.overrides)
                               .where(Trial.id.in_(list(trial_ids))))
        return {trial_id: (config, overrides or {}) for trial_id, config, overrides in rows}
