"""``nnchain sweep submit``: run a sweep's driver on a Ray cluster, as a Ray job."""

from __future__ import annotations

import json

import click

from nnchain.cli import options
from nnchain.exitcodes import EXIT_INTERRUPTED, EXIT_OK


@click.command("submit")
@click.argument("spec", type=click.Path(dir_okay=False))
@options.overrides
@click.option("--address", default=None, metavar="URL",
              help="The cluster's Ray job API, http://HEAD:8265 [env RAY_API_SERVER_ADDRESS, "
                   "RAY_ADDRESS].")
@click.option("--name", default=None, help="Sweep name [default: the spec's name; -2, -3, ... "
                                          "added when taken]; the sweep's id is printed.")
@click.option("--tracking-uri", default=None, metavar="URI",
              help="The MLflow store as the cluster reaches it [default: the cluster's own "
                   "MLFLOW_TRACKING_URI; this machine's is not forwarded].")
@click.option("--ledger-url", default=None, metavar="URL",
              help="The sweep ledger as the cluster reaches it [default: the cluster's own "
                   "NNCHAIN_LEDGER_URL].")
@click.option("--max-trials", type=click.IntRange(min=1), default=10_000, show_default=True,
              help="Refuse a sweep with more trials than this.")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
              help="Trials running at once [default: cluster CPUs / cpus per trial].")
@click.option("--cpus-per-trial", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPUs (and BLAS threads) of each trial.")
@click.option("--pack", type=click.IntRange(min=1), default=None,
              help="Trials per Ray task [default: chosen from the sweep's size].")
@click.option("--forward-credentials", is_flag=True,
              help="Send this machine's MLFLOW_TRACKING_USERNAME / _PASSWORD / _TOKEN (and URIs "
                   "with passwords: user:pw@ or ?password=) as the job's environment; Ray logs "
                   "it [default: the cluster's own credentials].")
@click.option("--wait", "wait", is_flag=True,
              help="Follow the job's log to its end; exit with the sweep's exit code.")
@options.output_format
@click.pass_context
def submit(ctx: click.Context, spec: str, overrides: tuple[str, ...], address: str | None,
           name: str | None, tracking_uri: str | None, ledger_url: str | None, max_trials: int,
           max_concurrent: int | None, cpus_per_trial: int, pack: int | None,
           forward_credentials: bool, wait: bool, output_format: str) -> None:
    """Send the sweep in SPEC to a Ray cluster as a job; it runs on when this machine goes away.

    The spec is validated here first and shipped with the job. The driver uses the
    cluster's MLflow and ledger settings and credentials unless --tracking-uri,
    --ledger-url (without passwords) or --forward-credentials say otherwise; no secret
    is ever on the job's command line. Prints the sweep's id (chosen here, so that
    `nnchain sweep status|compare|cancel ID` find it whatever its final name) and the Ray
    job id.

    Exit 0 submitted (with --wait: every trial finished); 1 the job failed or, with
    --wait, some trial failed; 2 bad input, nothing submitted; 130 interrupted while
    following (the job goes on).
    """
    from nnchain.runner.submit import SubmitOptions, exit_code, follow, submit_sweep

    def say(line: str) -> None:
        click.echo(line, err=True)

    submission = submit_sweep(spec, overrides, SubmitOptions(
        address=address, tracking_uri=tracking_uri, ledger_url=ledger_url, name=name,
        max_trials=max_trials, max_concurrent=max_concurrent, cpus_per_trial=cpus_per_trial,
        pack=pack, forward_credentials=forward_credentials),
        on_log=say)
    code = EXIT_OK
    if submission.job_status in ("FAILED", "STOPPED"):
        code = exit_code(submission)
    elif wait:
        say(f"sweep {submission.sweep_id} submitted as job {submission.job_id}; following its "
            f"log")
        try:
            follow(submission, on_log=say)
        except KeyboardInterrupt:
            say(f"stopped following; job {submission.job_id} goes on (`ray job stop "
                f"{submission.job_id}` stops it, `nnchain sweep cancel` stops the sweep)")
            _report(submission, output_format)
            ctx.exit(EXIT_INTERRUPTED)
        code = exit_code(submission)
    _report(submission, output_format)
    ctx.exit(code)


def _report(submission, output_format: str) -> None:
    if output_format == "json":
        click.echo(json.dumps(submission.as_dict(), sort_keys=True))
        return
    if submission.name:
        label = f"{submission.name} ({submission.sweep_id})"
    else:
        label = (f"{submission.sweep_id} (named {submission.requested_name}, or -2, -3, ... "
                 f"if that is taken)")
    click.echo(f"sweep    {label}\njob      {submission.job_id} on {submission.address} "
               f"({submission.job_status})\ntrials   {submission.trials}")
    if submission.result:
        counts = ", ".join(f"{v} {k.lower()}" for k, v in submission.result["counts"].items())
        click.echo(f"status   {submission.result['status']}: {counts}")
    click.echo(f"next     nnchain sweep status {submission.sweep_id}   |   ray job logs "
               f"{submission.job_id} --address {submission.address}")
