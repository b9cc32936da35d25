"""``nnchain compare``: the trials of one or more sweeps side by side, read from the ledger."""

from __future__ import annotations

import sys

import click

from nnchain.cli import options


class _ReportCommand(click.Command):
    """Turns nnchain's user errors into one line on stderr and exit code 2, also when the
    command is invoked on its own (tests, embedding) rather than through ``nnchain``."""

    def invoke(self, ctx: click.Context):
        from nnchain.cli.main import invoke_translated

        return invoke_translated(super().invoke, ctx)


@click.command(cls=_ReportCommand)
@click.argument("sweep_refs", metavar="[SWEEP]...", nargs=-1)
@click.option("--sort", "sort", default=None, metavar="[-]KEY",
              help="Rank by KEY ascending, -KEY descending (e.g. --sort=-val_accuracy) "
                   "[default: the first sweep's metric, best first]. Trials without a finite "
                   "value (failed, diverged, unfinished) always come last.")
@click.option("--top", type=click.IntRange(min=1), default=None, metavar="N",
              help="Show the first N rows (groups with --group-by).")
@click.option("--where", "where", multiple=True, metavar="EXPR",
              help="Keep trials where KEY OP VALUE holds, OP one of = != < <= > >= "
                   "('train.lr<=0.01', 'model.hidden=[16, 16]', 'val_cost.min<0.1', "
                   "state=FINISHED; quote < and > from the shell). Numbers compare as "
                   "numbers, the rest as text; a missing value is null. Repeatable: all "
                   "must hold.")
@click.option("--columns", default=None, metavar="A,B,...",
              help="Columns to show: params, metrics (val_cost, val_cost.min|.max|.last), "
                   "sweep, index, key, state, reason, epochs, run_id, ... "
                   "All prefixed + (+val_accuracy,+lr): added to the default columns.")
@click.option("--group-by", "group_by", default=None, metavar="P1,P2,...",
              help="One row per distinct value of these params: mean, sample std (ddof=1, "
                   "- for one value), min, max and count of each metric over the FINISHED "
                   "trials (seeds, repeats, other params), and the count of all trials.")
@click.option("--format", "output_format", type=click.Choice(["table", "csv", "json"]),
              default="table", show_default=True,
              help="table (rounded), csv or json (full precision) on stdout.")
@options.tracking_uri
@options.ledger_url
def compare(sweep_refs: tuple[str, ...], sort: str | None, top: int | None,
            where: tuple[str, ...], columns: str | None, group_by: str | None,
            output_format: str, tracking_uri: str | None, ledger_url: str | None) -> None:
    """Compare the trials of SWEEP (names or ids; default: the newest sweep), best first,
    read from the sweep ledger.

    \b
    nnchain compare
    nnchain compare xor-grid
    nnchain compare xor-grid --where 'train.lr<=0.5' --where state=FINISHED --top 5
    nnchain compare spirals-depth --group-by model.hidden,model.activation
    nnchain compare run-a run-b --columns sweep,train.lr,val_cost.min --format csv

    Exit 0 on success (also when nothing matches), 2 on bad input.
    """
    from nnchain.report import output
    from nnchain.report.compare import compare_at
    from nnchain.report.keys import split_keys

    comparison = compare_at(
        tracking_uri, ledger_url, sweep_refs, where=where, sort=sort, top=top,
        columns=split_keys(columns) if columns is not None else None,
        group_by=split_keys(group_by) if group_by is not None else None)
    if output_format == "csv":
        click.echo(output.to_csv(comparison), nl=False)
    elif output_format == "json":
        click.echo(output.to_json(comparison))
    else:
        click.echo(output.to_table(comparison, color=sys.stdout.isatty()), nl=False)
        click.echo(output.summary_line(comparison), err=True)
