"""``nnchain sweep verify SWEEP``: invariants 1-4 checked against MLflow and the ledger.

Exit codes: 0 every invariant holds, 1 violations found, 2 bad input (the main group
translates SpecError and StoreError).
"""

from __future__ import annotations

import json

import click

from nnchain.cli import options
from nnchain.cli.main import EXIT_FAILED, EXIT_OK
from nnchain.runner.identity import DEFAULT_GRACE_SECONDS


@click.command("verify")
@click.argument("sweep_ref", metavar="SWEEP")
@options.tracking_uri
@options.ledger_url
@click.option("--grace", type=click.FloatRange(min=0), default=DEFAULT_GRACE_SECONDS,
              show_default=True,
              help="Seconds without a heartbeat after which a RUNNING sweep counts as stopped.")
@options.output_format
@click.pass_context
def verify(ctx: click.Context, sweep_ref: str, tracking_uri: str | None,
           ledger_url: str | None, grace: float, output_format: str) -> None:
    """Check SWEEP (name or id) against the invariants, read-only.

    1: one FINISHED run per trial key at most (one per cell once the sweep finished);
    2: no run RUNNING once the sweep stopped, ended runs tagged with a reason;
    3: per run and metric, steps 0..n-1 each once; 4: params equal the trial's config;
    and the ledger agrees with MLflow. Violations go to stdout, one a line (or a JSON
    list with --format json, the summary then on stderr). Exit 0 when all hold, 1 when
    some do not, 2 on bad input.
    """
    from nnchain.verify import verify as verify_service

    report = verify_service(sweep_ref, tracking_uri=tracking_uri, ledger_url=ledger_url,
                            grace_seconds=grace)
    if output_format == "json":
        click.echo(json.dumps([v.as_dict() for v in report.violations]))
        click.echo(report.summary(), err=True)
    else:
        for violation in report.violations:
            click.echo(str(violation))
        click.echo(report.summary())
    ctx.exit(EXIT_OK if report.ok else EXIT_FAILED)
