"""A sweep's report: its files (CSV, JSON, pictures) and one self-contained ``report.html``.

``write_report`` is the service behind ``nnchain report`` and the parent run's summary at
a sweep's end: it reads the ledger and the store, and writes into a folder:

- ``results.csv``: the compare table (``nnchain compare --format csv``, with run ids);
- ``summary.json``: the numbers (counts, best, per group the final metric's statistics and
  its curves' mean and std per epoch);
- ``learning_curves.png``, ``gradient_flow.png`` (layer x epoch heatmaps, mean over
  seeds), ``effect_flow.png`` (the same of ``effect/layer{k}``, where the trials track
  it), ``param_<key>.png`` (final metric against each varied param);
- ``report.html``: all of it, pictures embedded as base64, no network needed.

The large files are written in pieces as they are made, never held whole.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from nnchain.report.page import (
    EFFECT_FLOW,
    GRADIENT_FLOW,
    LEARNING_CURVES,
    MAX_RANKED_ROWS,
    number_text,
    page_parts,
    param_file,
    report_html,
)
from nnchain.report.summary import SweepSummary, final_value
from nnchain.report.summary_json import SummaryJson, summary_json
from nnchain.tracking import plots

__all__ = ["EFFECT_FLOW", "GRADIENT_FLOW", "LEARNING_CURVES", "MAX_RANKED_ROWS", "REPORT",
           "RESULTS", "SUMMARY", "param_file", "publish_report", "report_files",
           "report_html", "summary_json", "sweep_report", "write_report"]

MAX_GROUPS_DRAWN = 10  # lines of the learning curves; heatmap panels: MAX_PANELS
MAX_PANELS = 8
# Runs whose values a report reads and holds at once: a read costs in proportion to its
# runs (mlflow_sql.metric_values), so small reads keep the report's memory flat.
STREAMED_RUNS_PER_READ = 250
RESULTS = "results.csv"
SUMMARY = "summary.json"
REPORT = "report.html"


def write_report(ledger, tracking_uri: str, ref: str, folder: Path, *,
                 metric: str | None = None, group_by: Sequence[str] | None = None,
                 ui_url: str = "", status: str | None = None, keep_histories: int = 0
                 ) -> SweepSummary:
    """The report of sweep ``ref`` (name, id or unique id prefix), its files written into
    ``folder`` (an existing directory).

    Unknown sweep, metric or group key: ``SpecError`` before anything is read from MLflow
    or written.

    Its memory does not grow with the sweep beyond what the report holds: the trials are
    read cut to what it shows (``query.load_for_report``), the curves a chunk of runs at a
    time in the groups' order, each group's entry written into summary.json as soon as its
    curves are made, and only the curves the pictures draw kept; results.csv and
    report.html are written in pieces. The summary returned keeps the histories of its
    ``keep_histories`` best trials only."""
    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.report.compare import compare_loaded
    from nnchain.report.output import csv_blocks
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
    with open(folder / SUMMARY, "wb") as out:
        written = SummaryJson(summary, out)
        _stream_curves(summary, tracking_uri, curve_keys(loaded.metric_keys(), metric),
                       written, {row["run_id"] for row in summary.ranked[:keep_histories]})
        written.close()
    goal_sign = "" if summary.goal == "minimize" else "-"
    comparison = compare_loaded(loaded, sort=f"{goal_sign}{metric}",
                                columns=[f"+{metric}", "+run_id"])
    with open(folder / RESULTS, "w", encoding="utf-8", newline="") as out:
        out.writelines(csv_blocks(comparison))
    del comparison
    pictures = pictures_of(summary)
    for name, payload in pictures.items():
        (folder / name).write_bytes(payload)
    with open(folder / REPORT, "w", encoding="utf-8", newline="") as out:
        out.writelines(page_parts(summary, pictures, ui_url))
    return summary


def sweep_report(ledger, tracking_uri: str, ref: str, *, metric: str | None = None,
                 group_by: Sequence[str] | None = None, ui_url: str = "",
                 status: str | None = None, keep_histories: int = 0
                 ) -> tuple[SweepSummary, dict[str, bytes]]:
    """``write_report`` into a temporary folder, its files read back by name (every
    file's bytes at once: for small sweeps and tests)."""
    with tempfile.TemporaryDirectory(prefix="nnchain-report-") as folder:
        summary = write_report(ledger, tracking_uri, ref, Path(folder), metric=metric,
                               group_by=group_by, ui_url=ui_url, status=status,
                               keep_histories=keep_histories)
        files = {path.name: path.read_bytes() for path in sorted(Path(folder).iterdir())}
    return summary, files


def _stream_curves(summary: SweepSummary, tracking_uri: str, keys: list[str],
                   written: SummaryJson, kept: set[str]) -> None:
    """Each group's curves from the store, read in the groups' order a chunk of runs at a
    time (the best ``MAX_GROUPS_WITH_CURVES`` groups' only); the group written into
    ``written`` once its last run is read, and its curves then dropped unless a picture
    draws them (``pictures_of`` takes the first groups that have them). The histories of
    the runs in ``kept`` stay in ``summary.histories``."""
    from nnchain.report import summary_json as summary_file
    from nnchain.report.summary import add_curves, finished_runs, iter_histories

    metric = summary.metric
    curved = summary.groups[:summary_file.MAX_GROUPS_WITH_CURVES]  # the rest: none read
    runs = [run_id for group in curved for run_id in finished_runs(group)]
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

    with tempfile.TemporaryDirectory(prefix="nnchain-report-") as folder:
        summary = write_report(ledger, client.tracking_uri, sweep_id, Path(folder),
                               status=status, keep_histories=top_pictures)
        client.log_artifacts(summary.parent_run_id, folder)  # copied, not read into memory
    metrics = {f"trials_{state.lower()}": float(n) for state, n in summary.counts.items()}
    metrics["trials_total"] = float(sum(summary.counts.values()))
    best = summary.best
    if best is not None:
        metrics[f"best_{summary.metric}"] = final_value(best, summary.metric)
    sweep_runs.log_summary_metrics(client, summary.parent_run_id, metrics)
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
                     f"{number_text(final_value(best, summary.metric))}.")
    lines.append(f"Report: this run's artifacts, `{REPORT}` (the pictures, the ranking "
                 f"and `{RESULTS}` beside it); locally: `nnchain report {sweep.name}`.")
    return "\n\n".join(lines)
