"""``nnchain ui``: the MLflow UI on the same store the runs went to."""

from __future__ import annotations

import os
import subprocess
import sys

import click

from nnchain.cli import options


@click.command()
@options.tracking_uri
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind; the default keeps the UI on this machine.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def ui(tracking_uri: str | None, host: str, port: int) -> None:
    """Start the MLflow UI on the store (default ./nnchain-runs/). Ctrl-C stops it."""
    from nnchain.errors import SpecError
    from nnchain.tracking.store import artifact_root, open_client, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith(("http://", "https://")):
        raise SpecError("--tracking-uri", f"must be a database store for `nnchain ui`; {uri} is "
                                          "a tracking server, open it in a browser instead")
    open_client(uri)  # created or checked here, so the server does not migrate it
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
               "--host", host, "--port", str(port), "--workers", "1"]
    root = artifact_root(uri)
    if root:
        command += ["--default-artifact-root", root]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    click.echo(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C stops it", err=True)
    raise SystemExit(subprocess.call(command, env=env))
