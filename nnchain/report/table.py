"""Turning loaded trials into a comparison: columns, ranking, grouping over seeds.

A ``Comparison`` is plain data (columns and records of raw values); ``nnchain.report.output``
prints it as a table, CSV or JSON. Ranking never puts a trial without a finite value of
the sort key first: such trials (failed, diverged, unfinished, a param that does not
apply) always come after the ranked ones, in trial order, whichever the direction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from nnchain.errors import SpecError
from nnchain.ledger.states import FINISHED, PRUNED
from nnchain.params import param_value
from nnchain.report.keys import Catalog, Key, unique
from nnchain.report.query import Loaded, SweepInfo

STAT_NAMES = ("mean", "std", "min", "max", "count")
TRIALS_COLUMN = "trials"


@dataclass(frozen=True)
class Column:
    """One output column: its header and whether its values are numbers."""

    name: str
    numeric: bool


@dataclass(frozen=True)
class Sort:
    """A ranking: by ``key`` (or an output column ``column`` when grouped), best first."""

    key: Key | None
    descending: bool
    column: str | None = None

    def describe(self) -> str:
        name = self.column or (self.key.name if self.key else "")
        return f"{name} {'descending' if self.descending else 'ascending'}"


@dataclass
class Comparison:
    """What ``nnchain compare`` shows: columns, records (column -> raw value) and context."""

    columns: list[Column]
    records: list[dict[str, Any]]
    sweeps: list[SweepInfo]
    total: int  # trials in the sweeps
    matched: int  # trials that pass every --where
    grouped: bool = False
    sort: str = ""


# ---- columns -------------------------------------------------------------------------------
def default_keys(loaded: Loaded, rows: Sequence[dict]) -> list[Key]:
    """sweep (several sweeps), index, state, the cells' params, the sweeps' metrics, epochs,
    and reason when a shown trial has one."""
    keys = [Key("sweep", "field", "sweep")] if len(loaded.sweeps) > 1 else []
    keys += [Key("index", "field", "index"), Key("state", "field", "state")]
    swept: dict[str, None] = {}
    for row in loaded.rows:
        swept.update(dict.fromkeys(row["overrides"]))
    keys += [Key(path, "param", path) for path in swept]
    keys += [Key(name, "metric", name) for name in dict.fromkeys(
        s.metric_name for s in loaded.sweeps)]
    keys.append(Key("epochs", "field", "epochs"))
    if any(row["reason"] for row in rows):
        keys.append(Key("reason", "field", "reason"))
    return keys


def chosen_keys(texts: Sequence[str], catalog: Catalog, defaults: list[Key]) -> list[Key]:
    """``--columns``: the keys named; when every one starts with ``+``, the defaults plus them."""
    if texts and all(text.startswith("+") for text in texts):
        added = [catalog.resolve(text[1:], "--columns") for text in texts]
        return unique([*defaults, *added])
    return unique(catalog.resolve(text, "--columns") for text in texts)


# ---- ranking -------------------------------------------------------------------------------
def parse_sort(text: str | None, catalog: Catalog, loaded: Loaded) -> Sort:
    """``KEY`` ascending, ``-KEY`` descending (``+KEY`` ascending too); None: the first
    sweep's metric, best first by its goal."""
    if text is None or not text.strip():
        first = loaded.sweeps[0]
        return Sort(Key(first.metric_name, "metric", first.metric_name),
                    first.metric_goal == "maximize")
    text = text.strip()
    descending = text.startswith("-")
    return Sort(catalog.resolve(text.lstrip("+-"), "--sort"), descending)


def rank(rows: Sequence[dict], sort: Sort) -> list[dict]:
    """Rows ordered by ``sort``; by a metric, PRUNED trials (stopped early, their value
    from fewer epochs) after the finished ones, ranked among themselves; rows without a
    rank value after the others, in given order."""
    ranked: list[tuple] = []
    pruned: list[tuple] = []
    unranked: list[tuple] = []
    for row in rows:
        value = sort.key.rank_value(row)
        if value is None and sort.key.kind == "metric" and row["state"] == PRUNED:
            value = sort.key.value(row)
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            (unranked if value is None else pruned).append((row, value))
            continue
        (unranked if value is None else ranked).append((row, value))
    for tier in (ranked, pruned):
        tier.sort(key=_pair_order(tier), reverse=sort.descending)
    return [row for row, _ in ranked + pruned + unranked]


def _pair_order(pairs: list[tuple]) -> Callable[[tuple], Any]:
    """The sort key of (row, value) pairs: ``order_value``'s order; floats alone (a
    metric's) need no tuple to keep it."""
    if all(type(value) is float for _, value in pairs):
        return itemgetter(1)
    return lambda pair: order_value(pair[1])


def order_value(value: Any) -> tuple:
    """A sort key that orders numbers numerically, lists of numbers element-wise, the rest
    as the text MLflow shows, without ever comparing across those kinds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), ())
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return (1, 0.0, tuple(float(v) for v in value))
    return (2, 0.0, (param_value(value),))


def columns_of(keys: Sequence[Key], records: Sequence[dict[str, Any]]) -> list[Column]:
    """Columns for ``keys``; a param whose shown values are all numbers counts as numeric
    (right-aligned), as ``train.lr`` or ``seed`` do."""
    return [Column(key.name, key.numeric or (key.kind == "param" and _all_numbers(
        record[key.name] for record in records))) for key in keys]


def _all_numbers(values) -> bool:
    present = [value for value in values if value is not None]
    return bool(present) and all(isinstance(value, int | float) and not isinstance(value, bool)
                                 for value in present)


def flat_records(rows: Sequence[dict], keys: Sequence[Key]) -> list[dict[str, Any]]:
    """One record per row: each key's name -> its value (read a column at a time)."""
    if not keys:
        return [{} for _ in rows]
    names = [key.name for key in keys]
    columns = [list(map(key.reader(), rows)) for key in keys]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


# ---- grouping ------------------------------------------------------------------------------
def group_keys(texts: Sequence[str], catalog: Catalog) -> list[Key]:
    keys = unique(catalog.resolve(text, "--group-by") for text in texts)
    for key in keys:
        if key.kind == "metric":
            raise SpecError("--group-by", f"each key must be a param (model.activation) or a "
                                          f"trial field (sweep, state), got the metric "
                                          f"{key.name!r}")
    return keys


def stat_keys(keys: Sequence[Key], by: Sequence[Key]) -> list[Key]:
    """The columns summarised per group: the numeric ones that are not group keys.

    A non-numeric column other than a group key has no single value per group: refused.
    """
    grouped = {key.name for key in by}
    for key in keys:
        if key.name not in grouped and not key.numeric:
            raise SpecError("--columns", f"with --group-by, each column must be a group key "
                                         f"({', '.join(grouped)}) or a number (a metric, "
                                         f"epochs, train_seconds), got {key.name!r}")
    return [key for key in keys if key.numeric and key.name not in grouped]


def finished_values(rows: Sequence[dict], key: Key) -> list[float]:
    """``key``'s finite values over the FINISHED trials of ``rows``."""
    values = []
    for row in rows:
        if row["state"] != FINISHED:
            continue
        value = key.value(row)
        if isinstance(value, int | float) and not isinstance(value, bool) and \
                math.isfinite(value):
            values.append(float(value))
    return values


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """mean, sample std (ddof=1; None for fewer than 2 values), min, max and count."""
    count = len(values)
    if not count:
        return {"mean": None, "std": None, "min": None, "max": None, "count": 0}
    mean = math.fsum(values) / count
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (count - 1)) \
        if count > 1 else None
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "count": count}


def group_rows(rows: Sequence[dict], by: Sequence[Key], stats: Sequence[Key]
               ) -> tuple[list[dict[str, Any]], list[list[dict]]]:
    """One record per distinct value of the ``by`` keys (in first-seen order), with the
    count of all its trials and the statistics of each ``stats`` key; and the rows of each."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        identity = tuple(_hashable(key.value(row)) for key in by)
        groups.setdefault(identity, []).append(row)
    records = []
    for members in groups.values():
        record: dict[str, Any] = {key.name: key.value(members[0]) for key in by}
        record[TRIALS_COLUMN] = len(members)
        for key in stats:
            for stat, value in summarize(finished_values(members, key)).items():
                record[f"{key.name}.{stat}"] = value
        records.append(record)
    return records, list(groups.values())


def group_columns(by: Sequence[Key], stats: Sequence[Key], records: Sequence[dict[str, Any]]
                  ) -> list[Column]:
    return [*columns_of(by, records), Column(TRIALS_COLUMN, True),
            *(Column(f"{key.name}.{stat}", True) for key in stats for stat in STAT_NAMES)]


def parse_group_sort(text: str | None, catalog: Catalog, loaded: Loaded, by: Sequence[Key],
                     columns: Sequence[Column]) -> Sort:
    """With --group-by, ``--sort`` names an output column (``val_cost.std``, ``trials``, a
    group key) or a metric, whose mean ranks the groups; default: the first sweep's metric."""
    if text is not None and text.strip():
        name = text.strip().lstrip("+-")
        if name in {column.name for column in columns}:
            return Sort(None, text.strip().startswith("-"), column=name)
    sort = parse_sort(text, catalog, loaded)
    if not sort.key.numeric and sort.key.name not in {key.name for key in by}:
        raise SpecError("--sort", f"with --group-by, must be a group key, an output column "
                                  f"or a metric, got {sort.key.name!r}")
    return sort


def rank_groups(records: list[dict], members: list[list[dict]], sort: Sort) -> list[dict]:
    """Groups ordered by ``sort``: a column's value, or a metric's mean over finished trials;
    groups without a value come last."""
    ranked, unranked = [], []
    for record, rows in zip(records, members, strict=True):
        if sort.column is not None:
            value = record[sort.column]
        elif sort.key.numeric:
            value = summarize(finished_values(rows, sort.key))["mean"]
        else:
            value = sort.key.value(rows[0])
        (unranked if value is None else ranked).append((record, value))
    ranked.sort(key=lambda pair: order_value(pair[1]), reverse=sort.descending)
    return [record for record, _ in ranked] + [record for record, _ in unranked]


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
