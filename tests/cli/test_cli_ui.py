"""``nnchain ui`` as a real server process: it answers HTTP, stops its whole process group on
SIGTERM or Ctrl-C without a traceback, and refuses a store that is not there."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnchain.cli.main import main
from nnchain.cli.ui_app import CHOICE_KEY, START_PATH
from nnchain.tracking.store import (
    KIND_TAG,
    artifact_root,
    experiment_id,
    open_client,
    resolve_tracking_uri,
)

EXPERIMENT = "ui-check"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nobody listens on it (closed connections may linger in TIME_WAIT, as after any
    server; SO_REUSEADDR binds past them as servers do)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) of process group ``pgid``, read from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A directory store holding one experiment made the way sweeps make them."""
    home = tmp_path_factory.mktemp("ui") / "nnchain-runs"
    uri = resolve_tracking_uri(str(home))
    experiment_id(open_client(uri), EXPERIMENT, artifact_root(uri))
    return home


class UiProcess:
    """``python -m nnchain ui`` on a free port; its stdout lines collected by a thread."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
        env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
        env.pop("MLFLOW_TRACKING_URI", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nnchain", "ui", "--tracking-uri", str(store), "--port",
             str(self.port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stdout),
                         daemon=True).start()

    def wait_for_url(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while not self.lines:
            assert self.process.poll() is None, self.process.stderr.read()
            assert time.monotonic() < deadline, "nnchain ui printed no address"
            time.sleep(0.1)
        return self.lines[0].strip()

    def server_group(self) -> int:
        (server,) = children_of(self.process.pid)
        return os.getpgid(server)

    def stop(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=30)
        return code, self.process.stderr.read()


@pytest.mark.parametrize("signum, expected", [(signal.SIGTERM, 0), (signal.SIGINT, 130)],
                         ids=["sigterm", "ctrl-c"])
def test_ui_serves_and_stops_its_whole_group(store, signum, expected):
    ui = UiProcess(store)
    try:
        url = ui.wait_for_url()
        assert url == f"http://127.0.0.1:{ui.port}{START_PATH}"
        with urllib.request.urlopen(url, timeout=10) as start:  # served by the same server
            assert CHOICE_KEY in start.read().decode()
        group = ui.server_group()
        assert group != os.getpgid(ui.process.pid)  # its own group: Ctrl-C reaches ui only
        answer = urllib.request.urlopen(
            f"http://127.0.0.1:{ui.port}/api/2.0/mlflow/experiments/get-by-name"
            f"?experiment_name={EXPERIMENT}", timeout=10)
        tags = {t["key"]: t["value"] for t in json.load(answer)["experiment"].get("tags", [])}
        assert KIND_TAG in tags  # the experiment's kind, as MLflow's API reports it
        code, stderr = ui.stop(signum)
    finally:
        if ui.process.poll() is None:
            ui.process.kill()
    assert code == expected, stderr
    assert "Traceback" not in stderr, stderr
    assert group_members(group) == []
    assert port_is_free(ui.port)


def test_ui_refuses_a_missing_store_and_creates_nothing(runs_home):
    result = CliRunner().invoke(main, ["ui", "--port", str(free_port())])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tracking-uri" in lines[0] and "--create" in lines[0]
    assert not (runs_home / "nnchain-runs").exists()


def test_ui_refuses_a_port_in_use(store):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["ui", "--tracking-uri", str(store),
                                           "--port", str(port)])
    assert result.exit_code == 2 and "--port" in result.stderr


def test_the_start_page_is_served_only_with_the_tested_mlflow(monkeypatch, capsys):
    from nnchain import versions
    from nnchain.cli import ui

    monkeypatch.setattr(versions, "_said", set())
    assert ui._start_page_available()  # this install: the tested MLflow, its entry point
    monkeypatch.setattr(versions, "installed_version", lambda lib: "3.99.0")
    assert not ui._start_page_available()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLflow 3.99.0 is not a version" in err
