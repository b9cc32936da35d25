"""``nnchain ui``: the MLflow UI on the same store the runs went to, run like a server.

The server is ``mlflow server --app-name nnchain``: MLflow's app plus nnchain's start page
(``nnchain.cli.ui_app``), the address printed on stdout.

``mlflow server`` runs in its own process group (its own session), so that a stop reaches
every process it started (the uvicorn worker included) and a terminal's Ctrl-C reaches
only this process. SIGINT and SIGTERM are forwarded to the group as SIGTERM (MLflow's
graceful stop); a group that has not stopped within ``STOP_GRACE`` seconds is killed.
Exit 0 after SIGTERM, 130 after Ctrl-C, the server's own code if it stops by itself,
2 on bad input (a store that does not exist without ``--create``, a port in use).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import click

from nnchain.cli import options
from nnchain.cli.ui_app import APP_NAME, start_url
from nnchain.exitcodes import EXIT_INTERRUPTED, EXIT_OK

STOP_GRACE = 10.0  # seconds a stopping server gets before its group is killed
READY_TIMEOUT = 120.0  # seconds to wait for the first HTTP answer before saying so


def _start_page_available() -> bool:
    """The start page writes a key of MLflow 3.17's UI (see ``ui_app``): served only with an
    MLflow of the tested versions, where this install registered its entry point (an
    install older than the page has none); else the plain server, said once."""
    from importlib.metadata import entry_points

    from nnchain.versions import TESTED, installed_version, is_tested, say_once

    if not is_tested("mlflow"):
        say_once(f"MLflow {installed_version('mlflow')} is not a version nnchain's start page "
                 f"was tested with ({TESTED['mlflow']}); experiments may open on MLflow's "
                 f"GenAI view: choose \"Model training\" at its top left")
        return False
    if not any(point.name == APP_NAME for point in entry_points(group="mlflow.app")):
        say_once("this install has no start page (reinstall nnchain: pip install -e .); "
                 "experiments may open on MLflow's GenAI view: choose \"Model training\"")
        return False
    return True


def server_url(host: str, port: int) -> str:
    """The server's address as a browser reaches it: a wildcard bind on the loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def store_exists(uri: str) -> bool:
    """Whether an MLflow store is already at ``uri``: an SQLite file, or a database with
    MLflow's tables. A database that cannot be reached counts as existing: opening it
    then says why in one line."""
    from nnchain.tracking.store import sqlite_path

    db_file = sqlite_path(uri)
    if db_file is not None:
        return db_file.is_file()
    from nnchain.tracking.mlflow_sql import has_mlflow_tables

    try:
        return has_mlflow_tables(uri)
    except Exception:  # noqa: BLE001 - unreachable: open_client says why
        return True


def _sweep_experiment(tracking_uri: str | None, ref: str) -> str:
    """The experiment id of the sweep ``ref`` (SpecError for an unknown sweep)."""
    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.ledger.store import open_existing_ledger

    ledger = open_existing_ledger(tracking_uri, None)
    try:
        return ledger_ops.find_sweep(ledger, ref).experiment_id
    finally:
        ledger.dispose()


def _check_port_free(host: str, port: int) -> None:
    from nnchain.errors import SpecError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SpecError("--port", f"must be free on {host}, {port} is not "
                                      f"({exc.strerror}); pick another with --port") from None


class _Server:
    """The ``mlflow server`` process group and the signals that stop it."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.stop_signal: int | None = None
        self.process: subprocess.Popen | None = None
        self._previous = {sig: signal.signal(sig, self._on_signal)
                          for sig in (signal.SIGINT, signal.SIGTERM)}
        # the server's logs go to stderr (fd 2): stdout carries only the address, the result
        self.process = subprocess.Popen(command, env=env, start_new_session=True,
                                        stdin=subprocess.DEVNULL, stdout=2)
        if self.stop_signal is not None:  # a stop that came while it was starting
            self._signal_group(signal.SIGTERM)

    def _on_signal(self, signum: int, frame) -> None:
        self.stop_signal = self.stop_signal or signum
        self._signal_group(signal.SIGTERM)

    def _signal_group(self, signum: int) -> None:
        if self.process is None:
            return  # not started: wait() sees stop_signal and starts nothing more
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is gone already

    def wait_ready(self, url: str) -> bool:
        """Poll ``url`` until it answers; False if the server stopped or was stopped first."""
        deadline = time.monotonic() + READY_TIMEOUT
        while self.stop_signal is None and self.process.poll() is None:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return True
            except OSError:
                if time.monotonic() > deadline:
                    click.echo(f"the MLflow server has not answered {url} yet; still waiting",
                               err=True)
                    deadline = float("inf")
                time.sleep(0.2)
        return False

    def wait(self) -> int:
        """Wait for the server to stop, then make sure nothing of its group is left."""
        killed_at = None
        while (code := self.process.poll()) is None:
            if self.stop_signal is not None:
                killed_at = killed_at or time.monotonic() + STOP_GRACE
                if time.monotonic() > killed_at:
                    self._signal_group(signal.SIGKILL)
            time.sleep(0.1)
        self._signal_group(signal.SIGKILL)  # a worker that outlived the leader
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.stop_signal == signal.SIGINT:
            return EXIT_INTERRUPTED
        if self.stop_signal is not None:
            return EXIT_OK
        return code


@click.command()
@options.tracking_uri
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; the default keeps the UI on this machine.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--create", is_flag=True,
              help="Create the store when it does not exist (default: refuse, exit 2).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="The server's worker processes (each a whole MLflow). Sweeps on this "
                   "store write it directly; when they record through this server "
                   "instead (--tracking-uri http://...), 2-4 write their batches at once.")
@click.argument("sweep_ref", metavar="[SWEEP]", required=False)
def ui(tracking_uri: str | None, host: str, port: int, create: bool, workers: int,
       sweep_ref: str | None) -> None:
    """Serve the MLflow UI on the store (default ./nnchain-runs/) until Ctrl-C or SIGTERM;
    with SWEEP (name or id), the address printed opens that sweep's experiment on its runs.

    The address to open is printed on stdout once the server answers: nnchain's start
    page, which sets a new browser's MLflow UI to "Model training" (experiments open on
    their runs table, not the GenAI overview) and goes on to the experiments list. Exit 0
    when stopped by SIGTERM, 130 by Ctrl-C, 2 on bad input (no store there without
    --create, port in use).
    """
    from nnchain.credentials import scrub
    from nnchain.errors import SpecError
    from nnchain.tracking.store import artifact_root, open_client, resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        raise SpecError("--tracking-uri", f"must be a database store for `nnchain ui`; {uri} is "
                                          "a tracking server, open it in a browser instead")
    if not create and not store_exists(uri):
        db_file = sqlite_path(uri)
        found = (f"there is none at {db_file}; run from the folder that holds nnchain-runs/, "
                 f"pass --tracking-uri" if db_file else
                 f"the database {scrub(uri)} has no MLflow tables")
        raise SpecError("--tracking-uri", f"must be an existing MLflow store, {found}; or add "
                                          f"--create to start an empty one")
    experiment = _sweep_experiment(tracking_uri, sweep_ref) if sweep_ref else None
    _check_port_free(host, port)
    open_client(uri)  # created or checked here, so the server does not migrate it
    # the store's URI (it may hold a password) reaches the server through its environment,
    # never its command line, which every user of this machine can read (ps, /proc)
    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
               "--workers", str(workers)]
    start_page = _start_page_available()
    if start_page:
        command += ["--app-name", APP_NAME]
    root = artifact_root(uri)
    if root:
        command += ["--default-artifact-root", root]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
               MLFLOW_BACKEND_STORE_URI=uri)
    db_file = sqlite_path(uri)
    store = str(db_file.parent if db_file and db_file.name == "mlflow.db" else scrub(uri))
    click.echo(f"MLflow UI on the store {store}; Ctrl-C stops it", err=True)
    server = _Server(command, env)
    url = server_url(host, port)
    if server.wait_ready(f"{url}/health"):
        # the result: where to point a browser
        click.echo(start_url(url, experiment) if start_page else
                   url + (f"/#/experiments/{experiment}/runs" if experiment else "/#/experiments"))
        sys.stdout.flush()
    raise SystemExit(server.wait())

