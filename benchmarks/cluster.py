"""Many nodes (issue 17): the scale sweep on three ``ray start`` nodes of this machine, then
the same sweep with its driver killed mid-way and resumed there.

    MLFLOW_DISABLE_TELEMETRY=true RAY_USAGE_STATS_ENABLED=0 \\
        .venv/bin/python benchmarks/cluster.py [--trials 10000] [--epochs 20] [--kill-at 0.4]

A head and two worker nodes, 1 CPU each (``ray start``, in a temp dir of their own, on
free ports of 127.0.0.1). Two sweeps of ``scale.py``'s tiny trials go to it with
``--address``:

1. run to its end: wall time beside the same trainings in a sequential loop, and which
   nodes the trials ran on (each trial's worker process, as the ledger recorded it, and
   that process's parent, the raylet of its node);
2. its driver killed (SIGKILL) once ``--kill-at`` of its trials are recorded, then
   ``nnchain sweep resume``, then ``nnchain sweep verify``, whose verdict is printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).parent))

from scale import loop_seconds, spec_text  # noqa: E402

BIN = Path(sys.executable).parent


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class ThreeNodes:
    """A head and two workers, 1 CPU each, each ``ray start`` in its own session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.temp = Path(tempfile.mkdtemp(prefix="nnc-", dir="/tmp"))  # short: socket paths
        self.ports = iter(free_ports(30))
        self.gcs = f"127.0.0.1:{next(self.ports)}"
        self.groups: list[int] = []

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "NNCHAIN_"))}
        env.update(RAY_TMPDIR=str(self.temp), RAY_USAGE_STATS_ENABLED="0",
                   RAY_AUTH_MODE="disabled", MLFLOW_DISABLE_TELEMETRY="true",
                   PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        return env

    def _node_ports(self) -> list[str]:
        return [f"--node-manager-port={next(self.ports)}",
                f"--object-manager-port={next(self.ports)}",
                f"--dashboard-agent-listen-port={next(self.ports)}",
                f"--dashboard-agent-grpc-port={next(self.ports)}",
                f"--runtime-env-agent-port={next(self.ports)}",
                f"--metrics-export-port={next(self.ports)}"]

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"ray-{name}.log", "w")  # noqa: SIM115 - the node's life
        process = subprocess.Popen([str(BIN / "ray"), "start", *args, "--num-cpus=1",
                                    "--disable-usage-stats"], env=self.env(), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        self.groups.append(process.pid)
        return process

    def start(self) -> None:
        head = self._start("head", ["--head", f"--port={self.gcs.rsplit(':', 1)[1]}",
                                    f"--temp-dir={self.temp}", "--include-dashboard=false",
                                    f"--dashboard-port={next(self.ports)}",
                                    f"--ray-client-server-port={next(self.ports)}",
                                    *self._node_ports()])
        if head.wait(timeout=180) != 0:
            raise SystemExit((self.root / "ray-head.log").read_text()[-3000:])
        for i in (1, 2):  # one after the other: two at once time out on a loaded machine
            worker = self._start(f"worker{i}", [f"--address={self.gcs}",
                                                f"--temp-dir={self.temp}", *self._node_ports()])
            if worker.wait(timeout=180) != 0:
                raise SystemExit((self.root / f"ray-worker{i}.log").read_text()[-3000:])

    def stop(self) -> None:
        """Kill this cluster's processes only: each ``ray start``'s session group, then any
        process left whose command line names this cluster's temp dir. (``ray stop`` would
        stop every Ray on the machine, other sweeps' and test suites' too.)"""
        for pid in self.groups:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        marker = str(self.temp).encode()
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass


def cli(args: list[str], home: Path, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnchain", *args], cwd=home, env=env,
                          capture_output=True, text=True, **kwargs)


def trial_workers(home: Path, name: str) -> list[int]:
    """The worker pid of each trial of sweep ``name`` that started, from the ledger."""
    path = home / "nnchain-runs" / "ledger.db"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as connection:
            rows = connection.execute(
                "SELECT t.worker FROM nnchain_trials t JOIN nnchain_sweeps s "
                "ON s.id = t.sweep_id WHERE s.name = ?", (name,)).fetchall()
    except sqlite3.Error:
        return []
    return [int(worker.rsplit(":", 1)[1]) for (worker,) in rows if worker]


def run_watching_nodes(args: list[str], home: Path, env: dict, name: str
                       ) -> tuple[float, subprocess.CompletedProcess, dict[int, int]]:
    """Run a sweep; while it runs, map each worker process the ledger names to its parent,
    the raylet of its node (a sweep's workers exit with its driver)."""
    raylet_of: dict[int, int] = {}
    out = tempfile.TemporaryFile(mode="w+")
    clock = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "nnchain", *args], cwd=home, env=env,
                               stdout=out, stderr=subprocess.STDOUT, text=True)
    while process.poll() is None:
        for pid in set(trial_workers(home, name)) - set(raylet_of):
            parent = parent_of(pid)
            if parent is not None:
                raylet_of[pid] = parent
        time.sleep(0.5)
    wall = time.perf_counter() - clock
    out.seek(0)
    done = subprocess.CompletedProcess(args, process.returncode, out.read(), "")
    return wall, done, raylet_of


def parent_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def finished_count(home: Path, name: str) -> int:
    path = home / "nnchain-runs" / "ledger.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute(
                "SELECT COUNT(*) FROM nnchain_trials t JOIN nnchain_sweeps s "
                "ON s.id = t.sweep_id WHERE s.name = ? AND t.state = 'FINISHED'",
                (name,)).fetchone()[0]
    except sqlite3.Error:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--kill-at", type=float, default=0.4)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="nnchain-cluster-"))
    nodes = ThreeNodes(home)
    started = time.perf_counter()
    try:
        nodes.start()
        print(f"three nodes up in {time.perf_counter() - started:.1f} s (load "
              f"{os.getloadavg()[0]:.1f})", flush=True)
        env = dict(nodes.env(), RAY_ADDRESS=nodes.gcs)
        spec = home / "spec.yaml"
        spec.write_text(spec_text(args.trials, args.epochs))
        loop = loop_seconds(spec)
        name = f"scale-{args.trials}"
        wall, done, raylet_of = run_watching_nodes(
            ["sweep", "run", str(spec), "--quiet", "--max-trials", str(args.trials)], home,
            env, name)
        if done.returncode != 0:
            raise SystemExit(done.stdout[-3000:])
        raylets = Counter(raylet_of.get(pid) for pid in trial_workers(home, name))
        print(f"{args.trials} trials on 3 nodes: wall {wall:.1f} s, loop {loop:.1f} s "
              f"({wall / loop:.1f}x); trials by node (its raylet's pid; None: a worker gone "
              f"before it was seen): {dict(raylets)}", flush=True)

        killed = spec.with_name("killed.yaml")
        killed.write_text(spec_text(args.trials, args.epochs).replace(
            f"name: scale-{args.trials}", f"name: killed-{args.trials}"))
        kill_name = f"killed-{args.trials}"
        driver = subprocess.Popen([sys.executable, "-m", "nnchain", "sweep", "run",
                                   str(killed), "--quiet", "--max-trials", str(args.trials)],
                                  cwd=home, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        while finished_count(home, kill_name) < args.kill_at * args.trials:
            if driver.poll() is not None:
                raise SystemExit("the sweep ended before its kill")
            time.sleep(0.2)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        at_kill = finished_count(home, kill_name)
        clock = time.perf_counter()
        resumed = cli(["sweep", "resume", kill_name, "--quiet", "--format", "json"], home, env)
        resume_wall = time.perf_counter() - clock
        verdict = cli(["sweep", "verify", kill_name], home, env)
        print(f"driver killed at {at_kill} finished trials; resume exit {resumed.returncode} "
              f"in {resume_wall:.1f} s; verify exit {verdict.returncode}: "
              f"{(verdict.stdout + verdict.stderr).strip().splitlines()[-1:]}", flush=True)
        if resumed.returncode != 0:
            print(resumed.stderr[-3000:])
    finally:
        nodes.stop()


if __name__ == "__main__":
    main()
