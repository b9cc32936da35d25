"""Printing: CSV and JSON parse back at full precision; the table rounds and shortens."""

from __future__ import annotations

import csv
import io
import json

from report_sweep_data import CELLS, LOST

from nnchain.report import output
from nnchain.report.compare import compare_sweeps

COLUMNS = ["sweep", "index", "state", "model.hidden", "train.lr", "val_cost", "val_cost.min",
           "reason"]


def test_csv_parses_back_with_full_precision(ledger):
    comparison = compare_sweeps(ledger, ["grid", "acc"], columns=COLUMNS)
    rows = list(csv.DictReader(io.StringIO(output.to_csv(comparison))))
    assert len(rows) == len(comparison.records) == 2 * len(CELLS)
    assert list(rows[0]) == COLUMNS
    for row, record in zip(rows, comparison.records, strict=True):
        assert row["sweep"] == record["sweep"] and int(row["index"]) == record["index"]
        assert row["model.hidden"] == ("[16]" if record["model.hidden"] == [16] else "[16, 16]")
        assert float(row["train.lr"]) == record["train.lr"]
        if record["val_cost"] is None:
            assert row["val_cost"] == ""
        else:
            assert float(row["val_cost"]) == record["val_cost"]  # exact: no rounding
        assert row["reason"] == record["reason"]  # whole, not shortened


def test_json_is_a_list_of_objects_that_parses_back(ledger):
    comparison = compare_sweeps(ledger, ["grid"], columns=COLUMNS)
    parsed = json.loads(output.to_json(comparison))
    assert parsed == comparison.records
    assert list(parsed[0]) == COLUMNS
    assert any(row["val_cost"] is None for row in parsed)


def test_grouped_output_parses_back(ledger):
    comparison = compare_sweeps(ledger, ["grid"], group_by=["model.hidden"])
    assert json.loads(output.to_json(comparison)) == comparison.records
    rows = list(csv.DictReader(io.StringIO(output.to_csv(comparison))))
    assert [float(r["val_cost.mean"]) for r in rows] == [
        r["val_cost.mean"] for r in comparison.records]


def test_table_rounds_floats_keeps_list_values_and_shortens_reasons(ledger):
    comparison = compare_sweeps(ledger, ["grid"], columns=COLUMNS)
    text = output.to_table(comparison)
    lines = text.splitlines()
    assert lines[0].split() == COLUMNS
    best = comparison.records[0]
    assert f"{best['val_cost']:.5g}" in lines[2] and repr(best["val_cost"]) not in text
    assert "[16, 16]" in text  # a value, not rich markup
    lost = next(line for line in lines[2:] if line.split()[1] == str(LOST))
    assert lost.endswith("…") and len(CELLS[LOST].reason) > output.REASON_WIDTH
    assert all(line == line.rstrip() for line in lines)
    assert "\x1b[" not in text


def test_table_text_of_special_values():
    assert output.table_text(None) == "-"
    assert output.table_text(0.0031622776601683794) == "0.0031623"
    assert output.table_text(12) == "12"
    assert output.table_text(True) == "true"
    assert output.table_text([16, 16]) == "[16, 16]"
    assert output.plain_text(0.0031622776601683794) == "0.0031622776601683794"
    assert output.plain_text(None) == ""


def test_a_colour_table_styles_only_the_header(ledger):
    comparison = compare_sweeps(ledger, ["grid"], top=2)
    plain, coloured = output.to_table(comparison), output.to_table(comparison, color=True)
    head, *rest = coloured.splitlines()
    assert head.startswith("\x1b[1m") and "\x1b[" not in "\n".join(rest)
    assert rest == plain.splitlines()[1:]


MIXED = [None, 0.1, float("nan"), float("inf"), -2, True, "", "relu", "-0.5", "=1+1", "a,b",
         'say "x"', "two\nlines", "cr\r", [16, 16], 3.0e-7]


def test_the_column_at_a_time_output_is_the_cell_at_a_time_one():
    """to_table and to_csv format a column at a time, with fast paths for common kinds:
    the same text as table_text, csv_cell and csv_line cell by cell."""
    from nnchain.report.table import Column, Comparison

    records = [{"index": i, "value": value, "reason": value if isinstance(value, str) else ""}
               for i, value in enumerate(MIXED)]
    columns = [Column("index", True), Column("value", False), Column("reason", False)]
    comparison = Comparison(columns, records, [], total=len(records), matched=len(records))
    expected = "".join(output.csv_line([output.csv_cell(r[c.name]) for c in columns]) + "\n"
                       for r in [{c.name: c.name for c in columns}, *records])
    assert output.to_csv(comparison) == expected
    assert [row[1] for row in csv.reader(io.StringIO(expected, newline=""))][1:] == [
        output.csv_cell(value) for value in MIXED]
    plain = [r for r in records if not isinstance(r["value"], str) or
             r["value"].isprintable()]
    comparison.records = plain
    lines = output.to_table(comparison).splitlines()
    cells = [[output.table_text(r[c.name], c.name) for c in columns] for r in plain]
    widths = [max(len(c.name), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    for line, row in zip(lines[2:], cells, strict=True):
        assert line == output.COLUMN_GAP.join(
            cell.rjust(width) if column.numeric else cell.ljust(width)
            for cell, width, column in zip(row, widths, columns, strict=True)).rstrip()
