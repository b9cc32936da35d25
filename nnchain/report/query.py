"""Loading the trials of one or more sweeps from the ledger as plain dicts, in two SELECTs.

One SELECT finds the sweeps named on the command line (by id, name or unique id prefix),
one more reads every trial of those sweeps, only the columns a comparison shows. No
per-trial queries and no MLflow.

``load_shown`` is the lean variant for a comparison that shows only the default columns:
each row's params and summary hold just the cells' params and the sweeps' metrics, read
from an SQLite ledger without SQLAlchemy (``nnchain.ledger.reading``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from sys import intern
from typing import TYPE_CHECKING, Any

from nnchain.ledger.reading import MIN_PREFIX

if TYPE_CHECKING:
    from nnchain.ledger.store import Ledger


@dataclass(frozen=True)
class SweepInfo:
    """What a comparison needs to know about one sweep."""

    id: str
    name: str
    metric_name: str
    metric_goal: str  # "minimize" | "maximize"
    status: str
    trial_count: int


@dataclass(frozen=True)
class Loaded:
    """The sweeps asked for, in the order given, and their trials as row dicts.

    Each row holds ``sweep``, ``sweep_id``, ``metric_name`` (the sweep's), ``index``,
    ``key``, ``repeat``, ``state``, ``reason``, ``run_id``, ``attempt``, ``epochs``,
    ``train_seconds``, ``metric`` (the ledger's value of the sweep's metric), ``params``
    (the resolved config, flattened to dotted keys), ``overrides`` (the cell's own dotted
    keys and values) and ``summary`` (metric key -> ``{"last", "min", "max"}``).
    Rows come sweep by sweep, by trial index.
    """

    sweeps: list[SweepInfo]
    rows: list[dict[str, Any]]
    # Rows cut to what a report shows (``load_for_report``) keep here the keys every
    # trial's params and summary had, in first-seen order; None: read them off the rows.
    known_params: tuple[str, ...] | None = None
    known_metrics: tuple[str, ...] | None = None

    def param_keys(self) -> tuple[str, ...]:
        """Every param key of the trials, in first-seen order."""
        if self.known_params is not None:
            return self.known_params
        return tuple(dict.fromkeys(key for row in self.rows for key in row["params"]))

    def metric_keys(self) -> tuple[str, ...]:
        """Every metric key of the trials' summaries, in first-seen order."""
        if self.known_metrics is not None:
            return self.known_metrics
        return tuple(dict.fromkeys(key for row in self.rows for key in row["summary"]))


def load_trials(ledger: Ledger, refs: Sequence[str]) -> Loaded:
    """The trials of the sweeps named by ``refs`` (names, ids or unique id prefixes).

    A ref that names no sweep raises ``SpecError`` (field ``SWEEP``) with a suggestion;
    a sweep named twice is loaded once.
    """
    from sqlalchemy import select

    from nnchain.ledger.models import Trial

    sweeps = load_trials_of(ledger, refs)
    by_id = {sweep.id: sweep for sweep in sweeps}
    order = {sweep.id: position for position, sweep in enumerate(sweeps)}
    with ledger.session() as session:
        columns = (Trial.sweep_id, Trial.index, Trial.key, Trial.repeat, Trial.state,
                   Trial.reason, Trial.run_id, Trial.attempt, Trial.epochs,
                   Trial.train_seconds, Trial.metric, Trial.config, Trial.overrides,
                   Trial.summary)
        result = session.execute(select(*columns).where(Trial.sweep_id.in_(list(by_id))))
        rows = [_row(by_id, record) for record in result]
    rows.sort(key=lambda row: (order[row["sweep_id"]], row["index"]))
    return Loaded(sweeps, rows)


ROWS_PER_READ = 500  # trials decoded at a time when a report streams them


def load_for_report(ledger: Ledger, ref: str, *, metric: str | None = None,
                    group_by: Sequence[str] | None = None) -> Loaded:
    """The trials of sweep ``ref`` as ``load_trials`` gives them, cut to what its report
    reads: each row's params hold the cells' params, the ``group_by`` keys and ``metric``
    (when a param has that name), its summary the sweep's metric and ``metric``. Every
    trial's keys are kept on the side (``Loaded.known_params``, ``known_metrics``).

    Streamed, ``ROWS_PER_READ`` trials decoded at a time: a sweep's every config and
    summary is never held at once. Read twice when a cell's param first appears after
    other trials were cut without it."""
    from sqlalchemy import select

    from nnchain.ledger.models import Trial

    sweeps = load_trials_of(ledger, [ref])
    (sweep,) = sweeps
    columns = (Trial.sweep_id, Trial.index, Trial.key, Trial.repeat, Trial.state,
               Trial.reason, Trial.run_id, Trial.attempt, Trial.epochs, Trial.train_seconds,
               Trial.metric, Trial.config, Trial.overrides, Trial.summary)
    statement = select(*columns).where(Trial.sweep_id == sweep.id) \
        .order_by(Trial.index, Trial.id).execution_options(yield_per=ROWS_PER_READ)
    by_id = {sweep.id: sweep}

    def rows():
        with ledger.session() as session:
            for record in session.execute(statement):
                yield _row(by_id, record)

    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    swept: dict[str, None] = {}  # the cells' params, shown in results.csv and the charts
    kept_metrics = {sweep.metric_name, *([metric] if metric else [])}
    extra = {*(group_by or ()), *([metric] if metric else [])}

    def cut(row: dict[str, Any]) -> dict[str, Any]:
        # every row's keys and states are the same few texts: held once (sys.intern)
        row["params"] = {intern(k): v for k, v in row["params"].items()
                         if k in swept or k in extra}
        row["summary"] = {intern(k): _interned(v) for k, v in row["summary"].items()
                          if k in kept_metrics}
        row["overrides"] = {intern(k): v for k, v in row["overrides"].items()}
        row["state"] = intern(row["state"])
        return row

    slim = []
    late = False  # a cell's param first seen after some rows were cut without it
    for row in rows():
        params.update(dict.fromkeys(row["params"]))
        metrics.update(dict.fromkeys(row["summary"]))
        late = late or (bool(slim) and not swept.keys() >= row["overrides"].keys())
        swept.update(dict.fromkeys(row["overrides"]))
        slim.append(cut(row))
    if late:  # seldom: cells that set different params; cut again, knowing them all
        slim = [cut(row) for row in rows()]
    return Loaded(sweeps, slim, known_params=tuple(params), known_metrics=tuple(metrics))


def _interned(entry: Any) -> Any:
    return {intern(k): v for k, v in entry.items()} if isinstance(entry, dict) else entry


def load_trials_of(ledger: Ledger, refs: Sequence[str]) -> list[SweepInfo]:
    """The sweeps ``refs`` name, as ``load_trials`` finds them (``SpecError`` for one that
    names none)."""
    from sqlalchemy import or_, select

    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.ledger.models import Sweep

    refs = list(dict.fromkeys(refs))
    with ledger.session() as session:
        prefixes = [Sweep.id.like(f"{ref}%") for ref in refs if len(ref) >= MIN_PREFIX]
        candidates = list(session.scalars(select(Sweep).where(
            or_(Sweep.id.in_(refs), Sweep.name.in_(refs), *prefixes))))
        found = [_pick(ref, candidates) for ref in refs]
    if any(sweep is None for sweep in found):
        missing = next(ref for ref, sweep in zip(refs, found, strict=True) if sweep is None)
        ledger_ops.find_sweep(ledger, missing)  # raises SpecError with a did-you-mean
    return [_info(sweep) for sweep in dict.fromkeys(found)]


def _pick(ref: str, candidates: list) -> Any:
    """The sweep ``ref`` names, with ``find_sweep``'s precedence: id, name, unique prefix."""
    for matches in ((s for s in candidates if s.id == ref),
                    (s for s in candidates if s.name == ref)):
        sweep = next(matches, None)
        if sweep is not None:
            return sweep
    if len(ref) < MIN_PREFIX:
        return None
    by_prefix = [s for s in candidates if s.id.startswith(ref)]
    return by_prefix[0] if len(by_prefix) == 1 else None


def _info(sweep) -> SweepInfo:
    return SweepInfo(sweep.id, sweep.name, sweep.metric_name, sweep.metric_goal, sweep.status,
                     sweep.trial_count)


def _row(sweeps: dict[str, SweepInfo], record: Any) -> dict[str, Any]:
    from nnchain.params import PARAM_DEFAULTS, flatten

    (sweep_id, index, key, repeat, state, reason, run_id, attempt, epochs, train_seconds,
     metric, config, overrides, summary) = record
    return _fields(sweeps[sweep_id], sweep_id, index, key, repeat, state, reason, run_id,
                   attempt, epochs, train_seconds, metric,
                   {**PARAM_DEFAULTS, **flatten(config or {})},  # as MLflow's params
                   overrides or {}, summary or {})


def _fields(sweep: SweepInfo, sweep_id, index, key, repeat, state, reason, run_id, attempt,
            epochs, train_seconds, metric, params, overrides, summary) -> dict[str, Any]:
    return {"sweep": sweep.name, "sweep_id": sweep_id, "metric_name": sweep.metric_name,
            "index": index, "key": key, "repeat": repeat, "state": state,
            "reason": reason or "", "run_id": run_id or "", "attempt": attempt,
            "epochs": epochs, "train_seconds": train_seconds, "metric": metric,
            "params": params, "overrides": overrides, "summary": summary}


# ---- the lean load -----------------------------------------------------------------------
def load_shown(ledger_url: str, refs: Sequence[str]) -> Loaded | None:
    """The trials of the sweeps ``refs`` (none: the newest sweep) as ``load_trials`` gives
    them, except that each row's ``params`` holds only the params some trial's cell sets
    (with ``PARAM_DEFAULTS``' value where its config has none) and its ``summary`` only the
    sweeps' own metrics: what a comparison with its default columns and sort reads.

    None when the ledger cannot be read directly (``nnchain.ledger.reading``) or a ref
    names no sweep: ``load_trials`` then reads it, or says what is wrong."""
    from contextlib import closing

    from nnchain.ledger import reading

    connection = reading.connect(ledger_url)
    if connection is None:
        return None
    with closing(connection):
        if refs:
            refs = list(dict.fromkeys(refs))
            candidates = reading.sweeps_named(connection, refs)
            if candidates is None:
                return None
            found = [_pick(ref, [_Named(c) for c in candidates]) for ref in refs]
        else:
            newest = reading.newest_sweep(connection)
            found = [None if newest is None else _Named(newest)]
        if any(sweep is None for sweep in found):
            return None
        sweeps = [_info(sweep) for sweep in dict.fromkeys(found)]
        metrics = list(dict.fromkeys(sweep.metric_name for sweep in sweeps))
        ids = [sweep.id for sweep in sweeps]
        # one read when every cell sets the params the first one sets (a grid, a random
        # search); else a second read of the params the cells name
        guess = reading.first_overrides(connection, ids)
        guessed = list(_json(guess) or {}) if guess is not None else []
        paths = [("summary", [metric]) for metric in metrics]
        paths += [("config", path.split(".")) for path in guessed]
        records = reading.trial_values(connection, ids, paths=paths)
        if records is None:
            return None
        fields = len(reading.TRIAL_COLUMNS)  # overrides last
        cells = [_json(record[fields - 1] or "null") or {} for record in records]
        swept = list(dict.fromkeys(key for cell in cells for key in cell))
        shown = fields + len(metrics)  # where the config's values start
        if swept == guessed:
            params = [(*record[shown:shown + len(swept)], record[-1]) if swept else ()
                      for record in records]
        else:
            read = reading.trial_values(connection, ids, columns=["id"],
                                        paths=[("config", path.split(".")) for path in swept])
            if read is None or len(read) != len(records) or \
                    any(r[0] != record[0] for r, record in zip(read, records, strict=True)):
                return None
            params = [values[1:] for values in read]
    summary_at = shown + len(guessed)  # the whole summary's text
    summaries = [(record[fields:shown], record[summary_at]) for record in records]
    return Loaded(sweeps, _lean_rows(sweeps, records, cells, summaries, params, metrics,
                                     swept))


_SCAN = json.JSONDecoder().scan_once  # json.loads' own decoder, without its checks


def _json(text: str) -> Any:
    """``json.loads(text)``: decoded by the scanner alone when the value fills the text."""
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else json.loads(text)


@dataclass(frozen=True, eq=False)
class _Named:
    """A sweep row from ``reading`` with the attributes ``_pick`` and ``_info`` read."""

    row: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.row[name]
        except KeyError:
            raise AttributeError(name) from None

    def __hash__(self) -> int:
        return hash(self.row["id"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Named) and other.row["id"] == self.row["id"]


def _lean_rows(sweeps: list[SweepInfo], records: list[tuple], cells: list[dict],
               summaries: list[tuple], params: list[tuple], metrics: list[str],
               swept: list[str]) -> list[dict[str, Any]]:
    """Rows from the trials' ``records`` (``TRIAL_COLUMNS``), their ``cells``, their
    ``summaries`` (the metrics' JSON texts, the whole summary's text) and their ``params``
    (the ``swept`` params' JSON texts, then the whole config's text when any)."""
    from nnchain.ledger.reading import unusual
    from nnchain.params import PARAM_DEFAULTS, flatten

    by_id = {sweep.id: sweep for sweep in sweeps}
    order = {sweep.id: position for position, sweep in enumerate(sweeps)}
    scan = _SCAN  # SQLite's own text of a value: no checks needed
    rows = []
    for record, cell, (texts, summary_text), values in zip(records, cells, summaries, params,
                                                           strict=True):
        if not unusual(summary_text):
            summary = {metric: scan(text, 0)[0] for metric, text in zip(metrics, texts,
                                                                       strict=True)
                       if text is not None}
        else:  # holds NaN or Infinity: decoded here as load_trials decodes it
            whole = json.loads(summary_text) or {}
            summary = {metric: whole[metric] for metric in metrics if metric in whole}
        config_text = values[-1] if swept else None
        if not unusual(config_text):
            shown = {}
            for path, text in zip(swept, values, strict=False):
                value = None if text is None else scan(text, 0)[0]
                if text is None or isinstance(value, dict):  # flatten() has no such key
                    if path in PARAM_DEFAULTS:
                        shown[path] = PARAM_DEFAULTS[path]
                else:
                    shown[path] = value
        else:
            flat = {**PARAM_DEFAULTS, **flatten(json.loads(config_text) or {})}
            shown = {path: flat[path] for path in swept if path in flat}
        (_, sweep_id, index, key, repeat, state, reason, run_id, attempt, epochs,
         train_seconds, metric) = record[:12]
        sweep = by_id[sweep_id]
        rows.append({"sweep": sweep.name, "sweep_id": sweep_id,
                     "metric_name": sweep.metric_name, "index": index, "key": key,
                     "repeat": repeat, "state": state, "reason": reason or "",
                     "run_id": run_id or "", "attempt": attempt, "epochs": epochs,
                     "train_seconds": train_seconds, "metric": metric, "params": shown,
                     "overrides": cell, "summary": summary})
    if len(sweeps) > 1:
        rows.sort(key=lambda row: (order[row["sweep_id"]], row["index"]))
    else:
        rows.sort(key=itemgetter("index"))
    return rows
