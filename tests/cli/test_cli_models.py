"""``nnchain promote`` and ``nnchain predict`` refusing bad input before anything is
written: one line on stderr, exit code 2, no store made (the cases that need a recorded
sweep are in tests/tracking/test_models.py)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nnchain.cli.main import main


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_error_line(result, field: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), lines
    return lines[0]


@pytest.mark.parametrize("alias", ["champ ion", "best!", "a/b", "latest", "v3", "x" * 256])
def test_promote_refuses_an_invalid_alias_before_anything(runs_home, alias):
    line = one_error_line(run("promote", "any-sweep", "--name", "m", "--alias", alias),
                          "--alias")
    assert repr(alias) in line or alias in line
    assert not (runs_home / "nnchain-runs").exists()


@pytest.mark.parametrize("name", ["a/b", "a:b", " "])
def test_promote_refuses_an_invalid_model_name(runs_home, name):
    one_error_line(run("promote", "any-sweep", "--name", name), "--name")
    assert not (runs_home / "nnchain-runs").exists()


def test_promote_of_a_sweep_in_a_store_without_a_ledger(runs_home):
    line = one_error_line(run("promote", "nope", "--name", "m", "--alias", "champion"),
                          "SWEEP")
    assert "'nope'" in line
    assert not (runs_home / "nnchain-runs").exists()


def test_promote_needs_a_name(runs_home):
    result = run("promote", "any-sweep")
    assert result.exit_code == 2 and "--name" in result.output


@pytest.mark.parametrize("filename", ["missing.csv", "rows.txt"])
def test_predict_refuses_an_input_that_is_not_a_csv_or_npz_file(runs_home, filename):
    if filename == "rows.txt":
        (runs_home / filename).write_text("1,2\n")
    line = one_error_line(run("predict", "models:/m@champion", filename), "INPUT")
    assert filename in line
    assert not (runs_home / "nnchain-runs").exists()
