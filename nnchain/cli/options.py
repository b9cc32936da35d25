"""Options shared by several commands, declared once."""

from __future__ import annotations

import click

tracking_uri = click.option(
    "--tracking-uri", envvar="MLFLOW_TRACKING_URI", default=None, metavar="URI",
    help="MLflow store: sqlite:///file.db, postgresql://..., http://server, or a directory "
         "[default: ./nnchain-runs/, env MLFLOW_TRACKING_URI]")

overrides = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a spec key, value read as YAML (train.lr=0.3). Repeatable.")

output_format = click.option(
    "--format", "output_format", type=click.Choice(["table", "json"]), default="table",
    show_default=True, help="How the result is printed on stdout.")

ledger_url = click.option(
    "--ledger-url", envvar="NNCHAIN_LEDGER_URL", default=None, metavar="URL",
    help="The sweep ledger (SQLAlchemy URL) [default: beside the MLflow store, "
         "env NNCHAIN_LEDGER_URL]")

address = click.option(
    "--address", envvar="RAY_ADDRESS", default=None, metavar="ADDR",
    help="Ray cluster to join (host:port or auto) [default: a local Ray started on demand, "
         "env RAY_ADDRESS]")
