"""Stores going away mid-sweep: the MLflow tracking server killed for 10 s, PostgreSQL restarted.

The driver retries its writes with backoff through the outage (``with_retry``); the sweep
completes, nothing is lost or duplicated, and ``nnchain sweep verify`` passes, checked
again through MLflow's own client on the same store.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from test_chaos import LedgerReader, chaos_spec, wait_for
from test_cluster_faults import free_ports, kill_and_wait

from nnchain.cli.main import main
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import RUNNING
from nnchain.ledger.store import open_ledger
from nnchain.runner.sweep import SweepOptions, run_sweep

pytestmark = pytest.mark.slow


def assert_invariants_at(tracking_uri: str, ledger_url: str, sweep_name: str, epochs: int,
                         *, finished: int) -> None:
    """test_faults' ``assert_invariants`` for any store: verify, then MLflow's own view."""
    verified = CliRunner().invoke(main, ["sweep", "verify", sweep_name, "--tracking-uri",
                                         tracking_uri, "--ledger-url", ledger_url],
                                  catch_exceptions=False)
    assert verified.exit_code == 0, verified.output
    client = MlflowClient(tracking_uri)
    ledger = open_ledger(ledger_url, create=False)
    try:
        sweep = ledger_ops.find_sweep(ledger, sweep_name)
        trials = ledger_ops.trials_of(ledger, sweep.id)
    finally:
        ledger.dispose()
    runs = client.search_runs([sweep.experiment_id], max_results=5000,
                              filter_string=f"tags.`nnchain.sweep_id` = '{sweep.id}'")
    assert all(r.info.status != "RUNNING" for r in runs), [r.info.status for r in runs]
    children = [r for r in runs if r.data.tags.get("nnchain.kind") == "trial"]
    per_key = Counter(r.data.tags["nnchain.trial_key"] for r in children)
    assert len(per_key) == finished and set(per_key.values()) == {1}, per_key
    done = [r for r in children if r.info.status == "FINISHED"]
    assert len(done) == finished
    assert {t.key: t.run_id for t in trials} == \
        {r.data.tags["nnchain.trial_key"]: r.info.run_id for r in children}
    for run in done:
        for key in ("train_cost", "grad_norm/layer1"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == list(range(epochs)), (key, len(steps), len(set(steps)))
        assert "weights.npz" in [f.path for f in client.list_artifacts(run.info.run_id)]


class Outage(threading.Thread):
    """Once a trial has progressed, ``stop()`` the store, wait ``seconds``, ``start()`` it."""

    def __init__(self, ledger_url: str, sweep_name: str, stop, start, seconds: float) -> None:
        super().__init__(daemon=True)
        self.reader = LedgerReader(ledger_url)
        self.sweep_name, self._stop, self._start, self.seconds = sweep_name, stop, start, seconds
        self.times: dict[str, float] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_for(lambda: any(t.last_step >= 100 for t in
                                 self.reader.trials(self.sweep_name, [RUNNING])), timeout=120)
            self.reader.close()
            self.times["down"] = time.monotonic()
            self._stop()
            time.sleep(self.seconds)
            self._start()
            self.times["up"] = time.monotonic()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            self.reader.close()


# ---- 7a. the MLflow tracking server killed for 10 s and restarted on its port -------------
class MlflowServer:
    """``mlflow server`` on an SQLite store in ``root``, in its own session."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = root / "mlflow-server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        env.update(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", MLFLOW_DISABLE_TELEMETRY="true")
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                 f"sqlite:///{self.root / 'mlflow.db'}", "--artifacts-destination",
                 str(self.root / "artifacts"), "--host", "127.0.0.1", "--port",
                 str(self.port), "--workers", "1"], cwd=self.root, env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready()

    def wait_ready(self, seconds: float = 120.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"mlflow server not up in {seconds} s: "
                             f"{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the server and its uvicorn worker (its process group)."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)
        kill_and_wait({self.process.pid})


def test_tracking_server_killed_for_10_s(runs_home, ray_local, capfd):
    epochs, name = 600, "server-outage"
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2, 0.3), seeds=(0, 1),
                               samples=400, checkpoint_every=50))
    store = runs_home / "server"
    store.mkdir()
    server = MlflowServer(store, free_ports(1)[0])
    ledger_url = f"sqlite:///{runs_home / 'ledger.db'}"
    server.start()
    try:
        outage = Outage(ledger_url, name, server.kill, server.start, seconds=10.0)
        outage.start()
        result = run_sweep(str(spec), [], SweepOptions(tracking_uri=server.url,
                                                       ledger_url=ledger_url, pack=1))
        ended = time.monotonic()
        outage.join(timeout=120)
        assert outage.error is None, outage.error
        err = capfd.readouterr().err
        assert result.status == "FINISHED", (result.counts, err[-3000:])
        assert "unavailable" in err and "reachable again" in err, err[-3000:]
        assert ended > outage.times["up"], "the sweep ended before the server came back"
        assert_invariants_at(server.url, ledger_url, name, epochs, finished=8)
    finally:
        server.kill()


# ---- 7b. PostgreSQL restarted mid-sweep ----------------------------------------------------
def _pg_cluster() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if os.geteuid() != 0 or not versions or shutil.which("pg_ctlcluster") is None:
        return []
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _pg_ctl(cluster: list[str], action: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cluster, action], capture_output=True, text=True, timeout=120)


def test_postgresql_restarted_mid_sweep(runs_home, ray_local, pg_url, capfd):
    cluster = _pg_cluster()
    if not cluster:
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster")
    epochs, name = 600, "pg-restart"
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2, 0.3), seeds=(0, 1),
                               samples=400, checkpoint_every=50))
    restarted: list[subprocess.CompletedProcess] = []

    def restart() -> None:
        restarted.append(_pg_ctl(cluster, "restart"))

    try:
        outage = Outage(pg_url, name, restart, lambda: None, seconds=0.0)
        outage.start()
        result = run_sweep(str(spec), [], SweepOptions(tracking_uri=pg_url, pack=1))
        outage.join(timeout=120)
        assert outage.error is None, outage.error
        assert restarted and restarted[0].returncode == 0, restarted
        err = capfd.readouterr().err
        assert result.status == "FINISHED", (result.counts, err[-3000:])
        assert_invariants_at(pg_url, pg_url, name, epochs, finished=8)
    finally:
        if _pg_ctl(cluster, "status").returncode != 0:
            _pg_ctl(cluster, "start")
