"""``nnchain sweep verify``: DESIGN.md's invariants 1-4 checked on a recorded sweep.

Read-only: the ledger and the MLflow store are compared as they are (the reaper is not
run), and every breach becomes a ``Violation`` naming the invariant, the run and the
trial key. Besides invariants 1-4 (``invariant`` 1-4) the ledger and MLflow must agree
(``invariant == "ledger"``): every ledger run exists with its trial key, ledger FINISHED
or PRUNED if and only if the run is FINISHED, and no child run of the sweep unknown to the
ledger. A PRUNED trial (early stopping) has steps 0..k-1 with k its run's
``nnchain.pruned_at`` tag (invariant 3), and is PRUNED if and only if the ledger holds a
decision to stop it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime

from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import (
    FINISHED,
    PENDING,
    PRUNED,
    RUNNING,
    SWEEP_FINISHED,
    SWEEP_RUNNING,
    Sweep,
    Trial,
    utcnow,
)
from nnchain.ledger.states import DONE
from nnchain.ledger.store import Ledger
from nnchain.runner.reaper import DEFAULT_GRACE_SECONDS, driver_state
from nnchain.tracking.recorder import MAX_PARAM_LENGTH
from nnchain.tracking.store import every_page, is_sql_store
from nnchain.verify.steps import check_steps
from nnchain.verify.store import nested_run_ids

LEDGER = "ledger"  # the invariant of ledger / MLflow agreement
ACTIVE_STATUSES = ("RUNNING", "SCHEDULED")  # MLflow run statuses that are not an end
REASON_TAG = "nnchain.status_reason"
_PAGE = 1000


@dataclass(frozen=True)
class Violation:
    """One breach: which invariant (1-4 or ``"ledger"``), where, and what was found."""

    invariant: int | str
    run_id: str
    trial_key: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"invariant {self.invariant}: trial {self.trial_key or '-'} "
                f"run {self.run_id or '-'}: {self.message}")


@dataclass
class Report:
    """The outcome of verifying one sweep."""

    sweep_id: str
    sweep_name: str
    runs_checked: int
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        if self.ok:
            return (f"sweep {self.sweep_name}: invariants 1-4 hold "
                    f"({self.runs_checked} runs checked)")
        count = len(self.violations)
        return f"{count} violation{'s' if count != 1 else ''} in sweep {self.sweep_name}"


@dataclass
class _Record:
    """A sweep as the ledger and MLflow hold it."""

    sweep: Sweep
    trials: list[Trial]
    runs: dict[str, object]  # run id -> mlflow Run: the parent, the children, ledger runs
    parent: object | None
    stopped_because: str  # "" while the sweep's driver is alive

    def __post_init__(self) -> None:
        self._by_run = {t.run_id: t for t in self.trials if t.run_id}
        self._by_key = {t.key: t for t in self.trials}

    @property
    def children(self) -> list:
        return [run for run_id, run in self.runs.items()
                if run_id != self.sweep.parent_run_id]

    def trial_of(self, run) -> Trial | None:
        """The ledger trial a run records: by run id, else by its trial key tag."""
        return self._by_run.get(run.info.run_id) or self._by_key.get(_key(run))


def verify_sweep(ledger: Ledger, client, tracking_uri: str, sweep_ref: str, *,
                 grace_seconds: float = DEFAULT_GRACE_SECONDS) -> list[Violation]:
    """Every violation of invariants 1-4 (and of ledger / MLflow agreement) in a sweep."""
    return check_sweep(ledger, client, tracking_uri, sweep_ref,
                       grace_seconds=grace_seconds).violations


def check_sweep(ledger: Ledger, client, tracking_uri: str, sweep_ref: str, *,
                grace_seconds: float = DEFAULT_GRACE_SECONDS) -> Report:
    """``verify_sweep`` with the sweep's name and the number of runs checked.

    An unknown ``sweep_ref`` raises SpecError (from ``find_sweep``).
    """
    sweep = ledger_ops.find_sweep(ledger, sweep_ref)
    trials = ledger_ops.trials_of(ledger, sweep.id)
    violations: list[Violation] = []
    runs, parent = _sweep_runs(client, tracking_uri, sweep, trials, violations)
    record = _Record(sweep, trials, runs, parent,
                     _stopped_because(sweep, utcnow(), grace_seconds))
    violations += _finished_runs(record)
    violations += _nothing_running(record)
    steps = check_steps(client, tracking_uri,
                        {run_id: run.data.metrics.keys() for run_id, run in runs.items()})
    violations += _contiguous_steps(record, steps.problems)
    violations += _params(record)
    violations += _agreement(record, steps.last_step)
    violations += _pruned(record, steps.last_step,
                          {d.trial_id for d in ledger_ops.decisions_of(ledger, sweep.id)
                           if d.stop})
    rank = {1: 0, 2: 1, 3: 2, 4: 3}
    violations.sort(key=lambda v: rank.get(v.invariant, 4))  # stable: check order kept
    return Report(sweep.id, sweep.name, len(runs), violations)


# ---- reading MLflow ----------------------------------------------------------------------
def _search(client, experiment_id: str, filter_string: str) -> Iterable:
    return every_page(client.search_runs, _PAGE, experiment_ids=[experiment_id],
                      filter_string=filter_string)


def _get_run(client, run_id: str):
    """The run, or None when the store does not have it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def _sweep_runs(client, tracking_uri: str, sweep: Sweep, trials: list[Trial],
                violations: list[Violation]) -> tuple[dict, object | None]:
    """The sweep's runs: tagged with its id, nested under its parent, or named by the ledger.

    Ledger runs that are missing or deleted are reported here (and left out).
    """
    runs: dict[str, object] = {}
    if sweep.experiment_id:
        runs.update((run.info.run_id, run) for run in _search(
            client, sweep.experiment_id, f"tags.`nnchain.sweep_id` = '{sweep.id}'"))
    nested: set[str] = set()
    if sweep.parent_run_id and is_sql_store(tracking_uri):
        nested = nested_run_ids(tracking_uri, sweep.parent_run_id) - runs.keys()
    elif sweep.parent_run_id and sweep.experiment_id:  # the store's own search, not SQL
        runs.update((run.info.run_id, run) for run in _search(
            client, sweep.experiment_id, f"tags.`mlflow.parentRunId` = '{sweep.parent_run_id}'"))
    for run_id in sorted(nested):  # nested under the parent, without the sweep's tag
        run = _get_run(client, run_id)
        if run is not None and run.info.lifecycle_stage != "deleted":
            runs[run_id] = run
    wanted = [(t.run_id, t.key) for t in trials if t.run_id]
    if sweep.parent_run_id:
        wanted.append((sweep.parent_run_id, ""))
    for run_id, key in wanted:
        if run_id in runs:
            continue
        run = _get_run(client, run_id)
        what = "the sweep's parent run" if not key else "the trial's run"
        if run is None:
            violations.append(Violation(LEDGER, run_id, key, f"{what} is not in the MLflow "
                                        f"store (the sweep was recorded in "
                                        f"{sweep.tracking_uri or 'an unknown store'})"))
        elif run.info.lifecycle_stage == "deleted":
            violations.append(Violation(LEDGER, run_id, key, f"{what} is deleted in MLflow"))
        else:
            runs[run_id] = run
    return runs, runs.get(sweep.parent_run_id) if sweep.parent_run_id else None


def _stopped_because(sweep: Sweep, now: datetime, grace_seconds: float) -> str:
    """Why the sweep counts as not running ("" when its driver is running): its ledger
    status, or its driver lost as the reaper sees it (checked on this host, else the
    heartbeat's age against the grace)."""
    if sweep.status != SWEEP_RUNNING:
        return f"the sweep is {sweep.status} in the ledger"
    state = driver_state(sweep, grace=grace_seconds, now=now)
    if not state.lost:
        return ""
    return f"the sweep is RUNNING in the ledger but {state.describe()}"


def _key(run) -> str:
    return run.data.tags.get("nnchain.trial_key", "")


# ---- invariant 1: at most one FINISHED run per trial key, one per cell when finished ------
def _finished_runs(record: _Record) -> list[Violation]:
    found = []
    finished: dict[str, list] = defaultdict(list)
    for run in record.children:
        if run.info.status == FINISHED and _key(run):
            finished[_key(run)].append(run)
    ledger_runs = {t.run_id for t in record.trials}
    for key, runs in finished.items():
        if len(runs) < 2:
            continue
        kept = next((r for r in runs if r.info.run_id in ledger_runs),
                    min(runs, key=lambda r: r.info.start_time or 0))
        for run in runs:
            if run is not kept:
                found.append(Violation(1, run.info.run_id, key, (
                    f"trial key has {len(runs)} FINISHED runs in the sweep, must have at most "
                    f"one (also {kept.info.run_id})")))
    sweep = record.sweep
    if sweep.status != SWEEP_FINISHED:
        return found
    if sweep.trial_count != len(record.trials):
        found.append(Violation(1, "", "", (
            f"the sweep is FINISHED with {len(record.trials)} trials in the ledger, must have "
            f"one per cell ({sweep.trial_count})")))
    for trial in record.trials:
        if trial.state not in DONE:
            found.append(Violation(1, trial.run_id, trial.key, (
                f"the sweep is FINISHED but this trial is {trial.state} in the ledger")))
        if trial.key not in finished:
            found.append(Violation(1, trial.run_id, trial.key, (
                "the sweep is FINISHED but this trial has no FINISHED run")))
    return found


# ---- invariant 2: nothing RUNNING once the sweep stopped; ended runs say why -------------
def _nothing_running(record: _Record) -> list[Violation]:
    found = []
    # runs created ahead for trials that have not started yet wait as SCHEDULED
    waiting = {t.run_id for t in record.trials if t.state == PENDING and t.run_id}
    for run in record.runs.values():
        kind = "parent run" if run is record.parent else "run"
        if run.info.status == "SCHEDULED" and run.info.run_id in waiting:
            continue
        if run.info.status in ACTIVE_STATUSES and record.stopped_because:
            found.append(Violation(2, run.info.run_id, _key(run), (
                f"{kind} is {run.info.status} but {record.stopped_because}")))
        if run.info.status in ("KILLED", "FAILED") and not run.data.tags.get(REASON_TAG):
            found.append(Violation(2, run.info.run_id, _key(run), (
                f"{kind} is {run.info.status} without a {REASON_TAG} tag")))
    if record.stopped_because:
        for trial in record.trials:
            if trial.state == RUNNING:
                found.append(Violation(2, trial.run_id, trial.key, (
                    f"trial is RUNNING in the ledger but {record.stopped_because}")))
    return found


# ---- invariant 3: steps 0..n-1, each once ------------------------------------------------
def _contiguous_steps(record: _Record, problems: dict[tuple[str, str], str]) -> list[Violation]:
    return [Violation(3, run_id, _key(record.runs[run_id]), f"metric {key}: {text}")
            for (run_id, key), text in problems.items()]


def _pruned(record: _Record, last_steps: dict[str, int], stopped: set[int]) -> list[Violation]:
    """A PRUNED trial's run: tagged ``nnchain.pruned_at`` = k, the ledger's epochs, with
    steps 0..k-1 (their contiguity is checked above); PRUNED iff a stop was decided (or
    FINISHED, every epoch run before the stop reached it)."""
    found = []
    for trial in record.trials:
        if trial.state == PRUNED and trial.id not in stopped:
            found.append(Violation(LEDGER, trial.run_id, trial.key,
                                   "trial is PRUNED in the ledger but no decision to stop it "
                                   "is recorded"))
        if trial.state == FINISHED and trial.id in stopped and \
                trial.epochs < trial.config["train"]["epochs"]:
            found.append(Violation(LEDGER, trial.run_id, trial.key, (
                f"trial is FINISHED after {trial.epochs} of {trial.config['train']['epochs']} "
                f"epochs but a decision to stop it is recorded")))
        run = record.runs.get(trial.run_id) if trial.run_id else None
        if run is None:
            continue
        tag = run.data.tags.get("nnchain.pruned_at")
        if trial.state != PRUNED:
            if tag is not None and trial.state == FINISHED:
                found.append(Violation(3, trial.run_id, trial.key, (
                    f"run is tagged nnchain.pruned_at={tag} but the trial is FINISHED")))
            continue
        high = last_steps.get(trial.run_id, -1)
        if tag is None or not tag.isdigit():
            found.append(Violation(3, trial.run_id, trial.key, (
                f"trial is PRUNED but its run's nnchain.pruned_at tag is {tag!r}")))
        elif int(tag) != high + 1 or int(tag) != trial.epochs:
            found.append(Violation(3, trial.run_id, trial.key, (
                f"run is tagged nnchain.pruned_at={tag}, must be its steps' count "
                f"({high + 1}) and the ledger's epochs ({trial.epochs})")))
    return found


# ---- invariant 4: params = the cell's resolved config ------------------------------------
def _params(record: _Record) -> list[Violation]:
    from nnchain.config import PARAM_DEFAULTS, to_params

    found = []  # a default-only param is missing from runs recorded before it existed
    for run in record.children:
        trial = record.trial_of(run)
        if trial is None:
            continue  # reported as unknown to the ledger
        run_id, actual = run.info.run_id, run.data.params
        expected = {k: v[:MAX_PARAM_LENGTH] for k, v in to_params(trial.config).items()}
        if not actual and expected:
            found.append(Violation(4, run_id, trial.key,
                                   f"run has no params, its config has {len(expected)}"))
            continue
        for key in sorted(expected.keys() - actual.keys() - PARAM_DEFAULTS.keys()):
            found.append(Violation(4, run_id, trial.key, (
                f"param {key} is missing, the trial's config has {expected[key]!r}")))
        for key in sorted(actual.keys() - expected.keys()):
            found.append(Violation(4, run_id, trial.key, (
                f"param {key}={actual[key]!r} is not in the trial's config")))
        for key in sorted(expected.keys() & actual.keys()):
            if actual[key] != expected[key]:
                found.append(Violation(4, run_id, trial.key, (
                    f"param {key} is {actual[key]!r}, the trial's config has "
                    f"{expected[key]!r}")))
    return found


# ---- the ledger and MLflow agree ---------------------------------------------------------
def _agreement(record: _Record, last_steps: dict[str, int]) -> list[Violation]:
    found = _parent_agreement(record)
    sweep = record.sweep
    owners: dict[str, list[Trial]] = defaultdict(list)
    for trial in record.trials:
        if trial.run_id:
            owners[trial.run_id].append(trial)
        elif trial.state in DONE:
            found.append(Violation(LEDGER, "", trial.key, f"trial is {trial.state} in the "
                                                          f"ledger without a run id"))
        run = record.runs.get(trial.run_id) if trial.run_id else None
        if run is None:
            continue  # no run yet, or reported missing
        tags = run.data.tags
        if _key(run) != trial.key:
            found.append(Violation(LEDGER, trial.run_id, trial.key, (
                f"the trial's run is tagged nnchain.trial_key={_key(run)!r}")))
        if tags.get("nnchain.sweep_id") != sweep.id:
            found.append(Violation(LEDGER, trial.run_id, trial.key, (
                f"the trial's run is tagged nnchain.sweep_id="
                f"{tags.get('nnchain.sweep_id', '')!r}, not {sweep.id!r}")))
        status = run.info.status
        ending = trial.state == RUNNING and not record.stopped_because  # the driver is on it
        if (trial.state in DONE) != (status == FINISHED) and not ending:
            found.append(Violation(LEDGER, trial.run_id, trial.key, (
                f"trial is {trial.state} in the ledger but its run is {status} in MLflow")))
        if trial.state in DONE and last_steps.get(trial.run_id, -1) != trial.last_step:
            found.append(Violation(LEDGER, trial.run_id, trial.key, (
                f"the ledger's last step is {trial.last_step} but the run's highest step in "
                f"MLflow is {last_steps.get(trial.run_id, -1)}")))
    for run_id, trials in owners.items():
        if len(trials) > 1:
            found.append(Violation(LEDGER, run_id, trials[0].key, (
                f"{len(trials)} ledger trials share this run: "
                f"{', '.join(t.key for t in trials)}")))
    for run in record.children:
        run_id, tags = run.info.run_id, run.data.tags
        if run_id in owners:
            continue
        if run.info.status in ACTIVE_STATUSES and not record.stopped_because:
            continue  # created by the live driver, which records it in the ledger next
        if tags.get("nnchain.kind") == "sweep":
            found.append(Violation(LEDGER, run_id, "", (
                f"a second parent run of the sweep (the ledger's is {sweep.parent_run_id})")))
            continue
        if run.info.status == "KILLED" and tags.get("nnchain.status_reason"):
            continue  # created just before its driver died, then closed by the reaper
        found.append(Violation(LEDGER, run_id, _key(run), (
            f"child run ({run.info.status}) is not the run of any ledger trial")))
        parent_tag = tags.get("mlflow.parentRunId")
        if parent_tag and parent_tag != sweep.parent_run_id:
            found.append(Violation(LEDGER, run_id, _key(run), (
                f"child run is nested under {parent_tag}, not the sweep's parent run")))
    return found


def _parent_agreement(record: _Record) -> list[Violation]:
    sweep, parent = record.sweep, record.parent
    if not sweep.parent_run_id:
        # a driver that died before making the parent run leaves a sweep that never ran;
        # resume creates it. Only a finished sweep, or one with trial runs, must have one.
        if record.stopped_because and (sweep.status == SWEEP_FINISHED or record.children):
            return [Violation(LEDGER, "", "", f"the sweep ({sweep.status}) has no parent run")]
        return []
    if parent is None:
        return []  # reported missing or deleted
    found = []
    tags = parent.data.tags
    if tags.get("nnchain.kind") != "sweep" or tags.get("nnchain.sweep_id") != sweep.id:
        found.append(Violation(LEDGER, sweep.parent_run_id, "", (
            f"the parent run is tagged nnchain.kind={tags.get('nnchain.kind', '')!r}, "
            f"nnchain.sweep_id={tags.get('nnchain.sweep_id', '')!r}, must be 'sweep', "
            f"{sweep.id!r}")))
    if (sweep.status == SWEEP_FINISHED) != (parent.info.status == FINISHED):
        found.append(Violation(LEDGER, sweep.parent_run_id, "", (
            f"the sweep is {sweep.status} in the ledger but its parent run is "
            f"{parent.info.status} in MLflow")))
    return found
