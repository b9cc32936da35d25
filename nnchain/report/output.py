"""Printing a ``Comparison``: a rich table for people, CSV and JSON for programs.

The table rounds floats to 5 significant digits and shortens reasons; CSV and JSON keep
full precision (Python's shortest round-trip repr) and whole reasons. Missing values are
``-`` in the table, empty in CSV and ``null`` in JSON. Lists (``model.hidden``) are
written as MLflow params are (``[16, 16]``) in the table and CSV, as lists in JSON.

A CSV cell is opened by spreadsheets, which run a cell starting with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return as a formula (``=HYPERLINK(...)``). Such a text cell is
written with a leading ``'`` (OWASP's advice), which shows the text as it was; a number,
and a text that is a plain number (``-0.5``, ``+1e-3``), is written as it is, so it stays
numeric.
"""

from __future__ import annotations

import io
import json
import math
import re
from typing import Any

from nnchain.params import param_value
from nnchain.report.table import Comparison

TABLE_DIGITS = 5
REASON_WIDTH = 48
COLUMN_GAP = "   "
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


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


def csv_cell(value: Any) -> str:
    """A value as a CSV cell: ``plain_text``, with a text a spreadsheet would run as a
    formula made inert by a leading ``'`` (numbers stay numbers)."""
    text = plain_text(value)
    if isinstance(value, int | float) or not text.startswith(FORMULA_STARTS):
        return text
    return text if _PLAIN_NUMBER.fullmatch(text) else "'" + text


def json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_table(comparison: Comparison, *, color: bool = False) -> str:
    """The comparison as a table for people: a header, a rule, one line per row, numbers
    right-aligned, never wrapped (a wide table overflows rather than hiding digits), no
    trailing spaces; the header bold only when ``color``.

    Column widths are measured here with rich's cell widths and the lines printed through
    a rich console: ``rich.table.Table`` lays out every cell on its own and takes half a
    second for 1,000 rows. Without colour and with every cell printable ASCII (one cell
    per character, nothing for rich to strip or expand), the lines are the output as they
    are and rich is not needed at all.
    """
    columns = comparison.columns
    body = [[table_text(record[c.name], c.name) for c in columns]
            for record in comparison.records]
    headers = [c.name for c in columns]
    if not color and _plain([*headers, *(cell for row in body for cell in row)]):
        return "".join(line + "\n" for line in _lines(headers, body, columns, len))

    from rich.cells import cell_len
    from rich.console import Console
    from rich.text import Text

    header, *rest = _lines(headers, body, columns, cell_len)
    text = Text()
    text.append(header, style="bold" if color else None)
    text.append("\n" + "\n".join(rest))
    console = Console(file=io.StringIO(), force_terminal=color, no_color=not color,
                      highlight=False, markup=False, emoji=False, soft_wrap=True)
    with console.capture() as capture:
        console.print(text)
    return capture.get()


def _plain(cells: list[str]) -> bool:
    """Whether every cell is printable ASCII (no tab, no control character)."""
    text = "".join(cells)
    return text.isascii() and text.isprintable()


def _lines(headers: list[str], body: list[list[str]], columns, width_of) -> list[str]:
    """The header, the rule and the rows, cells padded to their column's width as
    ``width_of`` measures it (rich's ``cell_len``, or ``len`` for plain ASCII)."""
    widths = [max([width_of(headers[i]), *(width_of(row[i]) for row in body)])
              for i in range(len(columns))]
    alignments = [column.numeric for column in columns]

    def line(cells: list[str]) -> str:
        padded = (" " * (width - width_of(cell)) + cell if numeric
                  else cell + " " * (width - width_of(cell))
                  for cell, width, numeric in zip(cells, widths, alignments, strict=True))
        return COLUMN_GAP.join(padded).rstrip()

    rule = "─" * (sum(widths) + len(COLUMN_GAP) * max(len(widths) - 1, 0))
    return [line(headers), rule, *(line(row) for row in body)]


def csv_line(cells: list[str]) -> str:
    """One CSV row: a cell holding a comma, a quote, CR or LF quoted (``csv.writer`` does
    not quote a lone CR when lines end in LF, and a reader then splits the row)."""
    if cells == [""]:
        return '""'
    return ",".join('"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\r\n')
                    else cell for cell in cells)


def to_csv(comparison: Comparison) -> str:
    lines = [csv_line([csv_cell(column.name) for column in comparison.columns])]
    for record in comparison.records:
        lines.append(csv_line([csv_cell(record[column.name]) for column in comparison.columns]))
    return "".join(line + "\n" for line in lines)


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
