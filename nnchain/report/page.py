"""report.html: one page, nothing fetched, pictures inline as data URIs.

``page_parts`` gives the page in pieces (a large sweep's groups table is a row a piece),
so that it can be written to a file without the whole text held at once.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

from nnchain.config import param_value
from nnchain.report.summary import SweepSummary, final_value

LEARNING_CURVES = "learning_curves.png"
GRADIENT_FLOW = "gradient_flow.png"
EFFECT_FLOW = "effect_flow.png"  # only for sweeps that track effect/layer{k}
MAX_RANKED_ROWS = 200  # rows of the ranking table in report.html (results.csv has all)
STYLE = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 24px}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f2f2f2} td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd;margin:6px 0}
.muted{color:#777}
"""


def report_html(summary: SweepSummary, pictures: dict[str, bytes], ui_url: str = "") -> str:
    """The page as one text (``page_parts`` joined)."""
    return "".join(page_parts(summary, pictures, ui_url))


def page_parts(summary: SweepSummary, pictures: dict[str, bytes], ui_url: str = ""
               ) -> Iterator[str]:
    """The page in pieces. Trial names link to their runs in the MLflow UI at ``ui_url``
    (e.g. ``nnchain ui``'s address) when given."""
    for number, section in enumerate(_sections(summary, pictures, ui_url)):
        if number:
            yield "\n"
        if isinstance(section, str):
            yield section
        else:
            yield from section


def _sections(summary: SweepSummary, pictures: dict[str, bytes], ui_url: str
              ) -> Iterator[str | Iterable[str]]:
    """The page's sections, a newline apart; a large one as an iterable of pieces."""
    sweep, metric = summary.sweep, summary.metric
    best = summary.best
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary.counts.items())
    yield (f"<!doctype html><html><head><meta charset='utf-8'>"
           f"<title>{_e(sweep.name)}: sweep report</title><style>{STYLE}</style></head><body>")
    yield f"<h1>{_e(sweep.name)}</h1>"
    yield (f"<p>sweep <code>{_e(sweep.id)}</code>, {_e(sweep.status.lower())}; "
           f"{sum(summary.counts.values())} trials: {_e(counts)}; metric "
           f"<b>{_e(metric)}</b> ({_e(summary.goal)}).</p>")
    if best is not None:
        yield (f"<p>best: {_link(summary, best, ui_url)} with {_e(metric)} = "
               f"<b>{number_text(final_value(best, metric))}</b></p>")
    yield (f"<p class='muted'>grouped by {_e(', '.join(summary.group_by) or '-')}; "
           f"made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p>")
    yield _groups_table(summary)
    for name, title in ((LEARNING_CURVES, "Learning curves"),
                        (GRADIENT_FLOW, "Gradient flow"),
                        (EFFECT_FLOW, "Each layer's effect on the cost")):
        if name in pictures:
            yield f"<h2>{title}</h2>{_image(name, pictures[name])}"
    params = [key for key in summary.varied if param_file(key) in pictures]
    if params:
        yield "<h2>Final metric against each param</h2>"
        for key in params:
            yield _image(param_file(key), pictures[param_file(key)])
    yield "<h2>Ranking</h2>" + _ranking_table(summary, ui_url)
    yield "</body></html>"


def _groups_table(summary: SweepSummary) -> Iterator[str]:
    head = [*summary.group_by, "trials", "finished", f"{summary.metric} mean", "std", "min",
            "max"]
    yield "<h2>Groups</h2>" + _table_head(head)
    keys = len(summary.group_by)
    for g in summary.groups:
        cells = [_e(param_value(g.values[k])) for k in summary.group_by]
        cells += [str(len(g.rows)), str(g.final["count"])]
        stats = [g.final[s] for s in ("mean", "std", "min", "max")]
        yield ("<tr>" + "".join(f"<td>{c}</td>" for c in cells[:keys])
               + "".join(f"<td class='n'>{c}</td>" for c in cells[keys:])
               + "".join(f"<td class='n'>{number_text(v)}</td>" for v in stats) + "</tr>")
    yield "</table>"


def _ranking_table(summary: SweepSummary, ui_url: str) -> str:
    head = ["rank", "trial", "state", summary.metric, "epochs", "reason"]
    rows = []
    for rank, row in enumerate(summary.ranked[:MAX_RANKED_ROWS], 1):
        value = final_value(row, summary.metric)
        rows.append(f"<tr><td class='n'>{rank}</td><td>{_link(summary, row, ui_url)}</td>"
                    f"<td>{_e(row['state'])}</td><td class='n'>{number_text(value)}</td>"
                    f"<td class='n'>{row['epochs'] if row['epochs'] is not None else '-'}</td>"
                    f"<td>{_e(_first_line(row['reason']))}</td></tr>")
    more = len(summary.ranked) - MAX_RANKED_ROWS
    note = f"<p class='muted'>{more} more trials in results.csv</p>" if more > 0 else ""
    return _table_head(head) + "".join(rows) + "</table>" + note


def param_file(key: str) -> str:
    return "param_" + re.sub(r"[^A-Za-z0-9_.-]", "_", key) + ".png"


def _first_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:120] if lines else ""


def _table_head(head: list[str]) -> str:
    return "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"


def _link(summary: SweepSummary, row: dict, ui_url: str) -> str:
    name = _e(summary.names.get(row["run_id"], f"t{row['index']:03d}"))
    if not row["run_id"] or not summary.experiment_id:
        return name
    target = f"{ui_url.rstrip('/')}/#/experiments/{summary.experiment_id}/runs/{row['run_id']}"
    return f"<a href='{_e(target)}' title='run {_e(row['run_id'])}'>{name}</a>"


def _image(name: str, payload: bytes) -> str:
    data = base64.b64encode(payload).decode()
    return f"<div><img alt='{_e(name)}' src='data:image/png;base64,{data}'></div>"


def number_text(value) -> str:
    """A number as the page and the parent run's description show it (5 digits)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.5g}"



def _e(text) -> str:
    return html.escape(str(text), quote=True)
