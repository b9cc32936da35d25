"""The reaper: sweeps whose driver stopped heartbeating are closed, runs included.

A driver heartbeats into its sweep's ledger row every second. When the heartbeat is
older than the grace period, the driver is gone (killed, machine rebooted): the next
``sweep run``, ``resume``, ``status`` or ``cancel`` marks its RUNNING trials KILLED in
the ledger and in MLflow, ends the parent run, and leaves the sweep resumable. Two
reapers racing is harmless: a conditional UPDATE lets only one of them claim a sweep.
"""

from __future__ import annotations

import os
from datetime import timedelta

from sqlalchemy import and_, or_, select, update

from nnchain.ledger.models import (
    KILLED,
    RUNNING,
    SWEEP_RUNNING,
    SWEEP_STOPPED,
    Sweep,
    Trial,
    utcnow,
)
from nnchain.ledger.store import Ledger

DEFAULT_GRACE_SECONDS = 60.0
GRACE_ENV = "NNCHAIN_GRACE_SECONDS"


def grace_seconds(value: float | None = None) -> float:
    """The grace period: the option, else ``NNCHAIN_GRACE_SECONDS``, else 60 s."""
    if value is not None:
        return value
    return float(os.environ.get(GRACE_ENV, DEFAULT_GRACE_SECONDS))


def _stale(cutoff):
    return or_(Sweep.heartbeat_at.is_(None), Sweep.heartbeat_at < cutoff)


def stale_sweeps(ledger: Ledger, *, grace: float | None = None) -> list[str]:
    """Ids of sweeps marked RUNNING whose driver stopped heartbeating (ledger only, cheap)."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds(grace))
    with ledger.session() as session:
        return list(session.scalars(select(Sweep.id).where(Sweep.status == SWEEP_RUNNING,
                                                           _stale(cutoff))))


def reap_with_store(ledger: Ledger, tracking_uri: str, *, grace: float | None = None,
                    sweep_id: str | None = None) -> list[str]:
    """``reap``, opening the MLflow store only when there is something to reap."""
    stale = stale_sweeps(ledger, grace=grace)
    if sweep_id is not None:
        stale = [s for s in stale if s == sweep_id]
    if not stale:
        return []
    from nnchain.tracking.store import open_client

    return reap(ledger, open_client(tracking_uri), grace=grace, sweep_id=sweep_id)


def reap(ledger: Ledger, client, *, grace: float | None = None,
         sweep_id: str | None = None) -> list[str]:
    """Close every RUNNING sweep (or just ``sweep_id``) whose heartbeat is stale.

    Returns the ids of the sweeps this call reaped.
    """
    cutoff = utcnow() - timedelta(seconds=grace_seconds(grace))
    with ledger.session() as session:
        query = select(Sweep.id).where(Sweep.status == SWEEP_RUNNING, _stale(cutoff))
        if sweep_id is not None:
            query = query.where(Sweep.id == sweep_id)
        candidates = list(session.scalars(query))
    reaped = []
    for candidate in candidates:
        with ledger.session() as session:
            claimed = session.execute(update(Sweep).where(
                Sweep.id == candidate, Sweep.status == SWEEP_RUNNING, _stale(cutoff))
                .values(status=SWEEP_STOPPED, updated_at=utcnow())).rowcount
        if claimed:
            _close_runs(ledger, client, candidate, "driver lost: no heartbeat for "
                                                   f"{grace_seconds(grace):g} s")
            reaped.append(candidate)
    return reaped


def _close_runs(ledger: Ledger, client, sweep_id: str, reason: str) -> None:
    """Mark the sweep's RUNNING trials KILLED, in MLflow and in the ledger, and its parent run."""
    from nnchain.tracking import sweep_runs

    with ledger.session() as session:
        sweep = session.get(Sweep, sweep_id)
        running = list(session.scalars(select(Trial).where(
            Trial.sweep_id == sweep_id, Trial.state == RUNNING)))
    for trial in running:
        if trial.run_id:  # a run FINISHED in MLflow but not in the ledger is re-run too
            _end_if_running(client, trial.run_id, reason, also=("FINISHED",))
        with ledger.session() as session:
            session.execute(update(Trial).where(Trial.id == trial.id, Trial.state == RUNNING)
                            .values(state=KILLED, reason=reason, ended_at=utcnow()))
    if sweep is not None and sweep.parent_run_id:
        _end_if_running(client, sweep.parent_run_id, reason)
    # child runs the ledger never heard of (created just before the driver died)
    if sweep is not None and sweep.experiment_id:
        with ledger.session() as session:
            trials = list(session.scalars(select(Trial).where(Trial.sweep_id == sweep_id)))
        known = {t.run_id for t in trials if t.run_id}
        configs = {t.key: t.config for t in trials}
        for status in ("RUNNING", "SCHEDULED"):
            orphans = client.search_runs(
                [sweep.experiment_id],
                filter_string=f"tags.`nnchain.sweep_id` = '{sweep_id}' and "
                              f"attributes.status = '{status}'", max_results=10_000)
            for run in orphans:
                if status == "RUNNING" or run.info.run_id not in known:
                    _complete_params(client, run, configs)
                    sweep_runs.end_run(client, run.info.run_id, KILLED, reason)


def _complete_params(client, run, configs: dict) -> None:
    """A run made just before its driver died may lack its params: log them from the
    ledger, so that every run's params equal its cell's config (invariant 4)."""
    from nnchain.config import to_params
    from nnchain.tracking.recorder import RunWriter

    config = configs.get(run.data.tags.get("nnchain.trial_key", ""))
    if config is None:
        return
    expected = to_params(config)
    missing = {k: v for k, v in expected.items() if k not in run.data.params}
    if missing:
        RunWriter(client, run.info.run_id).log_params(missing)


def _end_if_running(client, run_id: str, reason: str, also: tuple[str, ...] = ()) -> None:
    from nnchain.tracking import sweep_runs

    if client.get_run(run_id).info.status in ("RUNNING", *also):
        sweep_runs.end_run(client, run_id, KILLED, reason)


def claim(ledger: Ledger, sweep_id: str, driver: str, *, grace: float | None = None) -> bool:
    """Take over a sweep for a new driver, unless a live driver runs it (atomic)."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds(grace))
    with ledger.session() as session:
        claimed = session.execute(update(Sweep).where(
            Sweep.id == sweep_id,
            or_(Sweep.status != SWEEP_RUNNING, and_(Sweep.status == SWEEP_RUNNING,
                                                    _stale(cutoff))))
            .values(status=SWEEP_RUNNING, driver=driver, heartbeat_at=utcnow(),
                    cancel_requested=0, updated_at=utcnow())).rowcount
    return bool(claimed)
