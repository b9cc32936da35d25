"""Chaos on a real local Ray: workers and drivers SIGKILLed at random, racing resumes, many writers.

Every scenario ends with ``nnchain sweep verify`` (exit 0) and the invariants read back
through MLflow's own client (``assert_invariants`` of test_faults): one FINISHED run per
trial key, no run RUNNING, steps 0..epochs-1 exactly once; where the driver lives through
the fault, also one run per trial key (a retry continues the trial's run). Drivers are also
SIGKILLed at exact points of their writes (a wrapped function kills its own process), where
random kills rarely land.

Kill moments come from ``random.Random(CHAOS_SEED)``; a failure message names the seed, and
``NNCHAIN_CHAOS_SEED=<seed>`` replays the same schedule (the timing of the machine aside).
The scenarios with a driver killed (``store_uri``) run on the default SQLite store and on
PostgreSQL, where the ledger lives in the MLflow database.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from support import store_urls, uri_args, wait_for
from test_faults import assert_invariants, client_for

from nnchain.cli.main import main
from nnchain.errors import SpecError, StoreError
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import RUNNING
from nnchain.ledger.states import PRUNED
from nnchain.ledger.store import open_ledger
from nnchain.runner.sweep import SweepOptions, run_sweep

pytestmark = pytest.mark.slow

CHAOS_SEED = int(os.environ.get("NNCHAIN_CHAOS_SEED", time.time_ns() % 1_000_000))


def chaos_spec(name: str, epochs: int, *, lrs=(0.05, 0.1), seeds=(0,), samples: int = 400,
               batch_size: int = 16, checkpoint_every: int = 25, max_retries: int = 2,
               hidden: str = "[32, 32]", extra: str = "") -> str:
    """A spirals grid of ``len(lrs) * len(seeds)`` trials that checkpoint often."""
    return f"""
name: {name}
experiment: chaos
seed: 0
metric: {{name: train_cost, goal: minimize}}
max_retries: {max_retries}
{extra}
data: {{name: spirals, n_samples: {samples}, noise: 0.1, val_fraction: 0.0}}
model: {{hidden: {hidden}, activation: tanh}}
train: {{epochs: {epochs}, lr: 0.1, checkpoint_every: {checkpoint_every}, \
batch_size: {batch_size}}}
parameters:
  train.lr: {{values: [{", ".join(map(str, lrs))}]}}
  seed: {{values: [{", ".join(map(str, seeds))}]}}
"""


# ---- reading the ledger from the outside, while a driver creates and writes it -----------
def ledger_url_of(home: Path, tracking_uri: str | None = None) -> str:
    return store_urls(home, tracking_uri)[1]


class LedgerReader:
    """Read-only looks at a ledger another process may still be creating.

    ``open_ledger(create=False)`` never writes (creating the schema from here would race
    the driver's own creation); every look returns None while the file, the tables or the
    sweep are not there yet.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._ledger = None

    def _open(self):
        if self._ledger is None:
            path = self.url.split("sqlite:///", 1)[-1]
            if self.url.startswith("sqlite:") and not Path(path).exists():
                return None
            self._ledger = open_ledger(self.url, create=False)
        return self._ledger

    def sweep(self, name: str):
        try:
            ledger = self._open()
            return None if ledger is None else ledger_ops.find_sweep(ledger, name)
        except (SpecError, StoreError):
            return None

    def trials(self, name: str, states=None) -> list:
        sweep = self.sweep(name)
        if sweep is None:
            return []
        try:
            return ledger_ops.trials_of(self._ledger, sweep.id, states)
        except StoreError:
            return []

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.dispose()


def is_ray_worker(pid: int) -> bool:
    """Whether ``pid`` is a Ray worker process (never the raylet, a driver or this test)."""
    if pid == os.getpid():
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.startswith(b"ray::") or b"default_worker.py" in cmdline


def worker_pid(trial) -> int:
    return int(trial.worker.rsplit(":", 1)[1])


class WorkerKiller(threading.Thread):
    """SIGKILLs the worker process of a random RUNNING trial every ``every`` s (jittered)."""

    def __init__(self, ledger_url: str, sweep_name: str, every: float, rng: random.Random,
                 min_step: int = 0) -> None:
        super().__init__(daemon=True)
        self.reader = LedgerReader(ledger_url)
        self.sweep_name, self.every, self.rng, self.min_step = sweep_name, every, rng, min_step
        self.kills: list[dict] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.every * self.rng.uniform(0.6, 1.4)):
                running = [t for t in self.reader.trials(self.sweep_name, [RUNNING])
                           if t.worker and t.last_step >= self.min_step]
                if not running:
                    continue
                trial = self.rng.choice(running)
                pid = worker_pid(trial)
                if not is_ray_worker(pid):
                    continue
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.kills.append({"key": trial.key, "run_id": trial.run_id, "pid": pid,
                                   "last_step": trial.last_step})
        finally:
            self.reader.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


def child_runs(client: MlflowClient, sweep) -> list:
    runs = client.search_runs([sweep.experiment_id], max_results=5000,
                              filter_string=f"tags.`nnchain.sweep_id` = '{sweep.id}'")
    return [r for r in runs if r.data.tags.get("nnchain.kind") == "trial"]


def assert_one_run_per_trial(client: MlflowClient, ledger, sweep_name: str) -> None:
    """Each trial key has exactly one run, and it is the ledger's run of that trial."""
    sweep = ledger_ops.find_sweep(ledger, sweep_name)
    children = child_runs(client, sweep)
    per_key = Counter(r.data.tags["nnchain.trial_key"] for r in children)
    assert all(n == 1 for n in per_key.values()), {k: n for k, n in per_key.items() if n > 1}
    trials = ledger_ops.trials_of(ledger, sweep.id)
    assert {t.key: t.run_id for t in trials} == \
        {r.data.tags["nnchain.trial_key"]: r.info.run_id for r in children}


# ---- processes -----------------------------------------------------------------------------
def cli_env(address: str | None, grace: str = "2", **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "NNCHAIN_LEDGER_URL")}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", RAY_USAGE_STATS_ENABLED="0",
               NNCHAIN_GRACE_SECONDS=grace, PYTHONUNBUFFERED="1", **extra)
    if address:
        env["RAY_ADDRESS"] = address
    return env


class Cli:
    """``python -m nnchain ARGS`` in its own session (so its process group can be killed),
    output kept in files (a pipe nobody reads could block it)."""

    count = 0

    def __init__(self, home: Path, args: list[str], env: dict,
                 program: tuple[str, ...] = ("-m", "nnchain")) -> None:
        Cli.count += 1
        self.out = home / f"cli-{Cli.count}.out"
        self.err = home / f"cli-{Cli.count}.err"
        self.args = args
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen([sys.executable, *program, *args], cwd=home,
                                            env=env, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the process group: the driver and anything it started."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.args} did not end in {timeout} s: "
                                 f"{self.output()}") from None

    def exited_within(self, seconds: float) -> bool:
        try:
            self.process.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    def output(self) -> str:
        return f"stdout: {self.out.read_text()[-2000:]!r}\nstderr: {self.err.read_text()[-4000:]!r}"


def verify_ok(*args: str, tracking_uri: str | None = None) -> None:
    verified = CliRunner().invoke(main, ["sweep", "verify", *args, *uri_args(tracking_uri)],
                                  catch_exceptions=False)
    assert verified.exit_code == 0, verified.output


# ---- 1. workers killed at random throughout a 24-trial sweep --------------------------------
def test_chaos_workers_killed_at_random(runs_home, ray_local):
    rng = random.Random(CHAOS_SEED)
    epochs, name = 800, "chaos"  # long enough for several kills every 1.5 s
    # Early stopping on, kills landing on judged trials too: the good rates come first, so
    # most of the later, slower ones are pruned at a rung.
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.5, 0.3, 0.2, 0.1, 0.05, 0.02),
                               seeds=(0, 1, 2, 3), max_retries=12,
                               extra="early_terminate: {type: hyperband, min_iter: 50, eta: 3}"))
    killer = WorkerKiller(ledger_url_of(runs_home), name, every=1.5, rng=rng)
    killer.start()
    try:
        result = run_sweep(str(spec), [], SweepOptions(pack=1))
    finally:
        killer.stop()
    context = f"seed {CHAOS_SEED}, kills {killer.kills}"
    assert result.status == "FINISHED", (result.counts, context)
    assert result.total == 24
    assert len(killer.kills) >= 3, context

    assert_invariants(runs_home, name, epochs, finished=24)  # pruned ones included
    ledger, client = ledger_for_home(runs_home), client_for(runs_home)
    assert_one_run_per_trial(client, ledger, name)
    trials = {t.key: t for t in ledger_ops.trials_of(ledger, result.sweep_id)}
    # early stopping acted while workers died
    assert assert_decisions_kept(ledger, result.sweep_id, context), (result.counts, context)
    for kill in killer.kills:  # a killed trial continued in the run it had
        if kill["run_id"]:
            assert trials[kill["key"]].run_id == kill["run_id"], (kill, context)
    retried = [t for t in trials.values() if t.retries]
    assert retried, context
    print(f"chaos: {len(killer.kills)} workers killed, {sum(t.retries for t in retried)} "
          f"retries over {len(retried)} trials ({context})")
    for trial in retried:
        assert trial.attempt == trial.retries, (trial.key, trial.attempt, trial.retries)
        run = client.get_run(trial.run_id)
        assert run.data.tags["nnchain.attempt"] == str(trial.attempt)
        assert run.info.status == "FINISHED"


def ledger_for_home(home: Path, tracking_uri: str | None = None):
    return open_ledger(ledger_url_of(home, tracking_uri), create=False)


def assert_decisions_kept(ledger, sweep_id: str, context) -> set[int]:
    """PRUNED exactly where a stop was decided, one decision per trial and epoch; the ids
    of the pruned trials."""
    pruned = {t.id for t in ledger_ops.trials_of(ledger, sweep_id, [PRUNED])}
    decisions = ledger_ops.decisions_of(ledger, sweep_id)
    assert pruned == {d.trial_id for d in decisions if d.stop}, (decisions, context)
    assert len({(d.trial_id, d.epoch) for d in decisions}) == len(decisions), context
    return pruned


# ---- 4. eight trials at once on SQLite, every epoch logged, readers alongside ---------------
def test_eight_concurrent_trials_on_sqlite(runs_home, ray_local, capfd):
    epochs, name = 400, "eight"
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2, 0.3),
                               seeds=(0, 1, 2, 3), samples=300, batch_size=16,
                               checkpoint_every=20))
    reader = LedgerReader(ledger_url_of(runs_home))
    peak = {"running": 0, "workers": set(), "reads": 0, "errors": []}
    stopped = threading.Event()

    def watch() -> None:
        """What a user does meanwhile: status, and the UI reading MLflow.

        The client is made once the sweep has its experiment, so after the driver created
        the store: an MlflowClient creates a missing SQLite store at once, and this
        process's MLflow caches it for the driver too, whose new store, renamed into place,
        would leave that cached engine on a replaced file ("readonly database")."""
        client = None
        while not stopped.wait(0.2):
            running = reader.trials(name, [RUNNING])
            peak["running"] = max(peak["running"], len(running))
            peak["workers"].update(t.worker for t in running if t.worker)
            sweep = reader.sweep(name)
            if sweep is None or not sweep.experiment_id:
                continue
            client = client or client_for(runs_home)
            try:
                for run in child_runs(client, sweep)[:4]:
                    client.get_metric_history(run.info.run_id, "train_cost")
                peak["reads"] += 1
            except Exception as error:  # noqa: BLE001 - any read error is a finding
                peak["errors"].append(repr(error))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = run_sweep(str(spec), [], SweepOptions(cpus_per_trial=0.25, pack=1,
                                                       flush_seconds=0.05))
    finally:
        stopped.set()
        watcher.join(timeout=10)
        reader.close()
    out, err = capfd.readouterr()
    assert "locked" not in (out + err).lower(), err[-3000:]
    assert "unavailable" not in err, err[-3000:]  # with_retry never had to wait
    assert not peak["errors"], peak["errors"][:3]
    assert result.status == "FINISHED", result.counts
    # 8 run at once; the ledger can show one more for an instant (a start is written at
    # once, an end at the next flush)
    assert peak["running"] >= 8, peak
    assert len(peak["workers"]) >= 8, peak
    assert_invariants(runs_home, name, epochs, finished=16)
    ledger = ledger_for_home(runs_home)
    for trial in ledger_ops.trials_of(ledger, result.sweep_id):
        assert "locked" not in trial.reason
    assert_one_run_per_trial(client_for(runs_home), ledger, name)


# ---- 2. the driver killed at random moments, resumed until done ----------------------------
def recorded_epochs(reader: LedgerReader, name: str) -> int:
    """Epochs the ledger holds as recorded, summed over the sweep's trials."""
    return sum(trial.last_step + 1 for trial in reader.trials(name))


def kill_at_progress(cli: Cli, reader: LedgerReader, name: str, target: int,
                     timeout: float = 120.0) -> bool:
    """SIGKILL ``cli`` once the sweep has ``target`` epochs recorded; False if it ended
    first. Progress, not seconds, places the kill: a loaded machine or a pruned trial
    changes how long a sweep lasts, not how far into it the kill lands."""
    deadline = time.monotonic() + timeout
    while recorded_epochs(reader, name) < target:
        if cli.exited_within(0.1):
            return False
        assert time.monotonic() < deadline, (target, recorded_epochs(reader, name),
                                             cli.output())
    cli.kill()
    return True


def test_driver_killed_at_random_then_resumed_until_done(runs_home, ray_address, store_uri):
    rng = random.Random(CHAOS_SEED)
    # Early stopping on: the good rates come first, so later trials are pruned at a rung
    # (400 or 1200 epochs) while drivers die around them.
    epochs, name = 2000, "killdriver"
    full = 6 * epochs  # the sweep's epochs if nothing were pruned
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.2, 0.1, 0.05), seeds=(0, 1),
                               samples=400, checkpoint_every=50,
                               extra="early_terminate: {type: asha, min_iter: 400, eta: 3}"))
    env, uri = cli_env(ray_address), uri_args(store_uri)
    reader = LedgerReader(ledger_url_of(runs_home, store_uri))
    schedule: list[tuple[str, int, int | None]] = []  # command, kill at epochs, exit code
    try:
        # `sweep run`, killed early: within the first two (unpruned) trials' epochs
        run = Cli(runs_home, ["sweep", "run", str(spec), "--quiet", "--pack", "1", *uri], env)
        target = int(rng.uniform(0.05, 0.3) * full)
        assert kill_at_progress(run, reader, name, target), \
            f"sweep run ended before its kill at {target} epochs: {run.output()}"
        schedule.append(("run", target, None))
        # `sweep resume`, each killed further on, until one exits 0
        code = None
        while code != 0:
            time.sleep(2.3)  # the killed driver's heartbeat is older than the grace (2 s)
            last = sum(1 for command, _, _ in schedule if command == "resume") >= 4
            resume = Cli(runs_home, ["sweep", "resume", name, "--quiet", "--format", "json",
                                     *uri], env)
            target = recorded_epochs(reader, name) + int(rng.uniform(0.05, 0.25) * full)
            if last or not kill_at_progress(resume, reader, name, target):
                code = resume.wait(120)
                schedule.append(("resume", target, code))
                assert code == 0, (schedule, CHAOS_SEED, resume.output())
                assert json.loads(resume.out.read_text())["status"] == "FINISHED"
            else:
                schedule.append(("resume", target, None))
    finally:
        reader.close()
    context = (schedule, CHAOS_SEED)
    print(f"driver kills: seed {CHAOS_SEED}, schedule {schedule}")
    assert_invariants(runs_home, name, epochs, finished=6, tracking_uri=store_uri)
    ledger = ledger_for_home(runs_home, store_uri)
    try:
        sweep = ledger_ops.find_sweep(ledger, name)
        assert assert_decisions_kept(ledger, sweep.id, context), context  # made across kills
    finally:
        ledger.dispose()
    assert sweep.status == "FINISHED", context
    # a resume after the end is a no-op
    again = CliRunner().invoke(main, ["sweep", "resume", name, "--quiet", "--format", "json",
                                      *uri])
    assert again.exit_code == 0, again.output
    verify_ok(name, tracking_uri=store_uri)


# ---- 3. two resumes of one stopped sweep started together ----------------------------------
def test_two_resumes_at_once_one_runs_the_other_is_refused(runs_home, ray_address,
                                                           store_uri):
    epochs, name = 2000, "tworesumes"  # trials last seconds: Ctrl-C lands in the sweep
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2), seeds=(0,), samples=300,
                               checkpoint_every=50))
    # grace 5 s, not 2: a resume's first heartbeat comes ~1-2 s after its claim, and a
    # second resume lagging more than the grace behind would take the sweep over
    env, uri = cli_env(ray_address, grace="5"), uri_args(store_uri)
    reader = LedgerReader(ledger_url_of(runs_home, store_uri))
    first = Cli(runs_home, ["sweep", "run", str(spec), "--quiet", "--pack", "1", *uri], env)
    try:
        wait_for(lambda: any(t.last_step >= 50 for t in reader.trials(name, [RUNNING])),
                 timeout=90)
        first.process.send_signal(signal.SIGINT)  # Ctrl-C: the sweep stops, resumable
        assert first.wait(60) == 130, first.output()
        assert reader.sweep(name).status == "STOPPED"
    finally:
        reader.close()

    resumes = [Cli(runs_home, ["sweep", "resume", name, "--quiet", "--format", "json", *uri],
                   env) for _ in range(2)]
    codes = sorted(r.wait(120) for r in resumes)
    outputs = [r.output() for r in resumes]
    print(f"two resumes: exit codes {codes}")
    if codes == [0, 2]:
        refused = next(r for r in resumes if r.process.returncode == 2)
        lines = refused.err.read_text().strip().splitlines()
        assert len(lines) == 1, outputs
        assert "must not be running" in lines[0] and name in lines[0], lines
    else:  # the first finished before the second claimed: the second was a no-op
        assert codes == [0, 0], outputs
    assert_invariants(runs_home, name, epochs, finished=3, tracking_uri=store_uri)
    ledger = ledger_for_home(runs_home, store_uri)
    try:
        assert_one_run_per_trial(client_for(runs_home, store_uri), ledger, name)
    finally:
        ledger.dispose()


# ---- the driver SIGKILLed at exact points of its conversation with the stores --------------
# The CLI with one function of nnchain.tracking.sweep_runs wrapped: at the chosen call the
# driver SIGKILLs itself, so the crash lands between two writes that random kills rarely hit.
# "after-scheduled" also makes Ray slow to answer (3 s), as a cluster that starts is, so that
# runs are created ahead (SCHEDULED) while the driver waits for it.
KILL_AT = """
import os, signal, sys, time
from nnchain.runner import cluster
from nnchain.tracking import sweep_runs
from nnchain.tracking.metrics import MetricWriter

name, when = sys.argv[1], sys.argv[2]
del sys.argv[1:3]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if name == "MetricWriter.flush":  # the writer's transaction committed, the ledger not told
    flush = MetricWriter.flush
    def dying_flush(self):
        started = bool(self._starts)
        finished = any(end.status == "FINISHED" for end in self._ends.values())
        pruned = any("nnchain.pruned_at" in end.tags for end in self._ends.values())
        flush(self)
        if (when == "after-start" and started) or (when == "after-finish" and finished) \
                or (when == "after-prune" and pruned):
            die()
    MetricWriter.flush = dying_flush
else:
    original = getattr(sweep_runs, name)
    def dying(*args, **kwargs):
        if when == "before":
            die()
        result = original(*args, **kwargs)
        die()
    setattr(sweep_runs, name, dying)
if name == "insert_scheduled_runs":
    connect = cluster.connect
    def slow_connect(*args, **kwargs):
        time.sleep(15)  # past the store's creation (~6 s), so runs are created ahead
        return connect(*args, **kwargs)
    cluster.connect = slow_connect
from nnchain.cli.main import main
sys.exit(main())
"""


def _kill_point(point: str, function: str, when: str, bug: str | None = None):
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(function, when, id=point, marks=marks)


KILL_POINTS = [
    # the sweep is in the ledger, its parent run not yet in MLflow
    _kill_point("before-parent-run", "create_parent_run", "before"),
    # the parent run made (its params and spec not yet), the ledger not yet told
    _kill_point("after-parent-run", "complete_parent_run", "before"),
    # the trials' runs created ahead (SCHEDULED, params logged) while Ray starts, not yet
    # in the ledger
    _kill_point("after-scheduled-runs", "insert_scheduled_runs", "after"),
    # trials' runs RUNNING with their first metrics in MLflow, the ledger not yet told
    _kill_point("after-runs-started", "MetricWriter.flush", "after-start"),
    # a trial's run FINISHED in MLflow, the ledger not yet told
    _kill_point("after-run-finished", "MetricWriter.flush", "after-finish"),
    # a pruned trial's run FINISHED with its nnchain.pruned_at tag, the ledger not yet told
    # of the trial's end (its stop decision may be)
    _kill_point("after-run-pruned", "MetricWriter.flush", "after-prune"),
]


def stops_kept_for_pruned_runs(home: Path, name: str, tracking_uri: str | None) -> list:
    """The runs tagged ``nnchain.pruned_at`` in MLflow, each checked to have its trial's
    stop decision, at that epoch, in the ledger."""
    ledger = ledger_for_home(home, tracking_uri)
    try:
        sweep = ledger_ops.find_sweep(ledger, name)
        trials = {t.run_id: t.id for t in ledger_ops.trials_of(ledger, sweep.id)}
        stops = {(d.trial_id, d.epoch) for d in ledger_ops.decisions_of(ledger, sweep.id)
                 if d.stop}
    finally:
        ledger.dispose()
    pruned = [r for r in client_for(home, tracking_uri).search_runs([sweep.experiment_id])
              if "nnchain.pruned_at" in r.data.tags]
    for run in pruned:
        stop = (trials[run.info.run_id], int(run.data.tags["nnchain.pruned_at"]))
        assert stop in stops, (stop, stops)
    return pruned


@pytest.mark.parametrize(("function", "when"), KILL_POINTS)
def test_driver_killed_at_exact_points_then_resumed(function, when, runs_home, ray_address,
                                                    monkeypatch, store_uri):
    epochs, name = 200, f"kill-{function}-{when}".replace("_", "-").replace(".", "-")
    spec = runs_home / "s.yaml"
    # early stopping on: the worse rates come after the best, so one is pruned at epoch 20
    spec.write_text(chaos_spec(name, epochs, lrs=(0.2, 0.1, 0.05), seeds=(0,), samples=200,
                               checkpoint_every=50,
                               extra="early_terminate: {type: asha, min_iter: 20, eta: 3}"))
    uri = uri_args(store_uri)
    driver = Cli(runs_home, [function, when, "sweep", "run", str(spec), "--quiet", "--pack",
                             "1", *uri], cli_env(ray_address), program=("-c", KILL_AT))
    code = driver.wait(120)
    assert code == -signal.SIGKILL, (code, driver.output())  # it died at that point

    # no grace to wait for: the driver's process is checked on this host, and gone
    status = CliRunner().invoke(main, ["sweep", "status", name, "--format", "json", *uri])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["status"] == "STOPPED"
    # what a user checks after the incident
    verify_ok(name, tracking_uri=store_uri)
    if when == "after-prune":  # the run ended as pruned: its stop decision was kept first
        assert stops_kept_for_pruned_runs(runs_home, name, store_uri)
    resumed = CliRunner().invoke(main, ["sweep", "resume", name, "--quiet", "--format", "json",
                                        *uri])
    assert resumed.exit_code == 0, resumed.output
    assert_invariants(runs_home, name, epochs, finished=3, tracking_uri=store_uri)
    ledger = ledger_for_home(runs_home, store_uri)
    try:
        sweep = ledger_ops.find_sweep(ledger, name)
        assert assert_decisions_kept(ledger, sweep.id, function), (function, when)
    finally:
        ledger.dispose()


# ---- processes opening one brand-new ledger at once ------------------------------------------
OPEN_AT_ONCE = """
import json, multiprocessing, sys
from nnchain.ledger.store import open_ledger

def opener(url, barrier, queue):
    barrier.wait()
    try:
        open_ledger(url).dispose()
        queue.put("")
    except Exception as error:
        queue.put(f"{type(error).__name__}: {error}"[:300])

root, rounds, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
context = multiprocessing.get_context("fork")
errors = []
for index in range(rounds):
    url = f"sqlite:///{root}/ledger-{index}.db"
    barrier, queue = context.Barrier(count), context.Queue()
    processes = [context.Process(target=opener, args=(url, barrier, queue))
                 for _ in range(count)]
    for process in processes:
        process.start()
    errors += [result for result in (queue.get(timeout=60) for _ in processes) if result]
    for process in processes:
        process.join()
print(json.dumps(errors))
"""


def test_processes_opening_a_brand_new_ledger_at_once(tmp_path):
    """What `sweep run`, `sweep status` and a test's reader do on a store's first seconds:
    20 brand-new ledgers, each opened by 6 processes released at the same instant."""
    done = subprocess.run([sys.executable, "-c", OPEN_AT_ONCE, str(tmp_path), "20", "6"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = json.loads(done.stdout)
    assert not errors, f"{len(errors)} of 120 opens failed, first: {errors[0]}"


# ---- the driver SIGKILLed while it creates a brand-new MLflow store ---------------------------
# Right after the migration that rebuilds the ``tags`` table created its temporary copy: on
# SQLite that CREATE TABLE commits on its own, so a store migrated in place is left broken
# ("table _alembic_tmp_tags already exists") for every later command.
KILL_IN_MIGRATION = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine

@event.listens_for(Engine, "after_cursor_execute")
def die(connection, cursor, statement, parameters, context, executemany):
    if "CREATE TABLE _alembic_tmp_tags" in statement:
        os.kill(os.getpid(), signal.SIGKILL)

from nnchain.cli.main import main
sys.exit(main())
"""


@pytest.mark.parametrize("template", ["1", "0"], ids=["building-the-template", "no-template"])
def test_driver_killed_while_creating_a_new_store(runs_home, ray_address, monkeypatch,
                                                  template):
    """Killed mid-migration: of the store template in a new cache (every later store is a
    copy of it), or of the store itself (templates off)."""
    epochs, name = 100, "new-store"
    monkeypatch.setenv("XDG_CACHE_HOME", str(runs_home / "cache"))
    monkeypatch.setenv("NNCHAIN_STORE_TEMPLATE", template)
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2), seeds=(0,), samples=200,
                               checkpoint_every=50))
    first = Cli(runs_home, ["sweep", "run", str(spec), "--quiet"], cli_env(ray_address),
                program=("-c", KILL_IN_MIGRATION))
    assert first.wait(120) == -signal.SIGKILL, first.output()  # killed mid-migration
    again = CliRunner().invoke(main, ["sweep", "run", str(spec), "--quiet", "--format",
                                      "json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["status"] == "FINISHED"
    assert_invariants(runs_home, name, epochs, finished=3)
    if template == "1":  # the template was made again; the killed one's draft is gone
        from nnchain.tracking.template import template_file

        made = template_file().name
        assert sorted(path.name for path in (runs_home / "cache" / "nnchain").iterdir()) \
            == [made, f"{made}.lock"]
