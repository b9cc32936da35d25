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
from collections.abc import Iterator
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
    if not columns:
        return "\n" * (len(comparison.records) + 2)
    texts = [_table_texts([record[c.name] for record in comparison.records], c.name)
             for c in columns]
    headers = [c.name for c in columns]
    if not color and _plain([*headers, *(cell for column in texts for cell in column)]):
        return "".join(line + "\n" for line in _lines(headers, texts, columns, len))

    from rich.cells import cell_len
    from rich.console import Console
    from rich.text import Text

    header, *rest = _lines(headers, texts, columns, cell_len)
    text = Text()
    text.append(header, style="bold" if color else None)
    text.append("\n" + "\n".join(rest))
    console = Console(file=io.StringIO(), force_terminal=color, no_color=not color,
                      highlight=False, markup=False, emoji=False, soft_wrap=True)
    with console.capture() as capture:
        console.print(text)
    return capture.get()


def _table_texts(values: list, column: str) -> list[str]:
    """``table_text`` of a column's values; the common kinds without a call each."""
    if column == "reason":
        return [table_text(value, column) for value in values]
    texts = []
    for value in values:
        kind = type(value)
        if kind is float:
            texts.append(f"{value:.{TABLE_DIGITS}g}")
        elif kind is str:
            texts.append(value)
        elif kind is int:
            texts.append(str(value))
        else:
            texts.append(table_text(value, column))
    return texts


def _plain(cells: list[str]) -> bool:
    """Whether every cell is printable ASCII (no tab, no control character)."""
    text = "".join(cells)
    return text.isascii() and text.isprintable()


def _lines(headers: list[str], texts: list[list[str]], columns, width_of) -> list[str]:
    """The header, the rule and the rows (``texts``: each column's cells), cells padded
    to their column's width as ``width_of`` measures it (rich's ``cell_len``, or ``len``
    for plain ASCII, which ``str.rjust`` and ``ljust`` then pad alike)."""
    widths = [max(width_of(header), *map(width_of, cells))
              for header, cells in zip(headers, texts, strict=True)]
    padded = []
    for header, cells, width, column in zip(headers, texts, widths, columns, strict=True):
        if width_of is len:
            pad = str.rjust if column.numeric else str.ljust
            padded.append([pad(cell, width) for cell in [header, *cells]])
        else:
            padded.append([" " * (width - width_of(cell)) + cell if column.numeric
                           else cell + " " * (width - width_of(cell))
                           for cell in [header, *cells]])
    header, *rows = (COLUMN_GAP.join(cells).rstrip() for cells in zip(*padded, strict=True))
    rule = "─" * (sum(widths) + len(COLUMN_GAP) * max(len(widths) - 1, 0))
    return [header, rule, *rows]


def csv_line(cells: list[str]) -> str:
    """One CSV row: a cell holding a comma, a quote, CR or LF quoted (``csv.writer`` does
    not quote a lone CR when lines end in LF, and a reader then splits the row)."""
    if cells == [""]:
        return '""'
    line = ",".join(cells)
    if line.count(",") == len(cells) - 1 and not any(c in line for c in '"\r\n'):
        return line  # the common row: no cell needs quotes
    return ",".join('"' + cell.replace('"', '""') + '"' if any(c in cell for c in ',"\r\n')
                    else cell for cell in cells)


def _csv_cells(values: list) -> list[str]:
    """``csv_cell`` of a column's values; the common kinds without a call each."""
    cells = []
    for value in values:
        kind = type(value)
        if kind is float and value == value:  # not NaN
            cells.append(repr(value))
        elif kind is int:
            cells.append(str(value))
        elif kind is str and not value.startswith(FORMULA_STARTS):
            cells.append(value)
        else:
            cells.append(csv_cell(value))
    return cells


CSV_ROWS_PER_BLOCK = 1_000  # rows formatted at a time when CSV is written in pieces


def to_csv(comparison: Comparison) -> str:
    return "".join(csv_blocks(comparison))


def csv_blocks(comparison: Comparison) -> Iterator[str]:
    """The CSV text in pieces, ``CSV_ROWS_PER_BLOCK`` rows a piece after the header's."""
    names = [column.name for column in comparison.columns]
    yield csv_line([csv_cell(name) for name in names]) + "\n"
    records = comparison.records
    for start in range(0, len(records), CSV_ROWS_PER_BLOCK):
        block = records[start:start + CSV_ROWS_PER_BLOCK]
        columns = [_csv_cells([record[name] for record in block]) for name in names]
        rows = zip(*columns, strict=True) if columns else ([] for _ in block)
        yield "".join([csv_line(list(cells)) + "\n" for cells in rows])


def to_json(comparison: Comparison) -> str:
    """A JSON list of objects, one per row, keys in column order."""
    names = [column.name for column in comparison.columns]
    return json.dumps([{name: json_value(record[name]) for name in names}
                       for record in comparison.records], allow_nan=False)


def summary_line(comparison: Comparison) -> str:
    """One line for stderr: what was compared, how many matched and were shown, the order."""
    names = ", ".join(sweep.name for sweep in comparison.sweeps)
    unit = "groups" if comparison.grouped else "trials"
    parts = [f"{names}: {comparison.total} trials"]
    if comparison.matched != comparison.total:
        parts.append(f"{comparison.matched} match --where")
    parts.append(f"{len(comparison.records)} {unit} shown, sorted by {comparison.sort}")
    return ", ".join(parts)
