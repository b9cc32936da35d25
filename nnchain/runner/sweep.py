"""``nnchain sweep run`` and ``resume``: everything validated, then Ray, MLflow and the ledger.

Order matters for invariant 6 (bad input leaves no state): the spec is expanded and
every cell resolved, names checked and Ray reached before the first write; then the
MLflow store is created or checked once, by this process, before any worker runs.

The trials are never all in memory here: one pass over the expansion checks every cell
and keeps the fingerprint, the first config and the data sections (``expansion.survey``),
a second one streams the trials into the ledger.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlalchemy

from nnchain.credentials import scrub
from nnchain.errors import SpecError, StoreError
from nnchain.job import make_data
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import (
    FAILED,
    FINISHED,
    KILLED,
    SWEEP_FAILED,
    SWEEP_FINISHED,
    SWEEP_STOPPED,
    Sweep,
    utcnow,
)
from nnchain.ledger.states import DONE, TRIAL_STATES
from nnchain.ledger.store import Ledger, ledger_exists, open_ledger, resolve_ledger_url
from nnchain.limits import DEFAULT_MAX_TRIALS, caps, check_max_trials
from nnchain.runner import cluster, identity
from nnchain.runner.driver import Driver, Settings, Snapshot, StopSweep
from nnchain.runner.executor import RayExecutor
from nnchain.runner.reaper import claim, driver_state, driver_values, reap
from nnchain.sweep.pruning import Pruner
from nnchain.tracking import sweep_runs
from nnchain.tracking.direct import check_store, sql_url
from nnchain.tracking.metrics import MetricWriter
from nnchain.tracking.retry import is_transient, with_retry
from nnchain.tracking.store import (
    artifact_root,
    check_name,
    experiment_id,
    open_client,
    prepare_location,
    resolve_tracking_uri,
)


@dataclass
class SweepOptions:
    tracking_uri: str | None = None
    ledger_url: str | None = None
    address: str | None = None
    max_concurrent: int | None = None  # default: the cluster's CPUs / cpus_per_trial
    cpus_per_trial: float = 1.0  # a fraction packs several trials on one CPU
    max_trials: int = DEFAULT_MAX_TRIALS
    name: str | None = None
    pack: int | None = None  # trials per Ray task; None: chosen from the sweep's size
    flush_seconds: float = 1.0
    num_cpus: int | None = None  # CPUs of a local Ray instance
    sweep_id: str | None = None  # chosen by the caller (`sweep submit`); None: a new one
    # workers draw every trial's pictures in sweeps of up to this many trials; larger
    # sweeps get the best trials' pictures at the end (report.TOP_TRIAL_PICTURES); 0: none
    pictures_up_to: int = int(os.environ.get("NNCHAIN_PICTURES_UP_TO", "1000"))


@dataclass
class SweepResult:
    sweep_id: str
    name: str
    experiment_id: str
    parent_run_id: str
    status: str
    counts: Counter
    best_key: str | None
    best: float | None
    total: int

    def as_dict(self) -> dict:
        return {"sweep_id": self.sweep_id, "name": self.name,
                "experiment_id": self.experiment_id, "parent_run_id": self.parent_run_id,
                "status": self.status, "trials": self.total,
                "counts": {k: v for k, v in sorted(self.counts.items()) if v},
                "best_trial": self.best_key, "best": self.best}


def auto_pack(n_trials: int, slots: int) -> int:
    """Trials per task: about four tasks per slot, at most 8 trials a task."""
    return max(1, min(8, n_trials // max(1, slots * 4)))


def _data_splits(sections: Iterable[dict]) -> tuple[list, list[str]]:
    """Each distinct data section made once (shared through Ray's object store)."""
    keys = list(dict.fromkeys(json.dumps(section, sort_keys=True) for section in sections))
    return [make_data(json.loads(key)) for key in keys], keys


def _check_cpus(options: SweepOptions, local_cpus: int | None) -> None:
    """Refuse CPU requests that can never be met (known only for a local Ray; a remote
    cluster may grow, so there a trial waits for a node large enough)."""
    if options.cpus_per_trial < 0.01:
        raise SpecError("--cpus-per-trial", f"must be >= 0.01, got {options.cpus_per_trial}")
    if local_cpus is not None and options.cpus_per_trial > local_cpus:
        raise SpecError("--cpus-per-trial", f"must be <= this machine's {local_cpus} CPUs, "
                                            f"got {options.cpus_per_trial}")


def _settings(spec, options: SweepOptions, resources: dict, n_trials: int,
              checkpoint_every: int) -> Settings:
    cpus = int(resources.get("CPU", 1))
    slots = options.max_concurrent or max(1, int(cpus / options.cpus_per_trial + 1e-9))
    pack = options.pack or auto_pack(n_trials, slots)
    # A user's --max-concurrent is kept exactly (tasks in flight). Otherwise Ray's CPUs
    # bound what runs, and a pack's worth of trials waits behind each running one so that
    # no slot idles while the driver records.
    exact = bool(options.max_concurrent)
    return Settings(cpus_per_trial=options.cpus_per_trial, max_concurrent=slots, pack=pack,
                    in_flight=slots if exact else 0,
                    trials_in_flight=0 if exact else 2 * slots * pack,
                    flush_seconds=options.flush_seconds, max_retries=spec.max_retries,
                    trial_timeout=spec.trial_timeout, checkpoint_every=checkpoint_every,
                    pictures=0 < n_trials <= options.pictures_up_to,
                    top_pictures=_top_pictures(n_trials, options.pictures_up_to))


def _top_pictures(n_trials: int, pictures_up_to: int) -> int:
    """Trials drawn at the sweep's end: the best ones, when the sweep is too large for
    the workers to draw every trial (none when pictures are off)."""
    from nnchain.report.html import TOP_TRIAL_PICTURES

    return TOP_TRIAL_PICTURES if 0 < pictures_up_to < n_trials else 0


def run_sweep(spec_path: str, overrides: Sequence[str], options: SweepOptions,
              on_progress: Callable[[Snapshot], None] | None = None,
              on_created: Callable[[Sweep], None] | None = None) -> SweepResult:
    """Validate, record and run a new sweep to its end."""
    from nnchain.sweep import load_sweep_spec, survey

    check_max_trials(options.max_trials)
    spec = load_sweep_spec(spec_path, overrides)
    check_name("--name" if options.name else "name", options.name or spec.name)
    check_name("experiment", spec.experiment)
    found = survey(spec, max_trials=options.max_trials)  # every cell checked, configs not kept
    uri = resolve_tracking_uri(options.tracking_uri)
    _check_new_sweep_id(options, uri)
    prepare_location(uri)
    check_store(uri)
    cluster.check_address(options.address)
    local_cpus = None if (options.address or os.environ.get("RAY_ADDRESS")) else \
        (options.num_cpus or os.cpu_count() or 1)
    _check_cpus(options, local_cpus)
    datasets, data_keys = _data_splits(found.data)
    # Everything is valid: while Ray starts (seconds of waiting), another thread creates or
    # checks the MLflow store, records the sweep and creates trial runs ahead.
    ray_ready = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        recording = pool.submit(_record_sweep, spec, found, uri, options, ray_ready)
        try:
            resources = cluster.connect(options.address, num_cpus=options.num_cpus)
        except BaseException as error:
            ray_ready.set()
            _stop_recorded(recording, f"Ray did not start: {str(error).splitlines()[0]}"[:500])
            raise
        ray_ready.set()
        client, ledger, sweep = recording.result()
    template = found.first
    settings = _settings(spec, options, resources, found.count,
                         template["train"].get("checkpoint_every", 0))
    del found  # the driver reads the trials from the ledger
    if on_created is not None:
        on_created(sweep)
    return _execute(ledger, client, uri, sweep, settings, datasets, data_keys, on_progress,
                    spec, template)


def _stop_recorded(recording, reason: str) -> None:
    """Ray failed while the sweep was being recorded: once recorded, the sweep is STOPPED
    and its parent run KILLED (resumable, nothing left RUNNING); a recording that failed
    too is left to the Ray error, which is the one to report."""
    try:
        client, ledger, sweep = recording.result()
        sweep_runs.end_run(client, sweep.parent_run_id, KILLED, reason)
        ledger_ops.update_sweep(ledger, sweep.id, status=SWEEP_STOPPED)
    except Exception:  # noqa: BLE001 - the Ray error is raised by the caller
        pass


def _check_new_sweep_id(options: SweepOptions, uri: str) -> None:
    """A caller's sweep id must have the ledger's form and be new to it; checked read-only,
    before anything is written (a ledger that does not exist yet holds no sweep)."""
    sweep_id = options.sweep_id
    if sweep_id is None:
        return
    if not ledger_ops.SWEEP_ID.fullmatch(sweep_id):
        raise SpecError("--sweep-id", f"must be 12 lowercase hex digits, got {sweep_id!r}")
    url = resolve_ledger_url(uri, options.ledger_url)
    if not ledger_exists(url):
        return
    ledger = Ledger(url)
    try:
        if not sqlalchemy.inspect(ledger.engine).has_table(Sweep.__tablename__):
            return
        with ledger.session() as session:
            taken = session.scalar(sqlalchemy.select(Sweep.name).where(Sweep.id == sweep_id))
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StoreError(f"cannot open the ledger {scrub(url)}: "
                         f"{str(exc).splitlines()[0]}") from None
    finally:
        ledger.dispose()
    if taken is not None:
        raise SpecError("--sweep-id", f"must be new to the ledger, sweep {taken!r} has id "
                                      f"{sweep_id}")


def _create_parent(ledger: Ledger, client, uri: str, spec, sweep_id: str, name: str,
                   trial_count: int) -> tuple[str, str]:
    """The sweep's experiment and parent run, recorded in the ledger. A parent run already
    made for the sweep (a create whose answer was lost, a driver that died before the
    ledger heard of it) is taken, completed, instead of making a second one."""
    exp_id = experiment_id(client, spec.experiment, artifact_root(uri))
    settings = {"sweep.method": spec.method, "sweep.metric": spec.metric.name,
                "sweep.goal": spec.metric.goal, "sweep.repeats": str(spec.repeats),
                "sweep.trials": str(trial_count), "sweep.seed": str(spec.seed)}
    parent = sweep_runs.find_parent_run(client, exp_id, sweep_id)
    if parent:
        sweep_runs.complete_parent_run(client, parent, spec_text=spec.text, settings=settings)
        client.update_run(parent, status="RUNNING")
    else:
        parent = sweep_runs.create_parent_run(
            client, exp_id, sweep_id=sweep_id, name=name, spec_text=spec.text,
            trial_count=trial_count, settings=settings)
    ledger_ops.update_sweep(ledger, sweep_id, experiment_id=exp_id, parent_run_id=parent,
                            heartbeat_at=utcnow(), **driver_values(identity.current()))
    return exp_id, parent


def _record_sweep(spec, found, uri: str, options: SweepOptions, ray_ready: threading.Event):
    """Open the stores, record the sweep (ledger rows, parent run) and create its trials'
    runs (SCHEDULED): all of them in an SQL store, else until Ray is up. ``found``: the
    expansion's survey; the trials are expanded again, streamed into the ledger."""
    from nnchain.sweep import iter_trials

    client = open_client(uri)
    ledger = open_ledger(resolve_ledger_url(uri, options.ledger_url))
    reap(ledger, client)
    name = ledger_ops.free_name(ledger, options.name or spec.name)
    sweep_id = options.sweep_id or ledger_ops.new_sweep_id()
    ledger_ops.create_sweep(
        ledger, sweep_id=sweep_id, name=name, experiment=spec.experiment, spec_text=spec.text,
        fingerprint=found.fingerprint, metric_name=spec.metric.name,
        metric_goal=spec.metric.goal, tracking_uri=scrub(uri),
        trials=iter_trials(spec, max_trials=options.max_trials),
        trial_count=found.count if spec.method == "bayes" else None,  # else: those inserted
        options={"max_retries": spec.max_retries, "trial_timeout": spec.trial_timeout,
                 "method": spec.method, "repeats": spec.repeats,
                 "overrides": list(spec.overrides)},
        driver=driver_values(identity.current()))
    exp_id, parent = with_retry(_create_parent, ledger, client, uri, spec, sweep_id, name,
                                found.count, what="the MLflow store")
    trials = itertools.chain.from_iterable(ledger_ops.trial_pages(ledger, sweep_id))
    if sql_url(uri) is not None:  # all at once, in one transaction
        created = with_retry(sweep_runs.insert_scheduled_runs, client, uri, exp_id,
                             parent_run_id=parent, sweep_id=sweep_id, trials=trials,
                             what="the MLflow store")
    else:
        created = _create_runs_until(ray_ready, client, exp_id, parent, sweep_id, trials)
    ledger_ops.set_runs(ledger, created)
    return client, ledger, ledger_ops.find_sweep(ledger, sweep_id)


def _create_runs_until(ray_ready: threading.Event, client, exp_id: str, parent: str,
                       sweep_id: str, trials) -> dict[int, tuple[str, str]]:
    """Trial runs made one by one through the client (SCHEDULED) until Ray is up or the
    store is away; the loop creates the rest as trials start."""
    created = {}
    for trial in trials:
        if ray_ready.is_set():
            break
        try:
            created[trial.id] = sweep_runs.create_trial_run(
                client, exp_id, parent_run_id=parent, sweep_id=sweep_id, trial_key=trial.key,
                index=trial.index, repeat=trial.repeat, attempt=0, config=trial.config,
                overrides=trial.overrides, scheduled=True)
        except Exception as error:
            if not is_transient(error):
                raise
            found = with_retry(sweep_runs.recover_trial_run, client, exp_id, sweep_id=sweep_id,
                               trial_key=trial.key, config=trial.config, what="the MLflow store")
            if found[0]:  # made before its answer was lost
                created[trial.id] = found
            break
    return created


def resume_sweep(ref: str, options: SweepOptions,
                 on_progress: Callable[[Snapshot], None] | None = None) -> SweepResult:
    """Run the trials of an existing sweep that are not FINISHED, from their checkpoints."""
    from nnchain.sweep import apply_spec_overrides, parse_sweep_spec, survey
    from nnchain.yamlio import parse_yaml

    uri = resolve_tracking_uri(options.tracking_uri)
    ledger = open_ledger(resolve_ledger_url(uri, options.ledger_url))
    sweep = ledger_ops.find_sweep(ledger, ref)
    overrides = tuple(sweep.options.get("overrides", ()))
    data = apply_spec_overrides(parse_yaml(sweep.spec_text, "spec"), overrides)
    spec = parse_sweep_spec(data, sweep.spec_text, overrides=overrides)
    counts = ledger_ops.state_counts(ledger, sweep.id)
    if sum(counts[state] for state in DONE) == counts.total() and \
            sweep.status == SWEEP_FINISHED:
        return _result_from_ledger(ledger, sweep)  # nothing to run: no Ray, no writes
    _check_cpus(options, None if (options.address or os.environ.get("RAY_ADDRESS")) else
                (options.num_cpus or os.cpu_count() or 1))
    # The sweep passed its --max-trials when it was made: here only the trials cap holds.
    found = survey(spec, max_trials=max(options.max_trials, caps()["trials"]))
    if found.fingerprint != sweep.fingerprint:
        raise SpecError("SWEEP", f"the spec of sweep {sweep.name!r} must not change, its "
                                 f"stored spec now expands differently")
    resources = cluster.connect(options.address, num_cpus=options.num_cpus)
    template = found.first
    settings = _settings(spec, options, resources, found.count,
                         template["train"].get("checkpoint_every", 0) if template else 0)
    datasets, data_keys = _data_splits(found.data)
    del found
    check_store(uri)
    client = open_client(uri)
    reap(ledger, client, sweep_id=sweep.id)
    if not claim(ledger, sweep.id, identity.current()):
        driver = driver_state(ledger_ops.find_sweep(ledger, sweep.id)).describe()
        raise SpecError("SWEEP", f"sweep {sweep.name!r} must not be running to resume it, "
                                 f"{driver}; wait, or run `nnchain sweep cancel "
                                 f"{sweep.name}` first")
    sync_last_steps(ledger, client, uri, sweep.id)
    if not sweep.parent_run_id:  # the first driver died before the ledger heard of it
        _create_parent(ledger, client, uri, spec, sweep.id, sweep.name, sweep.trial_count)
    else:
        client.update_run(sweep.parent_run_id, status="RUNNING")
    sweep = ledger_ops.find_sweep(ledger, sweep.id)
    return _execute(ledger, client, uri, sweep, settings, datasets, data_keys, on_progress,
                    spec, template)


def _result_from_ledger(ledger: Ledger, sweep: Sweep) -> SweepResult:
    from nnchain.ledger.report import best_trial

    best = best_trial(ledger, sweep)
    return SweepResult(sweep.id, sweep.name, sweep.experiment_id, sweep.parent_run_id,
                       sweep.status, ledger_ops.state_counts(ledger, sweep.id),
                       best.key if best else None, best.metric if best else None,
                       sweep.trial_count)


def sync_last_steps(ledger: Ledger, client, uri: str, sweep_id: str) -> None:
    """Take each unfinished trial's last recorded step from MLflow, which is written before
    the ledger: a driver killed between the two leaves MLflow ahead."""
    from nnchain.tracking.metrics import last_steps

    states = [state for state in TRIAL_STATES if state not in DONE]
    for page in ledger_ops.trial_pages(ledger, sweep_id, states):  # not every config at once
        unfinished = [t for t in page if t.run_id]
        recorded = last_steps(client, uri, [t.run_id for t in unfinished])
        for trial in unfinished:
            step = recorded.get(trial.run_id, -1)
            if step != trial.last_step:
                ledger_ops.update_trial(ledger, trial.id, last_step=step)


def _pruner(spec, template: dict | None) -> Pruner | None:
    """Early stopping for the sweep's ``early_terminate``, on its metric (None: none)."""
    if spec.early_terminate is None or template is None:
        return None
    return Pruner(spec.early_terminate, template["train"]["epochs"], spec.metric.goal)


def _execute(ledger: Ledger, client, uri: str, sweep: Sweep, settings: Settings,
             datasets: list, data_keys: list[str],
             on_progress: Callable[[Snapshot], None] | None, spec,
             template: dict | None) -> SweepResult:
    from nnchain.sweep.bayes import Proposals

    pruner = _pruner(spec, template)
    proposals = Proposals(ledger, sweep, spec) if spec.method == "bayes" else None
    executor = RayExecutor(datasets, cpus_per_task=settings.cpus_per_trial,
                           flush_seconds=settings.flush_seconds, stops=pruner is not None)
    writer = MetricWriter(client, uri)
    driver = Driver(ledger=ledger, client=client, writer=writer, sweep=sweep,
                    executor=executor, data_keys=data_keys, settings=settings,
                    on_progress=on_progress, pruner=pruner, proposals=proposals)
    driver.load(itertools.chain.from_iterable(ledger_ops.trial_pages(ledger, sweep.id)))
    try:
        counts = driver.run()
    except (KeyboardInterrupt, StopSweep):
        _close(ledger, client, sweep, driver, SWEEP_STOPPED, KILLED)
        raise
    except BaseException:
        _close(ledger, client, sweep, driver, SWEEP_FAILED, FAILED)
        raise
    finally:
        writer.dispose()
    done = sum(counts[state] for state in DONE)
    status = SWEEP_FINISHED if done == len(driver.live) else SWEEP_FAILED
    _close(ledger, client, sweep, driver, status, FINISHED if status == SWEEP_FINISHED
           else FAILED)
    best, best_key = driver.best if driver.best else (None, None)
    return SweepResult(sweep.id, sweep.name, sweep.experiment_id, sweep.parent_run_id, status,
                       counts, best_key, best, len(driver.live))


def _close(ledger: Ledger, client, sweep: Sweep, driver: Driver, status: str,
           run_status: str) -> None:
    """End the parent run with the best trial tagged, and the sweep's ledger row."""
    tags = {}
    if driver.best is not None:
        value, key = driver.best
        best_live = next(live for live in driver.live.values() if live.key == key)
        tags = {"nnchain.best_trial_key": key, "nnchain.best_run_id": best_live.run_id,
                f"nnchain.best_{sweep.metric_name}": f"{value:.6g}" if math.isfinite(value)
                else str(value)}
        if run_status != KILLED:  # an interrupted sweep ends at once
            from nnchain.tracking.models import log_best_model

            config, _ = ledger_ops.configs_of(ledger, [best_live.trial_id])[best_live.trial_id]
            model_uri = log_best_model(client, client.tracking_uri, best_live.run_id, config)
            if model_uri:
                tags["nnchain.best_model_uri"] = model_uri
    if run_status != KILLED:  # an interrupted sweep ends at once (`nnchain report` later)
        _publish_report(ledger, client, sweep, driver, status)
    sweep_runs.end_run(client, sweep.parent_run_id, run_status, "" if run_status == FINISHED
                       else f"sweep {status.lower()}", tags)
    ledger_ops.update_sweep(ledger, sweep.id, status=status)


def _publish_report(ledger: Ledger, client, sweep: Sweep, driver: Driver, status: str) -> None:
    """The sweep's report into its parent run; one that fails is said on stderr and does
    not fail the sweep (its trials are recorded; `nnchain report` writes it again)."""
    from nnchain.report.html import publish_report

    try:
        publish_report(ledger, client, sweep.id, status=status,
                       top_pictures=driver.settings.top_pictures)
    except Exception as error:  # noqa: BLE001 - the sweep's own result stands
        import sys

        print(f"warning: the sweep's report was not written: {type(error).__name__}: "
              f"{str(error).splitlines()[0] if str(error) else ''}"[:300], file=sys.stderr)
