"""Loading trials from the ledger: sweep references, row contents, two SELECTs at most."""

from __future__ import annotations

import pytest
from report_sweep_data import CELLS
from sqlalchemy import event
from sqlalchemy.engine import Engine

from nnchain.errors import SpecError
from nnchain.ledger import sweeps as ledger_ops
from nnchain.report.query import load_trials


def test_rows_are_plain_dicts_in_index_order_with_flat_params(ledger):
    loaded = load_trials(ledger, ["grid"])
    assert [s.name for s in loaded.sweeps] == ["grid"]
    assert loaded.sweeps[0].metric_goal == "minimize"
    assert [row["index"] for row in loaded.rows] == list(range(len(CELLS)))
    row = loaded.rows[3]
    assert row["params"]["train.lr"] == CELLS[3].config["train"]["lr"]
    assert row["params"]["model.hidden"] == CELLS[3].config["model"]["hidden"]
    assert row["overrides"] == CELLS[3].overrides
    assert row["summary"] == CELLS[3].summary
    assert row["sweep"] == "grid" and row["metric_name"] == "val_cost"
    # left out of the stored config at its default, shown as MLflow's params show it
    assert "update_order" not in CELLS[3].config["train"]
    assert row["params"]["train.update_order"] == "simultaneous"


@pytest.mark.parametrize("how", ["name", "id", "prefix"])
def test_a_sweep_is_found_by_name_id_or_unique_prefix(ledger, how):
    sweep = ledger_ops.find_sweep(ledger, "acc")
    ref = {"name": "acc", "id": sweep.id, "prefix": sweep.id[:8]}[how]
    assert load_trials(ledger, [ref]).sweeps[0].id == sweep.id


def test_several_sweeps_keep_the_order_given_and_a_repeat_counts_once(ledger):
    loaded = load_trials(ledger, ["acc", "grid", "acc"])
    assert [s.name for s in loaded.sweeps] == ["acc", "grid"]
    assert [row["sweep"] for row in loaded.rows] == ["acc"] * len(CELLS) + ["grid"] * len(CELLS)


def test_an_unknown_sweep_is_a_spec_error_with_a_suggestion(ledger):
    with pytest.raises(SpecError) as error:
        load_trials(ledger, ["grid", "gird"])
    assert error.value.field == "SWEEP"
    assert "'gird'" in str(error.value) and "did you mean 'grid'" in str(error.value)


def test_loading_is_two_selects_whatever_the_number_of_trials(ledger):
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        load_trials(ledger, ["grid", "acc"])
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert len(statements) == 2
