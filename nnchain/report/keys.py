"""The keys a comparison can show, sort, filter and group by, and how each reads a row.

Three kinds of key:

- a *field* of the trial: ``sweep``, ``sweep_id``, ``index``, ``key``, ``repeat``,
  ``state`` (alias ``status``), ``reason``, ``run_id``, ``attempt``, ``epochs``,
  ``train_seconds``;
- a *param*: a dotted key of the resolved config (``train.lr``, ``model.hidden``, ``seed``);
- a *metric*: a key of the trials' summaries (``val_cost``, ``grad_norm/layer1``), its last
  value, or ``.last`` / ``.min`` / ``.max`` of its curve (``val_cost.min``).

A metric's value is read whatever the trial's state (a RUNNING trial shows its latest
value); only FINISHED trials are *ranked* or counted in group statistics by a metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any

from nnchain.errors import SpecError
from nnchain.ledger.states import FINISHED
from nnchain.report.query import Loaded

TRIAL_FIELDS = ("sweep", "sweep_id", "index", "key", "repeat", "state", "reason", "run_id",
                "attempt", "epochs", "train_seconds")
NUMERIC_FIELDS = ("index", "repeat", "attempt", "epochs", "train_seconds")
ALIASES = {"status": "state"}
STATS = ("last", "min", "max")
# Metrics every trial records; known even before any trial has finished.
BASE_METRICS = ("train_cost", "val_cost", "train_accuracy", "val_accuracy", "lr")


@dataclass(frozen=True)
class Key:
    """One resolved key: ``name`` is its column header, ``kind`` field | param | metric."""

    name: str
    kind: str
    path: str  # the field, the dotted param key, or the metric key
    stat: str = "last"  # which value of a metric's curve

    @property
    def numeric(self) -> bool:
        """Whether the key's values are numbers (right-aligned, averaged when grouped)."""
        return self.kind == "metric" or (self.kind == "field" and self.path in NUMERIC_FIELDS)

    def value(self, row: dict[str, Any]) -> Any:
        """This key's value in ``row`` (None when the trial has none)."""
        if self.kind == "field":
            return row[self.path]
        if self.kind == "param":
            return row["params"].get(self.path)
        entry = row["summary"].get(self.path)
        if entry is None:
            # the sweep's own metric is also a ledger column
            return row["metric"] if self.stat == "last" and row.get("metric_name") == \
                self.path else None
        return entry.get(self.stat)

    def reader(self) -> Callable[[dict[str, Any]], Any]:
        """``value`` as a plain function of the row (a field's is ``itemgetter``'s)."""
        if self.kind == "field":
            return itemgetter(self.path)
        if self.kind == "param":
            path = self.path
            return lambda row: row["params"].get(path)
        return self.value

    def rank_value(self, row: dict[str, Any]) -> Any:
        """The value used to rank ``row``, or None when it must rank after every other.

        Metrics rank only FINISHED trials with a finite value, so a failed, diverged or
        unfinished trial is never ranked best.
        """
        if self.kind == "metric" and row["state"] != FINISHED:
            return None
        value = self.value(row)
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value


class Catalog:
    """The keys known for a set of loaded trials; resolves user text to a ``Key``.

    The known keys are gathered when first asked for: a comparison that resolves no key
    (the default columns and sort) never walks every trial's params."""

    def __init__(self, loaded: Loaded) -> None:
        self.loaded = loaded

    @cached_property
    def params(self) -> tuple[str, ...]:
        from nnchain.config import FIELDS

        params: dict[str, None] = dict.fromkeys(FIELDS)
        params.update(dict.fromkeys(self.loaded.param_keys()))
        return tuple(params)

    @cached_property
    def metrics(self) -> tuple[str, ...]:
        metrics: dict[str, None] = dict.fromkeys(BASE_METRICS)
        metrics.update(dict.fromkeys(s.metric_name for s in self.loaded.sweeps))
        metrics.update(dict.fromkeys(self.loaded.metric_keys()))
        return tuple(metrics)

    def names(self) -> tuple[str, ...]:
        """Every key a user may type (metric stats spelled out), for suggestions."""
        return (*TRIAL_FIELDS, *ALIASES, *self.params, *self.metrics,
                *(f"{m}.{s}" for m in self.metrics for s in STATS))

    def find(self, text: str) -> Key | None:
        """The key ``text`` names, or None."""
        text = text.strip()
        field = ALIASES.get(text, text)
        if field in TRIAL_FIELDS:
            return Key(field, "field", field)
        if text in self.params:
            return Key(text, "param", text)
        if text in self.metrics:
            return Key(text, "metric", text)
        base, _, stat = text.rpartition(".")
        if stat in STATS and base in self.metrics:
            return Key(text, "metric", base, stat)
        return None

    def resolve(self, text: str, option: str, *, given: str = "") -> Key:
        """The key ``text`` names; unknown -> ``SpecError`` on ``option`` with a suggestion.

        ``given`` is the whole option value, quoted in the message when it is more than
        the key (a ``--where`` expression).
        """
        key = self.find(text)
        if key is not None:
            return key
        text = text.strip()
        within = f" in {given!r}" if given and given.strip() != text else ""
        raise SpecError(option, f"each key must be a param (train.lr), a metric (val_cost, "
                                f"val_cost.min) or a trial field ({', '.join(TRIAL_FIELDS)}), "
                                f"got {text!r}{within}{self.suggest(text)}")

    def suggest(self, text: str) -> str:
        from nnchain.config import did_you_mean

        hint = did_you_mean(text, self.names())
        if hint:
            return hint
        tails = [p for p in self.params if p.endswith(f".{text}")]
        return f"; did you mean '{tails[0]}'?" if len(tails) == 1 else ""


def split_keys(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (empty items dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def unique(keys: Iterable[Key]) -> list[Key]:
    """Keys in order, each name once."""
    seen: dict[str, Key] = {}
    for key in keys:
        seen.setdefault(key.name, key)
    return list(seen.values())
