"""compare_sweeps: default columns, ranking in both goals, --top, --columns, several sweeps."""

from __future__ import annotations

import math

import pytest
from report_sweep_data import CELLS, DIVERGED, LOST, NAN_END, PENDING_INDEX, RUNNING_INDEX

from nnchain.errors import SpecError
from nnchain.ledger.models import FINISHED
from nnchain.ledger.store import open_ledger
from nnchain.report.compare import compare_sweeps

UNRANKED = sorted((DIVERGED, LOST, NAN_END, RUNNING_INDEX, PENDING_INDEX))


def finished_by(metric: str, descending: bool) -> list[int]:
    ranked = [c for c in CELLS if c.state == FINISHED and c.last(metric) is not None]
    ranked.sort(key=lambda c: c.last(metric), reverse=descending)
    return [c.index for c in ranked]


def indexes(comparison) -> list[int]:
    return [record["index"] for record in comparison.records]


def test_default_columns_are_index_state_cell_params_metric_epochs_reason(ledger):
    comparison = compare_sweeps(ledger, ["grid"])
    assert [c.name for c in comparison.columns] == [
        "index", "state", "train.lr", "model.activation", "model.hidden", "seed", "val_cost",
        "epochs", "reason"]
    assert [c.name for c in comparison.columns if c.numeric] == [
        "index", "train.lr", "seed", "val_cost", "epochs"]
    record = next(r for r in comparison.records if r["index"] == 3)
    assert record["model.hidden"] == CELLS[3].config["model"]["hidden"]
    assert record["val_cost"] == CELLS[3].last("val_cost")


def test_the_reason_column_appears_only_when_a_shown_trial_has_one(ledger):
    comparison = compare_sweeps(ledger, ["grid"], where=["state=FINISHED"])
    assert "reason" not in [c.name for c in comparison.columns]


def test_minimize_ranks_lowest_first_and_unranked_trials_last(ledger):
    comparison = compare_sweeps(ledger, ["grid"])
    assert indexes(comparison) == finished_by("val_cost", descending=False) + UNRANKED
    assert comparison.total == comparison.matched == len(CELLS)


def test_maximize_ranks_highest_first(ledger):
    comparison = compare_sweeps(ledger, ["acc"])
    assert indexes(comparison) == finished_by("val_accuracy", descending=True) + UNRANKED


@pytest.mark.parametrize("sort", [None, "val_cost", "-val_cost", "val_cost.last",
                                  "-val_accuracy", "val_accuracy", "val_cost.min"])
def test_failed_or_unfinished_trials_are_never_ranked_first(ledger, sort):
    """The LOST trial's last values are the best of all, the RUNNING one's even better,
    and the DIVERGED one has the lowest val_cost.min: none may lead."""
    for sweep in ("grid", "acc"):
        records = compare_sweeps(ledger, [sweep], sort=sort).records
        # NAN_END is FINISHED and ranked by val_cost.min, unranked by the last values
        states = [r["state"] for r in records if r["index"] != NAN_END]
        finished = states.count(FINISHED)
        assert set(states[:finished]) == {FINISHED}
        assert [r["index"] for r in records if r["state"] != FINISHED] == [
            DIVERGED, LOST, RUNNING_INDEX, PENDING_INDEX]


def test_sort_by_a_param_ascending_and_descending(ledger):
    ascending = compare_sweeps(ledger, ["grid"], sort="train.lr").records
    descending = compare_sweeps(ledger, ["grid"], sort="-train.lr").records
    assert [r["train.lr"] for r in ascending] == sorted(c.overrides["train.lr"] for c in CELLS)
    assert [r["train.lr"] for r in descending] == sorted(
        (c.overrides["train.lr"] for c in CELLS), reverse=True)
    # ties keep trial order in both directions
    assert [r["index"] for r in ascending[:8]] == sorted(r["index"] for r in ascending[:8])
    assert [r["index"] for r in descending[:8]] == sorted(r["index"] for r in descending[:8])


def test_sort_by_a_list_param_orders_widths_element_wise(ledger):
    records = compare_sweeps(ledger, ["grid"], sort="-model.hidden").records
    assert records[0]["model.hidden"] == [16, 16] and records[-1]["model.hidden"] == [16]


def test_an_unknown_sort_key_is_a_spec_error(ledger):
    with pytest.raises(SpecError) as error:
        compare_sweeps(ledger, ["grid"], sort="-val_cots")
    assert error.value.field == "--sort" and "did you mean 'val_cost'" in str(error.value)


def test_top_keeps_the_best_n(ledger):
    comparison = compare_sweeps(ledger, ["grid"], top=3)
    assert indexes(comparison) == finished_by("val_cost", descending=False)[:3]
    assert comparison.matched == len(CELLS)
    with pytest.raises(SpecError):
        compare_sweeps(ledger, ["grid"], top=0)


def test_columns_pick_params_metric_stats_and_fields(ledger):
    columns = ["key", "run_id", "model.activation", "val_cost.min", "val_cost.max",
               "grad_norm/layer1", "status", "epochs"]
    comparison = compare_sweeps(ledger, ["grid"], columns=columns, sort="index")
    assert [c.name for c in comparison.columns] == [
        "key", "run_id", "model.activation", "val_cost.min", "val_cost.max",
        "grad_norm/layer1", "state", "epochs"]
    record, cell = comparison.records[4], CELLS[4]
    assert record == {"key": cell.key, "run_id": f"run{cell.index:03d}",
                      "model.activation": cell.overrides["model.activation"],
                      "val_cost.min": cell.summary["val_cost"]["min"],
                      "val_cost.max": cell.summary["val_cost"]["max"],
                      "grad_norm/layer1": cell.summary["grad_norm/layer1"]["last"],
                      "state": FINISHED, "epochs": 20}


def test_columns_prefixed_plus_are_added_to_the_defaults(ledger):
    comparison = compare_sweeps(ledger, ["grid"], columns=["+val_accuracy", "+train.epochs"])
    names = [c.name for c in comparison.columns]
    assert names[:9] == ["index", "state", "train.lr", "model.activation", "model.hidden",
                         "seed", "val_cost", "epochs", "reason"]
    assert names[9:] == ["val_accuracy", "train.epochs"]


def test_an_unknown_column_is_a_spec_error_naming_the_option(ledger):
    with pytest.raises(SpecError) as error:
        compare_sweeps(ledger, ["grid"], columns=["index", "model.activaton"])
    assert error.value.field == "--columns"
    assert "did you mean 'model.activation'" in str(error.value)


def test_a_param_named_without_its_section_gets_a_suggestion(ledger):
    with pytest.raises(SpecError, match="did you mean 'model.hidden'"):
        compare_sweeps(ledger, ["grid"], columns=["hidden"])


def test_several_sweeps_show_a_sweep_column_and_both_metrics(ledger):
    comparison = compare_sweeps(ledger, ["grid", "acc"])
    names = [c.name for c in comparison.columns]
    assert names[0] == "sweep" and "val_cost" in names and "val_accuracy" in names
    assert comparison.total == 2 * len(CELLS)
    # ranked by the first sweep's metric and goal: each best trial twice, one per sweep
    best = finished_by("val_cost", descending=False)[0]
    assert [(r["sweep"], r["index"]) for r in comparison.records[:2]] == [
        ("grid", best), ("acc", best)]
    tail = comparison.records[-2 * len(UNRANKED):]
    assert all(r["state"] != FINISHED or r["val_cost"] is None for r in tail)


def test_metric_values_are_floats_or_none_never_nan(ledger):
    for record in compare_sweeps(ledger, ["grid"]).records:
        value = record["val_cost"]
        assert value is None or math.isfinite(value)


def test_no_sweep_named_takes_the_newest(ledger):
    """`nnchain sweep run ... && nnchain compare` shows the sweep just run, also when its
    name was taken and it became name-2."""
    assert [sweep.name for sweep in compare_sweeps(ledger, []).sweeps] == ["acc"]


def test_no_sweep_in_the_ledger_is_a_spec_error(tmp_path):
    empty = open_ledger(f"sqlite:///{tmp_path}/empty.db")
    try:
        with pytest.raises(SpecError, match="SWEEP"):
            compare_sweeps(empty, [])
    finally:
        empty.dispose()
