"""``nnchain sweep run | resume | status | list | cancel``."""

from __future__ import annotations

import json
import time

import click

from nnchain.cli import options
from nnchain.cli.main import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from nnchain.limits import CAPS, DEFAULT_MAX_TRIALS
from nnchain.limits import ENV as LIMITS_ENV


@click.group()
def sweep() -> None:
    """Run grids and random searches of training jobs on Ray, recorded in MLflow."""


def _sweep_options(**values):
    from nnchain.runner.sweep import SweepOptions

    return SweepOptions(**values)


def _finish(ctx: click.Context, result, output_format: str) -> None:
    if output_format == "json":
        click.echo(json.dumps(result.as_dict(), sort_keys=True))
    else:
        counts = ", ".join(f"{v} {k.lower()}" for k, v in sorted(result.counts.items()) if v)
        click.echo(f"sweep    {result.name} ({result.sweep_id})\nstatus   {result.status}\n"
                   f"trials   {result.total}: {counts}")
        if result.best_key is not None:
            click.echo(f"best     trial {result.best_key}: {result.best:.6g}")
        click.echo(f"next     nnchain compare {result.name}   |   nnchain ui")
    ctx.exit(EXIT_OK if result.status == "FINISHED" else EXIT_FAILED)


def _run_options(function):
    for option in reversed([
        options.tracking_uri, options.ledger_url, options.address,
        click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
                     help="Trials running at once [default: cluster CPUs / cpus per trial]."),
        click.option("--cpus-per-trial", type=click.FloatRange(min=0.01), default=1.0,
                     show_default=True,
                     help="CPUs of each trial (BLAS threads: its integer part, at least 1); "
                          "a fraction runs several trials per CPU."),
        click.option("--pack", type=click.IntRange(min=1), default=None,
                     help="At most this many trials per Ray task, fewer as the queue drains "
                          "[default: chosen from the sweep's size]."),
        options.output_format,
        click.option("--quiet", is_flag=True, help="No progress display."),
    ]):
        function = option(function)
    return function


def _execute(ctx: click.Context, call, quiet: bool, output_format: str) -> None:
    from nnchain.cli.progress import sweep_progress
    from nnchain.runner.driver import StopSweep

    with sweep_progress(enabled=not quiet) as on_progress:
        try:
            result = call(on_progress)
        except StopSweep as stop:
            click.echo(f"sweep stopped ({stop}); its running trials are KILLED, resume it "
                       "with `nnchain sweep resume`", err=True)
            ctx.exit(EXIT_INTERRUPTED)
    _finish(ctx, result, output_format)


@sweep.command("run")
@click.argument("spec", type=click.Path(dir_okay=False))
@options.overrides
@click.option("--name", default=None, help="Sweep name [default: the spec's name; "
                                          "-2, -3, ... added when taken].")
@click.option("--max-trials", type=click.IntRange(min=1), default=DEFAULT_MAX_TRIALS,
              show_default=True,
              help=f"Refuse a sweep with more trials than this; at most {CAPS['trials']:,} "
                   f"(the trials limit, raised with {LIMITS_ENV}=trials=N).")
@click.option("--sweep-id", default=None, metavar="ID",
              help="The new sweep's id, 12 lowercase hex digits, refused if the ledger has it "
                   "[default: a random one]; `sweep submit` chooses it to know its sweep.")
@_run_options
@click.pass_context
def run(ctx: click.Context, spec: str, overrides: tuple[str, ...], name: str | None,
        max_trials: int, sweep_id: str | None, tracking_uri: str | None,
        ledger_url: str | None, address: str | None, max_concurrent: int | None,
        cpus_per_trial: float, pack: int | None, output_format: str, quiet: bool) -> None:
    """Run every trial of the sweep in SPEC (YAML) on Ray, recorded in MLflow.

    Exit 0 when every trial finished, 1 when some failed (or a local Ray did not start),
    2 on bad input, 130 when interrupted (the sweep stays resumable).
    """
    from nnchain.runner.sweep import run_sweep

    sweep_options = _sweep_options(
        tracking_uri=tracking_uri, ledger_url=ledger_url, address=address,
        max_concurrent=max_concurrent, cpus_per_trial=cpus_per_trial, max_trials=max_trials,
        name=name, pack=pack, sweep_id=sweep_id)

    def announce(created) -> None:
        click.echo(f"sweep {created.name} ({created.id}): {created.trial_count} trials",
                   err=True)

    _execute(ctx, lambda on_progress: run_sweep(spec, overrides, sweep_options,
                                                on_progress=on_progress,
                                                on_created=announce),
             quiet, output_format)


@sweep.command("resume")
@click.argument("sweep_ref", metavar="SWEEP")
@_run_options
@click.pass_context
def resume(ctx: click.Context, sweep_ref: str, tracking_uri: str | None,
           ledger_url: str | None, address: str | None, max_concurrent: int | None,
           cpus_per_trial: float, pack: int | None, output_format: str, quiet: bool) -> None:
    """Run the trials of SWEEP (name or id) that are not FINISHED, from their checkpoints."""
    from nnchain.runner.sweep import resume_sweep

    sweep_options = _sweep_options(
        tracking_uri=tracking_uri, ledger_url=ledger_url, address=address,
        max_concurrent=max_concurrent, cpus_per_trial=cpus_per_trial, pack=pack)
    _execute(ctx, lambda on_progress: resume_sweep(sweep_ref, sweep_options,
                                                   on_progress=on_progress),
             quiet, output_format)


def _ledger(tracking_uri: str | None, ledger_url: str | None):
    from nnchain.ledger.store import open_existing_ledger

    return open_existing_ledger(tracking_uri, ledger_url)


@sweep.command("status")
@click.argument("sweep_ref", metavar="SWEEP", required=False)
@options.tracking_uri
@options.ledger_url
@options.output_format
@click.option("--decisions", is_flag=True,
              help="Also list every early-stopping decision: trial, epoch, bracket, rung, "
                   "value, cut-off, stop or go on.")
def status(sweep_ref: str | None, tracking_uri: str | None, ledger_url: str | None,
           output_format: str, decisions: bool) -> None:
    """Counts by state, progress and best so far of SWEEP (default: the newest sweep)."""
    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.ledger.report import sweep_status
    from nnchain.runner.reaper import driver_state, reap_with_store
    from nnchain.tracking.store import resolve_tracking_uri

    ledger = _ledger(tracking_uri, ledger_url)
    reap_with_store(ledger, resolve_tracking_uri(tracking_uri))
    info = sweep_status(ledger, sweep_ref)
    driver = None
    if info["status"] == "RUNNING":
        driver = driver_state(ledger_ops.find_sweep(ledger, info["id"]))
        info.update(driver=driver.describe(), heartbeat_age=driver.heartbeat_age)
    if decisions:
        info["decisions"] = _decisions(ledger, info["id"])
    if output_format == "json":
        click.echo(json.dumps(info, sort_keys=True, default=str))
        return
    counts = ", ".join(f"{v} {k.lower()}" for k, v in info["counts"].items() if v) or "none"
    click.echo(f"sweep     {info['name']} ({info['id']})\nstatus    {info['status']}\n"
               f"progress  {info['done']}/{info['total']} done ({counts})")
    if driver is not None:
        click.echo(f"driver    {driver.describe()}")
    if info["best"] is not None:
        click.echo(f"best      {info['metric']} = {info['best']:.6g} (trial {info['best_key']}, "
                   f"run {info['best_run_id']})")
    else:
        click.echo(f"best      no finished trial with a finite {info['metric']} yet")
    if decisions:
        _echo_decisions(info["decisions"], info["metric"])


def _decisions(ledger, sweep_id: str) -> list[dict]:
    """The sweep's early-stopping decisions in the order made, trials named by key."""
    from nnchain.ledger import sweeps as ledger_ops

    trials = {t.id: t for t in ledger_ops.trials_of(ledger, sweep_id)}
    return [{"trial": trials[d.trial_id].key, "index": trials[d.trial_id].index,
             "epoch": d.epoch, "bracket": d.bracket, "rung": d.rung, "value": d.value,
             "cutoff": d.cutoff, "stop": bool(d.stop)}
            for d in ledger_ops.decisions_of(ledger, sweep_id)]


def _echo_decisions(rows: list[dict], metric: str) -> None:
    from rich.console import Console
    from rich.table import Table

    if not rows:
        click.echo("decisions none (no early stopping, or no trial reached a rung yet)")
        return
    table = Table(box=None, title=f"early-stopping decisions on {metric}", title_justify="left")
    for column in ("trial", "index", "epoch", "bracket", "rung", "value", "cut-off", "decision"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["trial"], str(row["index"]), str(row["epoch"]), str(row["bracket"]),
                      str(row["rung"]), _number(row["value"]), _number(row["cutoff"]),
                      "stop" if row["stop"] else "go on")
    Console(width=120).print(table)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


@sweep.command("list")
@options.tracking_uri
@options.ledger_url
@options.output_format
def list_(tracking_uri: str | None, ledger_url: str | None, output_format: str) -> None:
    """Every sweep of the ledger, newest first."""
    from nnchain.ledger.report import sweep_rows

    rows = sweep_rows(_ledger(tracking_uri, ledger_url))
    if output_format == "json":
        click.echo(json.dumps(rows, sort_keys=True, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for column in ("name", "id", "status", "trials", "finished", "failed", "created"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["id"], row["status"], str(row["trials"]),
                      str(row["finished"]), str(row["failed"]), str(row["created"])[:19])
    Console(width=200).print(table)


# seconds without heartbeat (the driver beats every second) after which a driver on another
# host counts as gone; on this host its process is checked instead
DRIVER_SILENT = 5.0


@sweep.command("cancel")
@click.argument("sweep_ref", metavar="SWEEP")
@options.tracking_uri
@options.ledger_url
@click.option("--wait", default=15.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds to wait for a live driver to stop.")
def cancel(sweep_ref: str, tracking_uri: str | None, ledger_url: str | None,
           wait: float) -> None:
    """Stop SWEEP's trials (runs marked KILLED); the sweep stays resumable.

    A live driver is asked to stop and given up to --wait seconds; a sweep whose driver is
    gone is closed here.
    """
    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.ledger.models import SWEEP_RUNNING
    from nnchain.runner.reaper import reap_with_store
    from nnchain.tracking.store import resolve_tracking_uri

    ledger = _ledger(tracking_uri, ledger_url)
    found = ledger_ops.find_sweep(ledger, sweep_ref)
    if found.status != SWEEP_RUNNING:
        click.echo(f"sweep {found.name} ({found.id}) is not running ({found.status})")
        return
    ledger_ops.update_sweep(ledger, found.id, cancel_requested=1)
    uri = resolve_tracking_uri(tracking_uri)
    deadline = time.monotonic() + wait
    while True:
        if ledger_ops.find_sweep(ledger, found.id).status != SWEEP_RUNNING:
            click.echo(f"sweep {found.name} ({found.id}) cancelled by its driver")
            return
        # a driver gone (or elsewhere, silent for DRIVER_SILENT s): close its runs here
        if reap_with_store(ledger, uri, grace=DRIVER_SILENT, sweep_id=found.id):
            click.echo(f"sweep {found.name} ({found.id}) cancelled (its driver was gone)")
            return
        if time.monotonic() > deadline:
            raise click.ClickException(f"the driver of sweep {found.name} did not stop within "
                                       f"{wait:g} s; the cancel request stays set")
        time.sleep(0.5)
