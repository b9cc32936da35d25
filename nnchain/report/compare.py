"""``compare_sweeps``: the service behind ``nnchain compare``, reading the ledger only.

Rows are the trials of the given sweeps. Every option is checked against the keys the
trials have before anything is computed, and a wrong one raises ``SpecError`` naming the
option, what must hold and what was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nnchain.errors import SpecError
from nnchain.report import table
from nnchain.report.keys import Catalog
from nnchain.report.query import Loaded, load_shown, load_trials
from nnchain.report.table import Comparison

if TYPE_CHECKING:
    from nnchain.ledger.store import Ledger


def __getattr__(name: str):
    if name == "open_existing_ledger":  # re-exported; SQLAlchemy only when asked for
        from nnchain.ledger.store import open_existing_ledger

        return open_existing_ledger
    raise AttributeError(name)


def compare_at(tracking_uri: str | None, ledger_url: str | None, refs: Sequence[str], *,
               where: Sequence[str] = (), sort: str | None = None, top: int | None = None,
               columns: Sequence[str] | None = None,
               group_by: Sequence[str] | None = None) -> Comparison:
    """``compare_sweeps`` on the ledger beside ``tracking_uri`` (or at ``ledger_url``).

    The default comparison (no ``where``, ``sort``, ``columns`` or ``group_by``) of an
    SQLite ledger reads only what it shows (``query.load_shown``), without SQLAlchemy;
    anything else opens the ledger (``open_existing_ledger``) and loads every trial."""
    if not (where or sort or columns or group_by):
        from nnchain.ledger.location import resolve_ledger_url
        from nnchain.tracking.store import resolve_tracking_uri

        url = resolve_ledger_url(resolve_tracking_uri(tracking_uri), ledger_url)
        loaded = load_shown(url, refs)
        if loaded is not None:
            return compare_loaded(loaded, top=top)
    from nnchain.ledger.store import open_existing_ledger

    ledger = open_existing_ledger(tracking_uri, ledger_url)
    try:
        return compare_sweeps(ledger, refs, where=where, sort=sort, top=top, columns=columns,
                              group_by=group_by)
    finally:
        ledger.dispose()


def compare_sweeps(ledger: Ledger, refs: Sequence[str], *, where: Sequence[str] = (),
                   sort: str | None = None, top: int | None = None,
                   columns: Sequence[str] | None = None,
                   group_by: Sequence[str] | None = None) -> Comparison:
    """Compare the trials of the sweeps ``refs`` (names, ids or unique id prefixes); no
    refs: the newest sweep of the ledger, as ``nnchain sweep status`` takes it.

    ``where``: ``KEY OP VALUE`` expressions that must all hold (see ``filters``).
    ``sort``: ``KEY`` ascending or ``-KEY`` descending; default the first sweep's metric,
    best first. Trials without a finite value of the key always come last.
    ``top``: keep the first N rows (groups when grouping).
    ``columns``: the keys to show; all prefixed ``+``: added to the default columns.
    ``group_by``: one record per distinct value of these keys, with the mean, sample std,
    min, max and count of each numeric column over its FINISHED trials, and ``trials``, the
    count of all its trials.
    """
    if not refs:
        from nnchain.ledger.report import newest_sweep

        refs = [newest_sweep(ledger).id]
    return compare_loaded(load_trials(ledger, refs), where=where, sort=sort, top=top,
                          columns=columns, group_by=group_by)


def compare_loaded(loaded: Loaded, *, where: Sequence[str] = (), sort: str | None = None,
                   top: int | None = None, columns: Sequence[str] | None = None,
                   group_by: Sequence[str] | None = None) -> Comparison:
    """``compare_sweeps`` on trials already loaded."""
    if top is not None and top < 1:
        raise SpecError("--top", f"must be >= 1, got {top}")
    catalog = Catalog(loaded)
    rows = loaded.rows
    if where:
        from nnchain.report.filters import parse_where, where_all

        keep = where_all([parse_where(expression, catalog) for expression in where])
        rows = [row for row in rows if keep(row)]
    defaults = table.default_keys(loaded, rows)
    if group_by:  # only numbers have a value per group: the defaults are the metrics
        defaults = [key for key in defaults if key.kind == "metric"]
    keys = table.chosen_keys(columns, catalog, defaults) if columns else defaults
    result = Comparison([], [], loaded.sweeps, total=len(loaded.rows), matched=len(rows))
    if group_by:
        by = table.group_keys(group_by, catalog)
        stats = table.stat_keys(keys, by)
        records, members = table.group_rows(rows, by, stats)
        result.columns = table.group_columns(by, stats, records)
        ranking = table.parse_group_sort(sort, catalog, loaded, by, result.columns)
        result.records = table.rank_groups(records, members, ranking)
        result.grouped = True
    else:
        ranking = table.parse_sort(sort, catalog, loaded)
        result.records = table.flat_records(table.rank(rows, ranking), keys)
        result.columns = table.columns_of(keys, result.records)
    result.sort = ranking.describe()
    if top is not None:
        result.records = result.records[:top]
    return result
