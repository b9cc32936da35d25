"""The reaper: sweeps whose driver is gone are closed, runs included.

A sweep's ledger row names its driver process (``nnchain.runner.identity``), which
heartbeats into the row every second. On the driver's host its process is checked: gone
(killed, its pid reused) means the sweep is reaped at once, running means it never is.
From another host nothing can be checked and the heartbeat decides: older than the grace
period, the driver is taken for gone (killed, machine rebooted). The next ``sweep run``,
``resume``, ``status`` or ``cancel`` then marks its RUNNING trials KILLED in the ledger and
in MLflow, ends the parent run, and leaves the sweep resumable. Two reapers racing is
harmless: a conditional UPDATE lets only one of them claim a sweep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update

from nnchain.ledger.models import (
    KILLED,
    PENDING,
    RUNNING,
    SWEEP_RUNNING,
    SWEEP_STOPPED,
    Sweep,
    Trial,
    utcnow,
)
from nnchain.ledger.store import Ledger
from nnchain.ledger.sweeps import kill_trials
from nnchain.runner.identity import (  # noqa: F401 - the grace: imported from here
    DEFAULT_GRACE_SECONDS,
    GRACE_ENV,
    ProcessIdentity,
    grace_seconds,
    process_alive,
)


def driver_values(identity: ProcessIdentity) -> dict:
    """The sweep row's driver columns for ``identity`` (``driver`` the display label)."""
    return {"driver": identity.label, "driver_host": identity.host,
            "driver_pid": identity.pid, "driver_started": identity.started,
            "driver_space": identity.space}


def driver_of(sweep: Sweep) -> ProcessIdentity | None:
    """The driver process the sweep row names; None before one is recorded (or a row an
    older nnchain wrote, which names ``host:pid`` only)."""
    if not sweep.driver_host or sweep.driver_pid is None:
        return None
    return ProcessIdentity(sweep.driver_host, sweep.driver_pid, sweep.driver_started,
                           sweep.driver_space or "")


@dataclass(frozen=True)
class DriverState:
    """What this host knows of a RUNNING sweep's driver: ``alive`` as ``process_alive``
    says (None: not checkable from here), and the age of its last heartbeat."""

    label: str
    alive: bool | None
    heartbeat_age: float | None  # seconds; None: it never heartbeat
    grace: float

    @property
    def lost(self) -> bool:
        if self.alive is not None:  # checked on this host: the grace does not apply
            return not self.alive
        return self.heartbeat_age is None or self.heartbeat_age > self.grace

    @property
    def reason(self) -> str:
        """Why its runs are KILLED when reaped."""
        if self.alive is False:
            return f"driver lost: its process {self.label} is gone (checked on this host)"
        return f"driver lost: no heartbeat for {self.grace:g} s"

    def describe(self) -> str:
        """The driver for a message: who, its last heartbeat, and whether it was checked."""
        who = f"its driver {self.label}" if self.label else "its driver (not yet recorded)"
        beat = "it never heartbeat" if self.heartbeat_age is None else \
            f"last heartbeat {self.heartbeat_age:.0f} s ago"
        if self.alive is True:
            return f"{who}, {beat}, is running (checked on this host)"
        if self.alive is False:
            return f"{who} is gone (checked on this host), {beat}"
        return (f"{who} cannot be checked from this host; {beat}; it is reaped after "
                f"{self.grace:g} s without one")


def driver_state(sweep: Sweep, *, grace: float | None = None,
                 now: datetime | None = None) -> DriverState:
    """The state of ``sweep``'s driver, seen from this host now."""
    identity = driver_of(sweep)
    age = None if sweep.heartbeat_at is None else \
        ((now or utcnow()) - sweep.heartbeat_at).total_seconds()
    return DriverState(identity.label if identity else sweep.driver,
                       None if identity is None else process_alive(identity), age,
                       grace_seconds(grace))


def _stale(cutoff):
    return or_(Sweep.heartbeat_at.is_(None), Sweep.heartbeat_at < cutoff)


def _unchanged(sweep: Sweep, state: DriverState, cutoff):
    """The row still names the driver found lost: a driver that took the sweep over since
    (another reaper's resume) is left alone."""
    same_driver = and_(Sweep.driver_host.is_not_distinct_from(sweep.driver_host),
                       Sweep.driver_pid.is_not_distinct_from(sweep.driver_pid),
                       Sweep.driver_started.is_not_distinct_from(sweep.driver_started))
    if state.alive is False:
        return and_(Sweep.status == SWEEP_RUNNING, same_driver)
    return and_(Sweep.status == SWEEP_RUNNING, same_driver, _stale(cutoff))


def _lost_sweeps(ledger: Ledger, grace: float | None,
                 sweep_id: str | None) -> list[tuple[Sweep, DriverState]]:
    """The RUNNING sweeps (or just ``sweep_id``) whose driver is lost, as read now."""
    now = utcnow()
    with ledger.session() as session:
        query = select(Sweep).where(Sweep.status == SWEEP_RUNNING)
        if sweep_id is not None:
            query = query.where(Sweep.id == sweep_id)
        running = list(session.scalars(query))
    states = [(sweep, driver_state(sweep, grace=grace, now=now)) for sweep in running]
    return [(sweep, state) for sweep, state in states if state.lost]


def stale_sweeps(ledger: Ledger, *, grace: float | None = None) -> list[str]:
    """Ids of sweeps marked RUNNING whose driver is lost (ledger and this host only, cheap)."""
    return [sweep.id for sweep, _ in _lost_sweeps(ledger, grace, None)]


def reap_with_store(ledger: Ledger, tracking_uri: str, *, grace: float | None = None,
                    sweep_id: str | None = None) -> list[str]:
    """``reap``, opening the MLflow store only when there is something to reap."""
    if not _lost_sweeps(ledger, grace, sweep_id):
        return []
    from nnchain.tracking.store import open_client

    return reap(ledger, open_client(tracking_uri), grace=grace, sweep_id=sweep_id)


def reap(ledger: Ledger, client, *, grace: float | None = None,
         sweep_id: str | None = None) -> list[str]:
    """Close every RUNNING sweep (or just ``sweep_id``) whose driver is lost: gone from
    this host, or (on another host) silent for longer than the grace.

    Returns the ids of the sweeps this call reaped.
    """
    cutoff = utcnow() - timedelta(seconds=grace_seconds(grace))
    reaped = []
    for sweep, state in _lost_sweeps(ledger, grace, sweep_id):
        with ledger.session() as session:
            claimed = session.execute(update(Sweep).where(
                Sweep.id == sweep.id, _unchanged(sweep, state, cutoff))
                .values(status=SWEEP_STOPPED, updated_at=utcnow())).rowcount
        if claimed:
            _close_runs(ledger, client, sweep.id, state.reason)
            reaped.append(sweep.id)
    return reaped


def _close_runs(ledger: Ledger, client, sweep_id: str, reason: str) -> None:
    """Mark the sweep's RUNNING trials KILLED, in MLflow and in the ledger, and its parent run."""
    from nnchain.tracking import sweep_runs
    from nnchain.tracking.store import every_page

    with ledger.session() as session:
        sweep = session.get(Sweep, sweep_id)
        running = list(session.scalars(select(Trial).where(
            Trial.sweep_id == sweep_id, Trial.state == RUNNING)))
    for trial in running:
        if trial.run_id:  # a run FINISHED in MLflow but not in the ledger is re-run too
            _end_if_running(client, trial.run_id, reason, also=("FINISHED",))
        kill_trials(ledger, [trial.id], reason)  # the sweep is claimed: nothing else moves it
    if sweep is not None and sweep.parent_run_id:
        _end_if_running(client, sweep.parent_run_id, reason)
    # child runs the ledger never heard of (created just before the driver died), and runs
    # of trials still PENDING in the ledger that started and ended between two of its writes
    if sweep is not None and sweep.experiment_id:
        with ledger.session() as session:
            trials = list(session.scalars(select(Trial).where(Trial.sweep_id == sweep_id)))
        known = {t.run_id for t in trials if t.run_id}
        pending = {t.run_id for t in trials if t.run_id and t.state == PENDING}
        configs = {t.key: t.config for t in trials}
        # FINISHED runs are searched only when a PENDING trial may own one; every page is
        # read before any run is ended, since ending one moves it out of the search
        for status in ("RUNNING", "SCHEDULED", *(("FINISHED",) if pending else ())):
            for run in list(every_page(client.search_runs, 10_000,
                                       experiment_ids=[sweep.experiment_id],
                                       filter_string=f"tags.`nnchain.sweep_id` = '{sweep_id}' "
                                                     f"and attributes.status = '{status}'")):
                run_id = run.info.run_id
                if status == "RUNNING" or (status == "SCHEDULED" and run_id not in known) \
                        or (status == "FINISHED" and run_id in pending):
                    _complete_params(client, run, configs)
                    sweep_runs.end_run(client, run_id, KILLED, reason)


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


def claim(ledger: Ledger, sweep_id: str, identity: ProcessIdentity, *,
          grace: float | None = None) -> bool:
    """Take over a sweep for the driver ``identity``, unless its driver is not lost (same
    rule as ``reap``; atomic: of two claims at once, one wins)."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds(grace))
    with ledger.session() as session:
        sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        return False
    free = Sweep.status != SWEEP_RUNNING
    if sweep.status == SWEEP_RUNNING:
        state = driver_state(sweep, grace=grace)
        if state.lost:
            free = or_(free, _unchanged(sweep, state, cutoff))
    now = utcnow()
    values = {"status": SWEEP_RUNNING, "heartbeat_at": now, "cancel_requested": 0,
              "updated_at": now, **driver_values(identity)}
    with ledger.session() as session:
        claimed = session.execute(
            update(Sweep).where(Sweep.id == sweep_id, free).values(**values)).rowcount
    return bool(claimed)
