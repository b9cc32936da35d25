"""A sweep's report: its files (CSV, JSON, pictures) and one self-contained ``report.html``.

``sweep_report`` is the service behind ``nnchain report`` and the parent run's summary at
a sweep's end: it reads the ledger and the store, and returns the files by name:

- ``results.csv``: the compare table (``nnchain compare --format csv``, with run ids);
- ``summary.json``: the numbers (counts, best, per group the final metric's statistics and
  its curves' mean and std per epoch);
- ``learning_curves.png``, ``gradient_flow.png`` (layer x epoch heatmaps, mean over
  seeds), ``effect_flow.png`` (the same of ``effect/layer{k}``, where the trials track
  it), ``param_<key>.png`` (final metric against each varied param);
- ``report.html``: all of it, pictures embedded as base64, no network needed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np

from nnchain.config import param_value
from nnchain.report.summary import Group, SweepSummary, final_value
from nnchain.tracking import plots

MAX_GROUPS_DRAWN = 10  # lines of the learning curves; heatmap panels: MAX_PANELS
MAX_PANELS = 8
# Runs whose values a report reads and holds at once: a read costs in proportion to its
# runs (mlflow_sql.metric_values), so small reads keep the report's memory flat.
STREAMED_RUNS_PER_READ = 250
MAX_RANKED_ROWS = 200  # rows of the ranking table in report.html (results.csv has all)
LEARNING_CURVES = "learning_curves.png"
GRADIENT_FLOW = "gradient_flow.png"
EFFECT_FLOW = "effect_flow.png"  # only for sweeps that track effect/layer{k}
RESULTS = "results.csv"
SUMMARY = "summary.json"
REPORT = "report.html"


def sweep_report(ledger, tracking_uri: str, ref: str, *, metric: str | None = None,
                 group_by: Sequence[str] | None = None, ui_url: str = "",
                 status: str | None = None, keep_histories: int = 0
                 ) -> tuple[SweepSummary, dict[str, bytes]]:
    """The report of sweep ``ref`` (name, id or unique id prefix) as files by name.

    Unknown sweep, metric or group key: ``SpecError`` before anything is read from MLflow.

    Its memory does not grow with the sweep beyond what the report holds: the trials are
    read cut to what it shows (``query.load_for_report``), the curves a chunk of runs at a
    time in the groups' order, each group's entry written into summary.json as soon as its
    curves are made, and only the curves the pictures draw kept. The summary returned
    keeps the histories of its ``keep_histories`` best trials only."""
    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.report.compare import compare_loaded
    from nnchain.report.output import to_csv
    from nnchain.report.query import load_for_report
    from nnchain.report.summary import check_options, curve_keys, plan_summary

    loaded = load_for_report(ledger, ref, metric=metric, group_by=group_by)
    if status is not None:  # the sweep's end, before its ledger row says so
        loaded = replace(loaded, sweeps=[replace(loaded.sweeps[0], status=status)])
    metric, keys = check_options(loaded, metric, group_by)
    record = ledger_ops.find_sweep(ledger, loaded.sweeps[0].id)
    summary = plan_summary(loaded, experiment_id=record.experiment_id or "",
                           parent_run_id=record.parent_run_id or "", metric=metric,
                           group_by=keys)
    written = SummaryJson(summary)
    _stream_curves(summary, tracking_uri, curve_keys(loaded.metric_keys(), metric),
                   written, {row["run_id"] for row in summary.ranked[:keep_histories]})
    goal_sign = "" if summary.goal == "minimize" else "-"
    comparison = compare_loaded(loaded, sort=f"{goal_sign}{metric}",
                                columns=[f"+{metric}", "+run_id"])
    results_csv = to_csv(comparison).encode()
    del comparison
    return summary, report_files(summary, results_csv, ui_url=ui_url,
                                 summary_json_bytes=written.close())


def _stream_curves(summary: SweepSummary, tracking_uri: str, keys: list[str],
                   written: SummaryJson, kept: set[str]) -> None:
    """Each group's curves from the store, read in the groups' order a chunk of runs at a
    time; the group written into ``written`` once its last run is read, and its curves
    then dropped unless a picture draws them (``pictures_of`` takes the first groups that
    have them). The histories of the runs in ``kept`` stay in ``summary.histories``."""
    from nnchain.report.summary import add_curves, finished_runs, iter_histories

    metric = summary.metric
    runs = [run_id for group in summary.groups for run_id in finished_runs(group)]
    listed = set(runs)
    runs += [run_id for run_id in kept if run_id not in listed]
    groups = iter(summary.groups)
    group = next(groups, None)
    read: set[str] = set()
    histories: dict[str, dict] = {}
    drawn = {"curves": 0, "gradient": 0, "effect": 0}

    def complete(group) -> bool:
        return all(run_id in read or not run_id for run_id in finished_runs(group))

    def finish(group) -> None:
        members = finished_runs(group)
        add_curves(group, [histories.get(run_id, {}) for run_id in members], metric)
        written.add(group)
        if metric in group.curves and drawn["curves"] < MAX_GROUPS_DRAWN:
            drawn["curves"] += 1
        else:
            group.curves.clear()  # not a new dict: nothing long-lived made mid-chunk
        for name in ("gradient", "effect"):
            if getattr(group, name) is not None and drawn[name] < MAX_PANELS:
                drawn[name] += 1
            else:
                setattr(group, name, None)
        for run_id in members:
            histories.pop(run_id, None)

    for chunk, chunk_histories in iter_histories(tracking_uri, runs, metric, keys,
                                                 runs_per_read=STREAMED_RUNS_PER_READ):
        read.update(chunk)
        histories.update(chunk_histories)
        summary.histories.update({run_id: chunk_histories[run_id]
                                  for run_id in kept & chunk_histories.keys()})
        while group is not None and complete(group):
            finish(group)
            group = next(groups, None)
    while group is not None:
        finish(group)
        group = next(groups, None)


def report_files(summary: SweepSummary, results_csv: bytes, ui_url: str = "",
                 summary_json_bytes: bytes | None = None) -> dict[str, bytes]:
    """The report's files; ``summary_json_bytes``: summary.json already written (a
    streamed report, whose groups no longer hold every curve)."""
    pictures = pictures_of(summary)
    if summary_json_bytes is None:
        summary_json_bytes = summary_json(summary).encode()
    files = {RESULTS: results_csv, SUMMARY: summary_json_bytes, **pictures}
    files[REPORT] = report_html(summary, pictures, ui_url).encode()
    return files


def pictures_of(summary: SweepSummary) -> dict[str, bytes]:
    name, metric = summary.sweep.name, summary.metric
    groups = summary.groups
    shown = [g for g in groups if metric in g.curves][:MAX_GROUPS_DRAWN]
    more = f" (best {len(shown)} of {len(groups)} groups)" if len(groups) > len(shown) else ""
    pictures = {LEARNING_CURVES: plots.band_chart(
        f"{name}: {metric} per epoch, mean ± std over seeds{more}", metric,
        [(g.label, g.curves[metric].mean, g.curves[metric].std) for g in shown])}
    panels = [(f"{g.label}  (mean of {g.final['count']} finished)", g.gradient)
              for g in groups if g.gradient is not None][:MAX_PANELS]
    pictures[GRADIENT_FLOW] = plots.heatmap(
        f"{name}: gradient norm ||dL/dW|| per layer and epoch, mean over seeds", panels,
        colour_label="log10 norm")
    effects = [(f"{g.label}  (mean of {g.final['count']} finished)", g.effect)
               for g in groups if g.effect is not None][:MAX_PANELS]
    if effects:  # the megaphone question: which layer's update lowers the cost most
        pictures[EFFECT_FLOW] = plots.heatmap(
            f"{name}: each layer's cost drop per epoch, mean over seeds (grey: none)",
            effects, colour_label="log10 drop")
    finished = [row for row in summary.ranked if final_value(row, metric) is not None
                and row["state"] == "FINISHED"]
    for key in summary.varied:
        xs, ys = [], []
        for row in finished:
            value = row["overrides"].get(key, row["params"].get(key))
            if value is not None:
                xs.append(value)
                ys.append(final_value(row, metric))
        if xs:
            pictures[param_file(key)] = plots.param_chart(
                f"{name}: final {metric} against {key}", key, metric, xs, ys)
    return pictures


def param_file(key: str) -> str:
    return "param_" + re.sub(r"[^A-Za-z0-9_.-]", "_", key) + ".png"


def summary_json(summary: SweepSummary) -> str:
    written = SummaryJson(summary)
    for group in summary.groups:
        written.add(group)
    return written.close().decode()


class SummaryJson:
    """summary.json written a group at a time: the text ``json.dumps(data, indent=1)``
    gives for the whole, without holding every group's curves as Python lists at once."""

    def __init__(self, summary: SweepSummary) -> None:
        best = summary.best
        head = {
            "sweep": summary.sweep.name, "sweep_id": summary.sweep.id,
            "metric": summary.metric, "goal": summary.goal, "status": summary.sweep.status,
            "counts": summary.counts, "trials": sum(summary.counts.values()),
            "group_by": summary.group_by,
            "best": None if best is None else {
                "value": final_value(best, summary.metric), "index": best["index"],
                "run_id": best["run_id"], "name": summary.names.get(best["run_id"], "")},
            "groups": []}  # the last key: its items are written by add()
        text = json.dumps(head, indent=1, allow_nan=False)
        opening, closing = text.rsplit("[]", 1)
        self._closing = closing.encode()
        self._out = io.BytesIO()
        self._out.write(opening.encode() + b"[")
        self._count = 0

    def add(self, group: Group) -> None:
        entry = {"label": group.label, "values": group.values, "trials": len(group.rows),
                 "final": group.final,
                 "curves": {key: {"mean": _list(c.mean), "std": _list(c.std),
                                  "count": c.count.tolist()}
                            for key, c in group.curves.items()}}
        lines = json.dumps(entry, indent=1, allow_nan=False).split("\n")
        self._out.write((",\n" if self._count else "\n").encode())
        self._out.write("\n".join(INDENT + line for line in lines).encode())
        self._count += 1

    def close(self) -> bytes:
        self._out.write((f"\n{INDENT[:-1]}]" if self._count else "]").encode() + self._closing)
        return self._out.getvalue()


INDENT = "  "  # a group's lines in summary.json: inside the top object and its "groups"


def _list(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values.tolist()]


# ---- the page ------------------------------------------------------------------------------
STYLE = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 24px}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f2f2f2} td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd;margin:6px 0}
.muted{color:#777}
"""


def report_html(summary: SweepSummary, pictures: dict[str, bytes], ui_url: str = "") -> str:
    """One page, nothing fetched: pictures inline as data URIs. Trial names link to their
    runs in the MLflow UI at ``ui_url`` (e.g. ``nnchain ui``'s address) when given."""
    sweep, metric = summary.sweep, summary.metric
    best = summary.best
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary.counts.items())
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>"
             f"<title>{_e(sweep.name)}: sweep report</title><style>{STYLE}</style></head><body>",
             f"<h1>{_e(sweep.name)}</h1>",
             f"<p>sweep <code>{_e(sweep.id)}</code>, {_e(sweep.status.lower())}; "
             f"{sum(summary.counts.values())} trials: {_e(counts)}; metric "
             f"<b>{_e(metric)}</b> ({_e(summary.goal)}).</p>"]
    if best is not None:
        parts.append(f"<p>best: {_link(summary, best, ui_url)} with {_e(metric)} = "
                     f"<b>{_number(final_value(best, metric))}</b></p>")
    parts.append(f"<p class='muted'>grouped by {_e(', '.join(summary.group_by) or '-')}; "
                 f"made {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p>")
    parts.append("<h2>Groups</h2>" + _groups_table(summary))
    for name, title in ((LEARNING_CURVES, "Learning curves"),
                        (GRADIENT_FLOW, "Gradient flow"),
                        (EFFECT_FLOW, "Each layer's effect on the cost")):
        if name in pictures:
            parts.append(f"<h2>{title}</h2>{_image(name, pictures[name])}")
    params = [key for key in summary.varied if param_file(key) in pictures]
    if params:
        parts.append("<h2>Final metric against each param</h2>")
        parts += [_image(param_file(key), pictures[param_file(key)]) for key in params]
    parts.append("<h2>Ranking</h2>" + _ranking_table(summary, ui_url))
    parts.append("</body></html>")
    return "\n".join(parts)


def _groups_table(summary: SweepSummary) -> str:
    head = [*summary.group_by, "trials", "finished", f"{summary.metric} mean", "std", "min",
            "max"]
    rows = []
    for g in summary.groups:
        cells = [_e(param_value(g.values[k])) for k in summary.group_by]
        cells += [str(len(g.rows)), str(g.final["count"])]
        stats = [g.final[s] for s in ("mean", "std", "min", "max")]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells[:len(summary.group_by)])
                    + "".join(f"<td class='n'>{c}</td>" for c in cells[len(summary.group_by):])
                    + "".join(f"<td class='n'>{_number(v)}</td>" for v in stats) + "</tr>")
    return _table(head, rows)


def _ranking_table(summary: SweepSummary, ui_url: str) -> str:
    head = ["rank", "trial", "state", summary.metric, "epochs", "reason"]
    rows = []
    for rank, row in enumerate(summary.ranked[:MAX_RANKED_ROWS], 1):
        value = final_value(row, summary.metric)
        rows.append(f"<tr><td class='n'>{rank}</td><td>{_link(summary, row, ui_url)}</td>"
                    f"<td>{_e(row['state'])}</td><td class='n'>{_number(value)}</td>"
                    f"<td class='n'>{row['epochs'] if row['epochs'] is not None else '-'}</td>"
                    f"<td>{_e(_first_line(row['reason']))}</td></tr>")
    more = len(summary.ranked) - MAX_RANKED_ROWS
    note = f"<p class='muted'>{more} more trials in results.csv</p>" if more > 0 else ""
    return _table(head, rows) + note


def _first_line(text: str) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0][:120] if lines else ""


def _table(head: list[str], rows: list[str]) -> str:
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>")


def _link(summary: SweepSummary, row: dict, ui_url: str) -> str:
    name = _e(summary.names.get(row["run_id"], f"t{row['index']:03d}"))
    if not row["run_id"] or not summary.experiment_id:
        return name
    target = f"{ui_url.rstrip('/')}/#/experiments/{summary.experiment_id}/runs/{row['run_id']}"
    return f"<a href='{_e(target)}' title='run {_e(row['run_id'])}'>{name}</a>"


def _image(name: str, payload: bytes) -> str:
    data = base64.b64encode(payload).decode()
    return f"<div><img alt='{_e(name)}' src='data:image/png;base64,{data}'></div>"


def _number(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.5g}"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


# ---- the parent run's summary --------------------------------------------------------------
TOP_TRIAL_PICTURES = 20  # trials drawn at the end when the workers drew none


def publish_report(ledger, client, sweep_id: str, *, status: str | None = None,
                   top_pictures: int = 0) -> None:
    """The sweep's report into its parent run: metrics (best value, trials by state) and
    every report file as artifacts; with ``top_pictures``, the pictures of that many best
    trials too (for sweeps too large to draw every trial's in the workers)."""
    from nnchain.report.summary import short_name
    from nnchain.tracking import sweep_runs
    from nnchain.tracking.artifacts import trial_pictures

    summary, files = sweep_report(ledger, client.tracking_uri, sweep_id, status=status,
                                  keep_histories=top_pictures)
    metrics = {f"trials_{state.lower()}": float(n) for state, n in summary.counts.items()}
    metrics["trials_total"] = float(sum(summary.counts.values()))
    best = summary.best
    if best is not None:
        metrics[f"best_{summary.metric}"] = final_value(best, summary.metric)
    sweep_runs.log_summary_metrics(client, summary.parent_run_id, metrics)
    parent = client.get_run(summary.parent_run_id)
    sweep_runs.log_files(client, summary.parent_run_id, files, parent.info.artifact_uri)
    sweep_runs.set_description(client, summary.parent_run_id, description(summary))
    for row in summary.ranked[:top_pictures]:
        history = summary.histories.get(row["run_id"])
        if history:
            pictures = trial_pictures(history, short_name(row))
            sweep_runs.log_files(client, row["run_id"], pictures,
                                 client.get_run(row["run_id"]).info.artifact_uri)


def description(summary: SweepSummary) -> str:
    """The parent run's description (markdown): what the sweep was, where its report is."""
    sweep, best = summary.sweep, summary.best
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary.counts.items())
    lines = [f"**Sweep {sweep.name}** (`{sweep.id}`): {sum(summary.counts.values())} trials "
             f"({counts}), varying {', '.join(summary.varied) or 'nothing'}; metric "
             f"`{summary.metric}` ({summary.goal})."]
    if best is not None:
        lines.append(f"Best: {summary.names.get(best['run_id'], '')}, {summary.metric} = "
                     f"{_number(final_value(best, summary.metric))}.")
    lines.append(f"Report: this run's artifacts, `{REPORT}` (the pictures, the ranking "
                 f"and `{RESULTS}` beside it); locally: `nnchain report {sweep.name}`.")
    return "\n\n".join(lines)
