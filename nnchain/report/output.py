"""Printing a ``Comparison``: a rich table for people, CSV and JSON for programs.

The table rounds floats to 5 significant digits and shortens reasons; CSV and JSON keep
full precision (Python's shortest round-trip repr) and whole reasons. Missing values are
``-`` in the table, empty in CSV and ``null`` in JSON. Lists (``model.hidden``) are
written as MLflow params are (``[16, 16]``) in the table and CSV, as lists in JSON.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from nnchain.config import param_value
from nnchain.report.table import Comparison

TABLE_DIGITS = 5
REASON_WIDTH = 48


def table_text(value: Any, column: str = "") -> str:
    """A value as the table shows it."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{TABLE_DIGITS}g}"
    if isinstance(value, str):
        if column == "reason":
            line = value.strip().splitlines()[0] if value.strip() else ""
            return line if len(line) <= REASON_WIDTH else line[:REASON_WIDTH - 1] + "…"
        return value
    return param_value(value)


def plain_text(value: Any) -> str:
    """A value as CSV writes it: full precision, empty when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return param_value(value)


def json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_table(comparison: Comparison, *, color: bool = False) -> str:
    """The comparison as a rich table, numbers right-aligned, lines never wrapped (a wide
    table overflows rather than hiding digits), without trailing spaces; bold headers
    only when ``color``."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    view = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                 header_style="bold" if color else "")
    for column in comparison.columns:
        view.add_column(Text(column.name), justify="right" if column.numeric else "left",
                        no_wrap=True)
    for record in comparison.records:
        # Text, not markup: "[16, 16]" is a value, not a style
        view.add_row(*(Text(table_text(record[c.name], c.name)) for c in comparison.columns))
    console = Console(file=io.StringIO(), width=100_000, force_terminal=color,
                      no_color=not color, highlight=False, soft_wrap=False)
    with console.capture() as capture:
        console.print(view)
    return "\n".join(line.rstrip() for line in capture.get().splitlines()) + "\n"


def to_csv(comparison: Comparison) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(column.name for column in comparison.columns)
    for record in comparison.records:
        writer.writerow(plain_text(record[column.name]) for column in comparison.columns)
    return buffer.getvalue()


def to_json(comparison: Comparison) -> str:
    """A JSON list of objects, one per row, keys in column order."""
    return json.dumps([{column.name: json_value(record[column.name])
                        for column in comparison.columns} for record in comparison.records],
                      allow_nan=False)


def summary_line(comparison: Comparison) -> str:
    """One line for stderr: what was compared, how many matched and were shown, the order."""
    names = ", ".join(sweep.name for sweep in comparison.sweeps)
    unit = "groups" if comparison.grouped else "trials"
    parts = [f"{names}: {comparison.total} trials"]
    if comparison.matched != comparison.total:
        parts.append(f"{comparison.matched} match --where")
    parts.append(f"{len(comparison.records)} {unit} shown, sorted by {comparison.sort}")
    return ", ".join(parts)
