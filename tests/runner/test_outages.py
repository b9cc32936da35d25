"""Stores going away mid-sweep: the MLflow tracking server killed for 10 s, PostgreSQL restarted.

The driver retries its writes with backoff through the outage (``with_retry``); the sweep
completes, nothing is lost or duplicated, and ``nnchain sweep verify`` passes, checked
again through MLflow's own client on the same store. A relay in front of the tracking
server (``Proxy``) places a fault at an exact point of the driver's conversation with it:
the server killed between two requests, one answer lost after the server handled the
request, an outage a reaper looks at while the driver waits it out.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from local_services import MlflowServer, free_ports
from mlflow import MlflowClient
from support import wait_for
from test_chaos import LedgerReader, chaos_spec

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
    parents = [r for r in runs if r.data.tags.get("nnchain.kind") == "sweep"]
    assert [r.info.run_id for r in parents] == [sweep.parent_run_id]
    assert parents[0].data.params["sweep.trials"] == str(sweep.trial_count)
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
    """Once a trial has progressed, take the store down, wait ``seconds``, bring it up."""

    def __init__(self, ledger_url: str, sweep_name: str, take_down, bring_up,
                 seconds: float) -> None:
        super().__init__(daemon=True)
        self.reader = LedgerReader(ledger_url)
        self.sweep_name, self.seconds = sweep_name, seconds
        self.take_down, self.bring_up = take_down, bring_up  # not _stop: Thread has its own
        self.times: dict[str, float] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_for(lambda: any(t.last_step >= 100 for t in
                                 self.reader.trials(self.sweep_name, [RUNNING])), timeout=120)
            self.reader.close()
            self.times["down"] = time.monotonic()
            self.take_down()
            time.sleep(self.seconds)
            self.bring_up()
            self.times["up"] = time.monotonic()
        except BaseException as error:  # noqa: BLE001 - reported by the test
            self.error = error
        finally:
            self.reader.close()


# ---- 7a. the MLflow tracking server killed for 10 s and restarted on its port -------------
class _Relay(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _relay(self) -> None:
        proxy: Proxy = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path = self.path.split("?", 1)[0]
        if proxy.down.is_set():
            self.close_connection = True  # the client sees its connection dropped
            return
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "connection", "content-length")}
        upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        except OSError:
            self.close_connection = True
            return
        finally:
            upstream.close()
        rule = proxy.take_rule(self.command, path)
        if rule == "drop":  # handled by the server, the answer lost on the way
            proxy.dropped.append((self.command, path))
            self.close_connection = True
            return
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if rule == "go down":  # the answer delivered, then nothing more gets through
            proxy.down.set()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _relay


class Proxy(ThreadingHTTPServer):
    """A relay in front of the MLflow server that can drop one answer of a chosen request
    (handled by the server, lost on the way back) or cut all traffic after one, so that a
    fault lands at an exact point of the driver's conversation with the store."""

    daemon_threads = True

    def __init__(self, upstream_port: int) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream_port = upstream_port
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.down = threading.Event()
        self.rules: dict[tuple[str, str], str] = {}
        self.dropped: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def arm(self, method: str, path: str, rule: str) -> None:
        with self._lock:
            self.rules[(method, path)] = rule

    def take_rule(self, method: str, path: str) -> str | None:
        with self._lock:
            return self.rules.pop((method, path), None)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory):
    """One tracking server for the module's tests (each records its own sweep in it)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), free_ports(1)[0])
    server.start()
    yield server
    server.kill()


@pytest.fixture
def mlflow_server(shared_server) -> MlflowServer:
    """The module's tracking server, up (a test before may have left it killed)."""
    if shared_server.process.poll() is not None:
        shared_server.start()
    return shared_server


def test_tracking_server_killed_for_10_s(runs_home, ray_local, mlflow_server, capfd):
    epochs, name = 400, "server-outage"
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2), seeds=(0, 1),
                               samples=400, checkpoint_every=50))
    server = mlflow_server
    ledger_url = f"sqlite:///{runs_home / 'ledger.db'}"
    proxy = Proxy(server.port)

    def take_down() -> None:
        """Between two of the driver's requests (the answer of a metrics write delivered,
        nothing after it gets through), kill the server."""
        proxy.arm("POST", LOG_BATCH, "go down")
        assert proxy.down.wait(60), "no metrics written after the trigger"
        server.kill()

    def bring_up() -> None:
        server.start()
        proxy.down.clear()

    try:
        outage = Outage(ledger_url, name, take_down, bring_up, seconds=10.0)
        outage.start()
        result = run_sweep(str(spec), [], SweepOptions(tracking_uri=proxy.url,
                                                       ledger_url=ledger_url, pack=1))
        ended = time.monotonic()
        outage.join(timeout=120)
        assert outage.error is None, outage.error
        err = capfd.readouterr().err
        assert result.status == "FINISHED", (result.counts, err[-3000:])
        assert "unavailable" in err and "reachable again" in err, err[-3000:]
        assert ended > outage.times["up"], "the sweep ended before the server came back"
        assert server.process.poll() is None, server.log.read_text()[-3000:]
        assert_invariants_at(server.url, ledger_url, name, epochs, finished=6)
    finally:
        proxy.close()


def test_lost_answers_are_retried_without_duplicates(runs_home, ray_local, mlflow_server):
    """Each kind of write the driver makes while trials run has its answer lost once (the
    server handled it, the connection dropped before the reply): retrying it must not
    record anything twice."""
    epochs, name = 300, "lost-answers"
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2), seeds=(0, 1),
                               samples=300, checkpoint_every=50))
    server = mlflow_server
    ledger_url = f"sqlite:///{runs_home / 'ledger.db'}"
    proxy = Proxy(server.port)
    writes = [("POST", "/api/2.0/mlflow/runs/create"), ("POST", LOG_BATCH),
              ("POST", "/api/2.0/mlflow/runs/update")]
    reader = LedgerReader(ledger_url)

    def arm_when_running() -> None:
        wait_for(lambda: reader.trials(name, [RUNNING]), timeout=120)
        reader.close()
        for method, path in writes:
            proxy.arm(method, path, "drop")

    arming = threading.Thread(target=arm_when_running, daemon=True)
    arming.start()
    try:
        result = run_sweep(str(spec), [], SweepOptions(tracking_uri=proxy.url,
                                                       ledger_url=ledger_url, pack=1))
        arming.join(timeout=10)
        assert sorted(proxy.dropped) == sorted(writes), proxy.dropped
        assert result.status == "FINISHED", result.counts
        assert_invariants_at(server.url, ledger_url, name, epochs, finished=6)
    finally:
        reader.close()
        proxy.close()


def test_lost_answer_of_the_parent_run_create(runs_home, ray_local, mlflow_server):
    """The first create of a sweep, its parent run's, has its answer lost: the retry takes
    the run it made, and the sweep has one parent with its params."""
    epochs, name = 100, "lost-parent"
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.1, 0.2), seeds=(0,), samples=200,
                               checkpoint_every=50))
    ledger_url = f"sqlite:///{runs_home / 'ledger.db'}"
    proxy = Proxy(mlflow_server.port)
    proxy.arm("POST", "/api/2.0/mlflow/runs/create", "drop")
    try:
        result = run_sweep(str(spec), [], SweepOptions(tracking_uri=proxy.url,
                                                       ledger_url=ledger_url))
        assert proxy.dropped == [("POST", "/api/2.0/mlflow/runs/create")]
        assert result.status == "FINISHED", result.counts
        assert_invariants_at(mlflow_server.url, ledger_url, name, epochs, finished=2)
    finally:
        proxy.close()


def test_a_sweep_waiting_out_an_outage_is_not_reaped(runs_home, ray_local, mlflow_server):
    """The store away for 6 s (twice the grace here; a 2-minute outage against the default
    60 s): once it is back, ``sweep status`` (the reaper) must not take the live sweep for a
    dead one, or a `sweep resume` would then run it a second time."""
    from nnchain.runner.reaper import reap_with_store

    epochs, name = 300, "outage-heartbeat"
    spec = runs_home / "s.yaml"
    spec.write_text(chaos_spec(name, epochs, lrs=(0.05, 0.1, 0.2), seeds=(0, 1),
                               samples=300, checkpoint_every=50))
    server = mlflow_server
    ledger_url = f"sqlite:///{runs_home / 'ledger.db'}"
    proxy = Proxy(server.port)
    seen: dict = {}

    def take_down() -> None:
        proxy.arm("POST", LOG_BATCH, "go down")
        assert proxy.down.wait(60), "no metrics written after the trigger"

    def bring_up() -> None:
        proxy.down.clear()
        ledger = open_ledger(ledger_url, create=False)
        try:
            seen["reaped"] = reap_with_store(ledger, proxy.url, grace=3.0)
            seen["status"] = ledger_ops.find_sweep(ledger, name).status
        finally:
            ledger.dispose()

    try:
        outage = Outage(ledger_url, name, take_down, bring_up, seconds=6.0)
        outage.start()
        result = run_sweep(str(spec), [], SweepOptions(tracking_uri=proxy.url,
                                                       ledger_url=ledger_url, pack=1))
        outage.join(timeout=120)
        assert outage.error is None, outage.error
        assert seen == {"reaped": [], "status": "RUNNING"}, seen
        assert result.status == "FINISHED", result.counts
        assert_invariants_at(server.url, ledger_url, name, epochs, finished=6)
    finally:
        proxy.close()


# ---- 7b. PostgreSQL restarted mid-sweep ----------------------------------------------------
def _pg_cluster() -> list[str]:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if os.geteuid() != 0 or not versions or shutil.which("pg_ctlcluster") is None:
        return []
    return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main"]


def _pg_ctl(cluster: list[str], action: str) -> subprocess.CompletedProcess:
    return subprocess.run([*cluster, action], capture_output=True, text=True, timeout=120)


@pytest.fixture
def restartable_pg_url():
    """conftest's ``pg_url``, with engines that survive the server's restart (pre-ping):
    a fresh PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy

    admin_url = os.environ.get("NNCHAIN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT",
                                     pool_pre_ping=True)
    try:
        with admin.connect():
            pass
    except Exception:  # noqa: BLE001 - no server: skip
        pytest.skip(f"PostgreSQL not reachable at {admin_url}")
    name = f"nnchain_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def test_postgresql_restarted_mid_sweep(runs_home, ray_local, restartable_pg_url, capfd):
    cluster = _pg_cluster()
    if not cluster:
        pytest.skip("restarting PostgreSQL needs root and pg_ctlcluster")
    pg_url = restartable_pg_url
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
        ended = time.monotonic()
        outage.join(timeout=120)
        assert outage.error is None, outage.error
        assert restarted and restarted[0].returncode == 0, restarted
        assert ended > outage.times["up"], "the sweep ended before PostgreSQL was back"
        err = capfd.readouterr().err
        assert result.status == "FINISHED", (result.counts, err[-3000:])
        assert "unavailable" in err and "reachable again" in err, err[-3000:]
        assert_invariants_at(pg_url, pg_url, name, epochs, finished=8)
    finally:
        if _pg_ctl(cluster, "status").returncode != 0:
            _pg_ctl(cluster, "start")
