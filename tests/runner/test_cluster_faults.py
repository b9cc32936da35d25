"""Ray itself failing under a sweep: the whole cluster killed with its driver, a worker node
removed mid-sweep.

Clusters of these tests are their own: started with ``RAY_TMPDIR`` / ``--temp-dir`` in a
short folder of their own, their processes found by process group, descendants and that
folder in their command lines, and stopped by SIGKILLing exactly those. Never ``ray stop``:
it would also stop the session's Ray (``ray_local``) and any other Ray on this machine.
Every scenario ends with ``nnchain sweep verify`` and the invariants through MLflow.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from local_services import free_ports
from support import wait_for
from test_chaos import (
    Cli,
    LedgerReader,
    assert_one_run_per_trial,
    chaos_spec,
    cli_env,
    ledger_for_home,
    ledger_url_of,
    worker_pid,
)
from test_faults import assert_invariants, client_for

from nnchain.cli.main import main
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import RUNNING

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


# ---- processes by group, descendants and command line ---------------------------------------
def _proc_table() -> dict[int, tuple[int, int, bytes]]:
    """pid -> (ppid, pgid, cmdline) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), cmdline)
    return table


def processes(groups: set[int] = frozenset(), marker: str | None = None) -> set[int]:
    """The processes of ``groups``, those whose command line holds ``marker``, and all of
    their descendants (never this process)."""
    table = _proc_table()
    found = {pid for pid, (_, pgid, cmdline) in table.items()
             if pgid in groups or (marker and marker.encode() in cmdline)}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found - {os.getpid()}


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_and_wait(groups: set[int] = frozenset(), marker: str | None = None,
                  seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        left = processes(groups, marker)
        if not left:
            return
        kill_all(left)
        if time.monotonic() > deadline:
            raise AssertionError(f"processes survived SIGKILL: {sorted(left)}")
        time.sleep(0.2)


def short_temp_dir(prefix: str) -> Path:
    """Ray's socket paths must stay under 107 characters: a short folder in /tmp."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


# ---- 5. the whole cluster dies with its driver, the sweep resumes on another -------------
def test_whole_cluster_killed_then_resumed_on_a_new_one(runs_home, ray_local, monkeypatch):
    epochs, name = 2000, "cluster-restart"  # trials last seconds: the kills land in them
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2), seeds=(0,), samples=400,
                               checkpoint_every=50))
    ray_temp = short_temp_dir("nnr-")
    # no RAY_ADDRESS: the driver starts its own local Ray, under ray_temp
    env = cli_env(None, RAY_TMPDIR=str(ray_temp), RAY_AUTH_MODE="disabled")
    reader = LedgerReader(ledger_url_of(runs_home))
    driver = Cli(runs_home, ["sweep", "run", str(spec), "--quiet", "--pack", "1"], env)
    try:
        running = wait_for(lambda: [t for t in reader.trials(name, [RUNNING])
                                    if t.worker and t.last_step >= 100], timeout=120)
        workers = {worker_pid(t) for t in running}
        own_ray = processes(marker=str(ray_temp))
        assert workers <= own_ray, (workers, sorted(own_ray))  # trials ran on its own Ray
        driver.kill()  # SIGKILL: the driver and its process group
        kill_and_wait(marker=str(ray_temp))  # whatever of its Ray outlived it
    finally:
        reader.close()
        driver.kill()
        kill_and_wait(marker=str(ray_temp))
        shutil.rmtree(ray_temp, ignore_errors=True)

    time.sleep(2.5)  # past the grace period
    monkeypatch.setenv("NNCHAIN_GRACE_SECONDS", "2")
    status = CliRunner().invoke(main, ["sweep", "status", name, "--format", "json"])
    assert status.exit_code == 0, status.output
    ledger = ledger_for_home(runs_home)
    assert ledger_ops.find_sweep(ledger, name).status == "STOPPED"
    resumed = CliRunner().invoke(main, ["sweep", "resume", name, "--quiet", "--format", "json"])
    assert resumed.exit_code == 0, resumed.output
    assert_invariants(runs_home, name, epochs, finished=3)
    assert_one_run_per_trial(client_for(runs_home), ledger, name)
    for trial in ledger_ops.trials_of(ledger, ledger_ops.find_sweep(ledger, name).id):
        assert trial.state == "FINISHED"


# ---- 6. a worker node removed mid-sweep ---------------------------------------------------
class TwoNodes:
    """A head (1 CPU) and a worker node (2 CPUs) started with ``ray start`` in this test's
    own temp dir; each ``ray start`` in its own session, whose daemons stay in its group."""

    def __init__(self, root: Path) -> None:
        self.temp = short_temp_dir("nnc-")
        self.root = root
        self.groups: dict[str, int] = {}
        self.ports = iter(free_ports(20))
        self.gcs = f"127.0.0.1:{next(self.ports)}"
        self.starts: dict[str, subprocess.Popen] = {}

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "NNCHAIN_"))}
        env.update(RAY_TMPDIR=str(self.temp), RAY_USAGE_STATS_ENABLED="0",
                   RAY_AUTH_MODE="disabled", MLFLOW_DISABLE_TELEMETRY="true",
                   PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                   # a dead node is noticed in about a second, not 15+
                   RAY_health_check_period_ms="500", RAY_health_check_timeout_ms="500",
                   RAY_health_check_failure_threshold="2")
        return env

    def _node_ports(self) -> list[str]:
        return [f"--node-manager-port={next(self.ports)}",
                f"--object-manager-port={next(self.ports)}",
                f"--dashboard-agent-listen-port={next(self.ports)}",
                f"--dashboard-agent-grpc-port={next(self.ports)}",
                f"--runtime-env-agent-port={next(self.ports)}",
                f"--metrics-export-port={next(self.ports)}"]

    def _start(self, role: str, args: list[str]) -> None:
        with open(self.root / f"ray-{role}.log", "w") as log:
            process = subprocess.Popen([str(BIN / "ray"), "start", *args, "--disable-usage-stats"],
                                       env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.groups[role] = process.pid
        self.starts[role] = process

    def start(self) -> None:
        """Both at once: the worker's ``ray start`` waits for the head's GCS."""
        self._start("head", ["--head", f"--port={self.gcs.rsplit(':', 1)[1]}", "--num-cpus=1",
                             f"--temp-dir={self.temp}", "--include-dashboard=false",
                             f"--dashboard-port={next(self.ports)}",
                             f"--ray-client-server-port={next(self.ports)}",
                             *self._node_ports()])
        self._start("worker", [f"--address={self.gcs}", "--num-cpus=2", *self._node_ports()])
        for role, process in self.starts.items():
            code = process.wait(timeout=180)
            log = (self.root / f"ray-{role}.log").read_text()
            assert code == 0, log[-3000:]

    def node_processes(self, role: str) -> set[int]:
        return processes({self.groups[role]})

    def stop(self) -> None:
        kill_and_wait(set(self.groups.values()))
        kill_and_wait(marker=str(self.temp))
        shutil.rmtree(self.temp, ignore_errors=True)


def test_worker_node_removed_mid_sweep(runs_home):
    epochs, name = 2000, "node-lost"  # trials last seconds: the kills land in them
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2, 0.3), seeds=(0,),
                               samples=400, checkpoint_every=50))
    nodes = TwoNodes(runs_home)
    reader = LedgerReader(ledger_url_of(runs_home))
    driver = None
    try:
        nodes.start()
        env = cli_env(nodes.gcs, RAY_TMPDIR=str(nodes.temp), RAY_AUTH_MODE="disabled")
        driver = Cli(runs_home, ["sweep", "run", str(spec), "--quiet", "--pack", "1",
                                 "--format", "json"], env)

        def on_worker_node():
            worker_node = nodes.node_processes("worker")
            return [t for t in reader.trials(name, [RUNNING])
                    if t.worker and t.last_step >= 100 and worker_pid(t) in worker_node]

        lost = wait_for(on_worker_node, timeout=120)
        assert driver.process.poll() is None, driver.output()
        kill_and_wait({nodes.groups["worker"]})  # the node: its raylet, agents and workers
        code = driver.wait(180)
        assert code == 0, driver.output()
    finally:
        reader.close()
        if driver is not None:
            driver.kill()
        nodes.stop()
    assert_invariants(runs_home, name, epochs, finished=4)
    ledger = ledger_for_home(runs_home)
    assert_one_run_per_trial(client_for(runs_home), ledger, name)
    trials = {t.key: t for t in ledger_ops.trials_of(ledger, ledger_ops.find_sweep(ledger,
                                                                                  name).id)}
    for trial in lost:  # retried in the run it had, on the head's CPU
        assert trials[trial.key].retries >= 1, trials[trial.key]
        assert trials[trial.key].run_id == trial.run_id
