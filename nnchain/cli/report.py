"""``nnchain report``: a sweep's report written locally, from the ledger and the MLflow store."""

from __future__ import annotations

from pathlib import Path

import click

from nnchain.cli import options
from nnchain.cli.compare import _ReportCommand

UI_URL = "http://127.0.0.1:5000"  # `nnchain ui`'s default address: where trial links point


@click.command(cls=_ReportCommand)
@click.argument("sweep_ref", metavar="SWEEP")
@click.option("--out", "out", default=None, metavar="PATH",
              help="The HTML file to write [default: ./SWEEP-report.html]; an existing "
                   "directory (or PATH ending in /): every report file in it (report.html, "
                   "results.csv, summary.json, the pictures).")
@click.option("--group-by", "group_by", default=None, metavar="P1,P2,...",
              help="Params whose distinct values make the groups averaged over "
                   "[default: the params the sweep varies, seeds left out].")
@click.option("--metric", default=None, metavar="NAME",
              help="The metric ranked and drawn [default: the sweep's].")
@click.option("--ui-url", default=UI_URL, show_default=True, metavar="URL",
              help="The MLflow UI the trial links point at.")
@click.option("--open", "open_browser", is_flag=True, help="Open the report in the browser.")
@options.tracking_uri
@options.ledger_url
def report(sweep_ref: str, out: str | None, group_by: str | None, metric: str | None,
           ui_url: str, open_browser: bool, tracking_uri: str | None,
           ledger_url: str | None) -> None:
    """Write the report of SWEEP (name, id or unique id prefix): the ranking, the groups
    over seeds, learning curves, gradient-flow heatmaps and one chart per varied param, in
    one self-contained HTML file (pictures embedded, nothing fetched).

    \b
    nnchain report spirals-depth
    nnchain report spirals-depth --group-by model.activation --out depth.html --open
    nnchain report xor-grid --metric val_accuracy --out reports/

    Prints the path written. Exit 0 on success, 2 on bad input (nothing written).
    """
    import shutil
    import tempfile

    from nnchain.report.compare import open_existing_ledger
    from nnchain.report.html import REPORT, write_report
    from nnchain.report.keys import split_keys
    from nnchain.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    ledger = open_existing_ledger(tracking_uri, ledger_url)
    # written aside first: a report that fails half way leaves nothing at --out
    with tempfile.TemporaryDirectory(prefix="nnchain-report-") as folder:
        try:
            summary = write_report(
                ledger, uri, sweep_ref, Path(folder), metric=metric,
                group_by=split_keys(group_by) if group_by is not None else None,
                ui_url=ui_url)
        finally:
            ledger.dispose()
        target = Path(out) if out else Path(f"{summary.sweep.name}-report.html")
        if target.is_dir() or (out or "").endswith(("/", "\\")):
            target.mkdir(parents=True, exist_ok=True)
            for path in sorted(Path(folder).iterdir()):
                shutil.move(path, target / path.name)
            target = target / REPORT
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(Path(folder) / REPORT, target)
    click.echo(str(target))
    if open_browser:
        import webbrowser

        webbrowser.open(target.resolve().as_uri())
