"""The writer's parallel batches through a real `mlflow server` (SQLite behind, 2 workers),
killed and restarted mid-recording: nothing lost, nothing twice, no run ended before its
metrics, read back through MlflowClient.

The fault: a SIGKILL of the server's process group, in the flush that ends the runs, right
after the server accepted one of their chunks (with the run's end tags), whose answer the
writer then never sees (the relay of tests/runner/test_outages.py drops such answers on
the wire; here the writer's client drops it, the server really being gone), while the
writer's other threads have requests in flight; the server restarts on its port 1.5 s
later. The writer is driven as the driver drives it, ``with_retry(writer.flush)``;
MLflow's own HTTP retries are off (conftest).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from local_services import MlflowServer
from mlflow import MlflowClient

from nnchain.tracking.metrics import THREADS_ENV, Block, MetricWriter, server_threads
from nnchain.tracking.retry import with_retry
from nnchain.tracking.store import open_client

RUNS, ROUNDS, STEPS = 24, 3, 150  # steps a run a round
KEYS = ("train_cost", "train_accuracy", "grad_norm/layer1", "grad_norm/layer2")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), workers=2)
    open_client(f"sqlite:///{server.db_file}")  # made as nnchain makes a store (WAL)
    server.start()
    yield server
    server.kill()


class Faults:
    """Wraps the writer's ``client.log_batch`` (the real call goes through) to take the
    server down right after an exact request was accepted, its answer lost: kill it,
    restart it ``down_s`` later from a thread."""

    def __init__(self, server: MlflowServer, client: MlflowClient, down_s: float = 1.5) -> None:
        self.server, self.client, self.down_s = server, client, down_s
        self.real = client.log_batch
        self.calls, self.armed = 0, None  # armed: the call whose answer is lost
        self.fired: list[str] = []
        self.finished_while_down: dict[str, int] = {}
        self.lock = threading.Lock()
        self.restarts: list[threading.Thread] = []
        client.log_batch = self.log_batch

    def arm(self, after_calls: int) -> None:
        with self.lock:
            self.armed = self.calls + after_calls

    def log_batch(self, run_id, **kwargs):
        with self.lock:
            self.calls += 1
            fire = self.calls == self.armed
        result = self.real(run_id, **kwargs)
        if fire:  # accepted; the answer never reaches the writer
            self._outage()
            raise ConnectionError("the server went away before its answer")
        return result

    def _outage(self) -> None:
        self.server.kill()
        self.fired.append("down")
        self.finished_while_down.update(_finished_runs(self.server.db_file))
        restart = threading.Thread(target=self._restart, daemon=True)
        self.restarts.append(restart)
        restart.start()

    def _restart(self) -> None:
        time.sleep(self.down_s)
        self.server.start()
        self.fired.append("up")


def _finished_runs(db_file: Path) -> dict[str, int]:
    """FINISHED runs in the store and how many metric values each holds, read from the
    SQLite file itself while the server is down."""
    connection = sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, timeout=30)
    try:
        return dict(connection.execute(
            "SELECT r.run_uuid, COUNT(m.key) FROM runs r LEFT JOIN metrics m ON "
            "m.run_uuid = r.run_uuid WHERE r.status = 'FINISHED' GROUP BY r.run_uuid"))
    finally:
        connection.close()


def _value(run: int, key: int, step: int) -> float:
    return run * 1000.0 + key + step / 1024  # exact in binary: a changed value shows


def test_threads_only_for_a_tracking_server(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "6")
    assert server_threads("http://127.0.0.1:5000") == 6
    assert server_threads("sqlite:///x/mlflow.db") == 1
    monkeypatch.setenv(THREADS_ENV, "0")
    assert server_threads("https://mlflow.example") == 1
    monkeypatch.delenv(THREADS_ENV)
    assert server_threads("http://127.0.0.1:5000") == 4


@pytest.mark.slow
def test_parallel_batches_through_a_server_restart_lose_and_duplicate_nothing(
        server, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "4")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    client = MlflowClient(server.url)
    experiment = client.create_experiment("server-batches")
    runs = []
    for index in range(RUNS):
        run_id = client.create_run(experiment, run_name=f"trial-{index}").info.run_id
        client.update_run(run_id, status="SCHEDULED")
        runs.append(run_id)
    writer_client = MlflowClient(server.url)
    writer = MetricWriter(writer_client, server.url)
    assert writer.tables is None and writer.threads == 4
    faults = Faults(server, writer_client)
    stamp = int(time.time() * 1000)
    try:
        for round_ in range(ROUNDS):
            first = round_ * STEPS
            for index, run_id in enumerate(runs):
                if round_ == 0:
                    writer.start_run(run_id, {"nnchain.attempt": "1"})
                writer.add(Block(run_id, first, {
                    key: [_value(index, k, step) for step in range(first, first + STEPS)]
                    for k, key in enumerate(KEYS)},
                    [stamp + step for step in range(first, first + STEPS)]))
                if round_ == ROUNDS - 1:
                    writer.end_run(run_id, "FINISHED", {"nnchain.status_reason": f"done {index}"})
            if round_ == ROUNDS - 1:  # mid-flush, with runs ending in it
                faults.arm(RUNS // 2)
            with_retry(writer.flush, deadline=90, what="the MLflow server")
            assert writer.pending_values == 0
    finally:
        for restart in faults.restarts:
            restart.join(timeout=120)
        writer.dispose()
    assert faults.fired == ["down", "up"], faults.fired
    assert server.process.poll() is None

    # a run ended while the server was down already had every value it would ever get
    total = ROUNDS * STEPS * len(KEYS)
    assert all(count == total for count in faults.finished_while_down.values()), \
        faults.finished_while_down

    reader = MlflowClient(server.url)
    found = {r.info.run_id: r for r in reader.search_runs([experiment], max_results=1000)}
    assert set(found) == set(runs)
    histories = {(run_id, key): reader.get_metric_history(run_id, key)
                 for run_id in runs for key in KEYS}
    twice = {pair: len(h) - len({m.step for m in h}) for pair, h in histories.items()}
    assert not any(twice.values()), {pair: n for pair, n in twice.items() if n}
    missing = {pair: ROUNDS * STEPS - len(h) for pair, h in histories.items()}
    assert not any(missing.values()), {pair: n for pair, n in missing.items() if n}
    for index, run_id in enumerate(runs):
        run = found[run_id]
        assert run.info.status == "FINISHED" and run.info.end_time is not None, run.info
        assert run.data.tags["nnchain.attempt"] == "1"
        assert run.data.tags["nnchain.status_reason"] == f"done {index}"
        for k, key in enumerate(KEYS):
            assert {(m.step, m.value, m.timestamp) for m in histories[run_id, key]} == {
                (step, _value(index, k, step), stamp + step) for step in range(ROUNDS * STEPS)}
        assert run.data.metrics == {key: _value(index, k, ROUNDS * STEPS - 1)
                                    for k, key in enumerate(KEYS)}


@pytest.mark.slow
def test_a_flush_the_server_refuses_keeps_everything_for_the_next(server, monkeypatch):
    """The server down for a whole flush: it raises, nothing is ended, every value stays
    buffered, and the next flush writes the metrics and the ends."""
    monkeypatch.setenv(THREADS_ENV, "4")
    client = MlflowClient(server.url)
    experiment = client.create_experiment("server-down")
    runs = [client.create_run(experiment).info.run_id for _ in range(6)]
    writer = MetricWriter(client, server.url)
    try:
        for run_id in runs:
            writer.add(Block(run_id, 0, {"train_cost": [0.5, 0.25]}, [1000, 1001]))
            writer.end_run(run_id, "FAILED", {"nnchain.status_reason": "diverged"})
        server.kill()
        with pytest.raises(Exception) as failure:  # noqa: PT011 - MLflow's or requests'
            writer.flush()
        assert "connect" in str(failure.value).lower()
        assert writer.pending_values == 2 * len(runs)
        assert not set(_finished_runs(server.db_file)) & set(runs)
        connection = sqlite3.connect(f"file:{server.db_file}?mode=ro", uri=True)
        try:
            statuses = dict(connection.execute(
                "SELECT run_uuid, status FROM runs WHERE run_uuid IN "
                f"({', '.join('?' * len(runs))})", runs))
        finally:
            connection.close()
        assert set(statuses.values()) == {"RUNNING"}, statuses
        server.start()
        writer.flush()
        assert writer.pending_values == 0
    finally:
        if server.process.poll() is not None:
            server.start()
        writer.dispose()
    for run_id in runs:
        run = client.get_run(run_id)
        assert run.info.status == "FAILED" and run.data.tags["nnchain.status_reason"] == \
            "diverged"
        assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train_cost")] \
            == [(0, 0.5), (1, 0.25)]
