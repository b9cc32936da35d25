"""The numbers of a sweep's report: counts, the best trial, groups over seeds, curves.

Trials come from the ledger (``query.load_trials``); per-epoch curves from the MLflow
store, read in one SELECT per few hundred runs on an SQL store whose schema
``tracking/mlflow_sql.py`` was tested with, else through ``MlflowClient`` (one call a run
and key). A group is one distinct value of the ``group_by`` params (default: the params
the sweep varies, the repeats' seed left out); its curves are the mean and sample std
(ddof=1, as ``nnchain compare --group-by``) over its FINISHED trials, epoch by epoch.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnchain.config import param_value
from nnchain.errors import SpecError
from nnchain.ledger.states import FINISHED
from nnchain.report.query import Loaded, SweepInfo
from nnchain.report.table import summarize

SEED = "seed"  # the repeats' key in a trial's overrides
RANKED = (FINISHED, "PRUNED")  # trials whose last value counts in the ranking
COST_KEYS = ("train_cost", "val_cost")
# The per-layer keys drawn: gradient norms, and train.track's effect (the chain-rule page).
LAYER_PREFIXES = ("grad_norm/layer", "effect/layer")
GRAD_KEY, EFFECT_KEY = (re.compile(rf"^{re.escape(prefix)}(\d+)$") for prefix in LAYER_PREFIXES)


@dataclass
class Curve:
    """A metric's mean, sample std (NaN below 2 values) and count per epoch."""

    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray


@dataclass
class Group:
    label: str  # "lr=0.1 hidden=[16,16]"
    values: dict[str, Any]  # group key -> value
    rows: list[dict]  # its trials (ledger rows)
    final: dict[str, Any]  # summarize() of the metric's final value over FINISHED trials
    curves: dict[str, Curve] = field(default_factory=dict)
    gradient: np.ndarray | None = None  # (layers, epochs): mean grad_norm, input side row 0
    effect: np.ndarray | None = None  # (layers, epochs): mean effect (cost drop), where tracked


@dataclass
class SweepSummary:
    sweep: SweepInfo
    experiment_id: str
    parent_run_id: str
    metric: str
    goal: str  # "minimize" | "maximize"
    counts: dict[str, int]
    group_by: list[str]
    varied: list[str]  # the params the sweep varies (seed left out)
    groups: list[Group]
    ranked: list[dict]  # trials, best first by ``metric``; unranked ones last
    names: dict[str, str]  # run id -> the trial's short name
    histories: dict[str, dict[str, np.ndarray]]  # run id -> key -> values by step

    @property
    def best(self) -> dict | None:
        first = self.ranked[0] if self.ranked else None
        return first if first is not None and final_value(first, self.metric) is not None \
            else None


def short_name(row: dict) -> str:
    """The trial's run name (``t007 lr=0.5 hidden=[8] rep=1``)."""
    from nnchain.tracking.sweep_runs import trial_run_name

    return trial_run_name(row["index"], row["overrides"], row["repeat"])


def label_of(values: dict) -> str:
    """``lr=0.1 hidden=[16,16]``: a group's values, short keys."""
    parts = []
    for path, value in values.items():
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        parts.append(f"{path.rsplit('.', 1)[-1]}={text}")
    return " ".join(parts)


def final_value(row: dict, metric: str) -> float | None:
    """The trial's last value of ``metric`` (the ledger's), None when missing or not finite."""
    value = row["metric"] if metric == row["metric_name"] else \
        (row["summary"].get(metric) or {}).get("last")
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def metric_goal(metric: str, sweep: SweepInfo) -> str:
    if metric == sweep.metric_name:
        return sweep.metric_goal
    return "maximize" if "accuracy" in metric else "minimize"


def varied_params(rows: Sequence[dict]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(k for k in row["overrides"] if k != SEED))
    return list(keys)


def check_options(loaded: Loaded, metric: str | None, group_by: Sequence[str] | None
                  ) -> tuple[str, list[str]]:
    """The metric and group keys asked for, checked against the sweep's trials."""
    rows, sweep = loaded.rows, loaded.sweeps[0]
    metric = metric or sweep.metric_name
    known = {sweep.metric_name, *loaded.metric_keys()}
    if metric not in known:
        raise SpecError("--metric", f"must be a metric the sweep's trials recorded "
                                    f"({', '.join(sorted(known)[:8])}...), got {metric!r}")
    if group_by is None:
        return metric, varied_params(rows)
    params = {*loaded.param_keys(), SEED}
    for key in group_by:
        if key not in params:
            raise SpecError("--group-by", f"each key must be a param of the sweep's trials "
                                          f"(e.g. {', '.join(varied_params(rows)[:3])}), "
                                          f"got {key!r}")
    return metric, list(dict.fromkeys(group_by))


def build_summary(loaded: Loaded, *, experiment_id: str, parent_run_id: str,
                  histories: dict[str, dict[str, np.ndarray]], metric: str,
                  group_by: Sequence[str]) -> SweepSummary:
    """The summary with every group's curves, from ``histories`` (run id -> key -> values)."""
    summary = plan_summary(loaded, experiment_id=experiment_id, parent_run_id=parent_run_id,
                           metric=metric, group_by=group_by)
    for group in summary.groups:
        add_curves(group, [histories.get(run_id, {}) for run_id in finished_runs(group)],
                   metric)
    summary.histories = histories
    return summary


def plan_summary(loaded: Loaded, *, experiment_id: str, parent_run_id: str, metric: str,
                 group_by: Sequence[str]) -> SweepSummary:
    """The summary without curves: counts, the ranking, the groups in their order (by the
    mean of the metric's final value) and the trials' names. ``add_curves`` then gives
    each group its curves, one group at a time if need be."""
    sweep, rows = loaded.sweeps[0], loaded.rows
    goal = metric_goal(metric, sweep)
    counts = Counter(row["state"] for row in rows)
    sign = 1.0 if goal == "minimize" else -1.0
    ranks = [r for r in rows if r["state"] in RANKED and final_value(r, metric) is not None]
    ranked = sorted(ranks, key=lambda r: sign * final_value(r, metric))
    ranked_ids = {id(r) for r in ranks}
    ranked += [r for r in rows if id(r) not in ranked_ids]  # the rest, in trial order
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        identity = tuple(param_value(_group_value(row, key)) for key in group_by)
        grouped.setdefault(identity, []).append(row)
    groups = []
    for members in grouped.values():
        values = {key: _group_value(members[0], key) for key in group_by}
        finished = [r for r in members if r["state"] == FINISHED]
        finals = [v for v in (final_value(r, metric) for r in finished) if v is not None]
        groups.append(Group(label_of(values) or "all trials", values, members,
                            summarize(finals)))
    groups.sort(key=lambda g: math.inf if g.final["mean"] is None else sign * g.final["mean"])
    return SweepSummary(sweep, experiment_id, parent_run_id, metric, goal,
                        dict(sorted(counts.items())), list(group_by), varied_params(rows),
                        groups, ranked,
                        {r["run_id"]: short_name(r) for r in rows},
                        {})


def finished_runs(group: Group) -> list[str]:
    """The run ids of the group's FINISHED trials, whose curves make its curves."""
    return [row["run_id"] for row in group.rows if row["state"] == FINISHED]


def add_curves(group: Group, runs: Sequence[dict[str, np.ndarray]], metric: str) -> None:
    """The group's curves (costs, the metric) and per-layer heatmaps from ``runs``, the
    histories of its FINISHED trials (``finished_runs``' order)."""
    for key in (*COST_KEYS, metric):
        series = [run[key] for run in runs if key in run]
        if series:
            group.curves[key] = curve_of(series)
    group.gradient = layers_of(runs, GRAD_KEY)
    group.effect = layers_of(runs, EFFECT_KEY)


def _group_value(row: dict, key: str) -> Any:
    return row["overrides"][key] if key in row["overrides"] else row["params"].get(key)


def curve_of(series: Sequence[np.ndarray]) -> Curve:
    """Mean, sample std and count per step over curves of possibly different lengths."""
    if len(series) == 1:  # the same numbers as below: x / 1 is x, no std from one value
        finite = np.isfinite(series[0])
        return Curve(np.where(finite, series[0], np.nan), np.full(len(series[0]), np.nan),
                     finite.astype(np.int64))
    length = max(len(s) for s in series)
    stack = np.full((len(series), length), np.nan)
    for i, values in enumerate(series):
        stack[i, :len(values)] = values
    finite = np.isfinite(stack)
    count = finite.sum(axis=0)
    total = np.where(finite, stack, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        squares = np.where(finite, (stack - mean) ** 2, 0.0).sum(axis=0)
        std = np.where(count > 1, np.sqrt(squares / np.maximum(count - 1, 1)), np.nan)
    return Curve(mean, std, count)


def layers_of(runs: Sequence[dict[str, np.ndarray]], pattern: re.Pattern
              ) -> np.ndarray | None:
    """(layers, epochs) mean over runs of the per-layer keys ``pattern`` matches
    (``grad_norm/layer{i}``); None without any."""
    layers: dict[int, list[np.ndarray]] = {}
    for run in runs:
        for key, values in run.items():
            match = pattern.match(key)
            if match:
                layers.setdefault(int(match.group(1)), []).append(values)
    if not layers:
        return None
    rows = [curve_of(layers[i]).mean if i in layers else np.array([np.nan])
            for i in range(1, max(layers) + 1)]
    length = max(len(r) for r in rows)
    return np.vstack([np.pad(r, (0, length - len(r)), constant_values=np.nan) for r in rows])


# ---- reading curves from the store -------------------------------------------------------
def wanted(key: str, metric: str) -> bool:
    return key in COST_KEYS or key == metric or key.startswith(LAYER_PREFIXES)


def curve_keys(keys: Iterable[str], metric: str) -> list[str]:
    """The keys the report draws among those the trials recorded (``keys``: their
    summaries' keys, ``Loaded.metric_keys``)."""
    return sorted({key for key in keys if wanted(key, metric)} | {metric})


def load_histories(tracking_uri: str, run_ids: Iterable[str], metric: str,
                   keys: Sequence[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """run id -> key -> values by step (NaN where a step is missing) of the costs, the
    metric and the per-layer gradient norms (``keys``, when known: the query then finds
    them by the metrics table's primary key); ``iter_histories``, every chunk kept."""
    histories: dict[str, dict[str, np.ndarray]] = {}
    for _, chunk in iter_histories(tracking_uri, run_ids, metric, keys):
        histories.update(chunk)
    return histories


def iter_histories(tracking_uri: str, run_ids: Iterable[str], metric: str,
                   keys: Sequence[str] | None = None, *, runs_per_read: int | None = None
                   ) -> Iterator[tuple[list[str], dict[str, dict[str, np.ndarray]]]]:
    """(run ids, their histories) a chunk of runs at a time, in the order given (empty and
    repeated ids left out): through the MLflow adapter ``runs_per_read`` runs a query
    (default ``mlflow_sql.RUNS_PER_READ``),
    each chunk made arrays before the next is read; else through the client, a run at a
    time. A run without any value has no history in its chunk."""
    from nnchain.tracking import mlflow_sql

    run_ids = [r for r in dict.fromkeys(run_ids) if r]
    with mlflow_sql.tables_of(tracking_uri) as tables:
        if tables is not None:
            size = min(runs_per_read or mlflow_sql.RUNS_PER_READ, mlflow_sql.RUNS_PER_READ)
            for start in range(0, len(run_ids), size):
                chunk = run_ids[start:start + size]
                reads = tables.metric_values(chunk, sorted(keys)) if keys else \
                    tables.metric_values(chunk, sorted({*COST_KEYS, metric}),
                                         key_prefixes=LAYER_PREFIXES)
                points: dict[str, dict[str, list[tuple[int, float]]]] = {}
                for rows in reads:
                    for run_id, key, step, value, is_nan in rows:
                        points.setdefault(run_id, {}).setdefault(key, []).append(
                            (int(step), math.nan if is_nan else float(value)))
                yield chunk, _arrays(points)
            return
    if run_ids:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri)
        for run_id in run_ids:
            yield [run_id], _arrays(_client_points(client, [run_id], metric))


def _arrays(points: dict[str, dict[str, list[tuple[int, float]]]]
            ) -> dict[str, dict[str, np.ndarray]]:
    return {run_id: {key: _by_step(pairs) for key, pairs in keys.items()}
            for run_id, keys in points.items()}


def _client_points(client, run_ids: list[str], metric: str):
    points: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run_id in run_ids:
        for key in client.get_run(run_id).data.metrics:
            if wanted(key, metric):
                points.setdefault(run_id, {})[key] = [
                    (m.step, m.value) for m in client.get_metric_history(run_id, key)]
    return points


def _by_step(pairs: list[tuple[int, float]]) -> np.ndarray:
    steps = np.array([s for s, _ in pairs], dtype=int)
    values = np.full(int(steps.max()) + 1 if steps.size else 0, np.nan)
    values[steps] = [v for _, v in pairs]
    return values
