"""--group-by: mean, sample std, min, max and count per group, checked against numpy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from report_sweep_data import ACTIVATIONS, CELLS, HIDDEN, LRS

from nnchain.errors import SpecError
from nnchain.ledger.models import FINISHED
from nnchain.report.compare import compare_sweeps


def finished_values(metric: str, **where) -> np.ndarray:
    return np.array([c.last(metric) for c in CELLS if c.state == FINISHED
                     and c.last(metric) is not None
                     and all(c.overrides[k] == v for k, v in where.items())])


def group_of(comparison, **keys) -> dict:
    return next(r for r in comparison.records if all(r[k] == v for k, v in keys.items()))


def test_stats_over_seeds_match_numpy(ledger):
    comparison = compare_sweeps(ledger, ["grid"], group_by=["train.lr", "model.activation"])
    assert [c.name for c in comparison.columns] == [
        "train.lr", "model.activation", "trials", "val_cost.mean", "val_cost.std",
        "val_cost.min", "val_cost.max", "val_cost.count"]
    assert len(comparison.records) == len(LRS) * len(ACTIVATIONS)
    for lr, activation in itertools.product(LRS, ACTIVATIONS):
        record = group_of(comparison, **{"train.lr": lr, "model.activation": activation})
        values = finished_values("val_cost", **{"train.lr": lr, "model.activation": activation})
        assert record["trials"] == sum(1 for c in CELLS if c.overrides["train.lr"] == lr and
                                       c.overrides["model.activation"] == activation)
        assert record["val_cost.count"] == values.size
        assert record["val_cost.mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert record["val_cost.std"] == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        assert record["val_cost.min"] == values.min()
        assert record["val_cost.max"] == values.max()


def test_groups_rank_by_mean_in_the_goal_order(ledger):
    for sweep, metric, descending in (("grid", "val_cost", False),
                                      ("acc", "val_accuracy", True)):
        records = compare_sweeps(ledger, [sweep], group_by=["model.hidden"]).records
        means = [r[f"{metric}.mean"] for r in records]
        assert means == sorted(means, reverse=descending)
        assert {tuple(r["model.hidden"]) for r in records} == {tuple(h) for h in HIDDEN}


def test_one_value_has_no_std_and_none_has_no_stats(ledger):
    comparison = compare_sweeps(ledger, ["grid"], where=["seed=0"], group_by=[
        "train.lr", "model.activation", "model.hidden"])
    assert all(r["trials"] == 1 for r in comparison.records)
    for record in comparison.records:
        values = finished_values("val_cost", seed=0, **{k: record[k] for k in (
            "train.lr", "model.activation", "model.hidden")})
        assert record["val_cost.count"] == values.size
        if values.size == 1:
            assert record["val_cost.std"] is None and record["val_cost.mean"] == values[0]
        if values.size == 0:
            assert record["val_cost.mean"] is None and record["val_cost.min"] is None
    # groups without any finished value come last
    counts = [r["val_cost.count"] for r in comparison.records]
    assert 0 in counts and counts.index(0) == len(counts) - counts.count(0)


def test_metric_columns_each_get_stats_and_top_keeps_the_best_groups(ledger):
    comparison = compare_sweeps(ledger, ["grid"], group_by=["model.activation"],
                                columns=["model.activation", "val_accuracy", "epochs"],
                                top=1)
    assert [c.name for c in comparison.columns] == [
        "model.activation", "trials", *(f"{k}.{s}" for k in ("val_accuracy", "epochs")
                                        for s in ("mean", "std", "min", "max", "count"))]
    (record,) = comparison.records
    best = min(ACTIVATIONS, key=lambda a: finished_values(
        "val_cost", **{"model.activation": a}).mean())
    assert record["model.activation"] == best
    values = finished_values("val_accuracy", **{"model.activation": best})
    assert record["val_accuracy.mean"] == pytest.approx(values.mean(), rel=1e-12)
    assert record["epochs.mean"] == 20


def test_sort_groups_by_an_output_column_or_a_group_key(ledger):
    by_std = compare_sweeps(ledger, ["grid"], group_by=["train.lr"],
                            sort="-val_cost.std").records
    stds = [r["val_cost.std"] for r in by_std]
    assert stds == sorted(stds, reverse=True)
    by_lr = compare_sweeps(ledger, ["grid"], group_by=["train.lr"], sort="train.lr").records
    assert [r["train.lr"] for r in by_lr] == sorted(LRS)


def test_group_by_sweep_across_sweeps(ledger):
    records = compare_sweeps(ledger, ["grid", "acc"], group_by=["sweep"]).records
    assert {r["sweep"] for r in records} == {"grid", "acc"}
    assert all(r["trials"] == len(CELLS) for r in records)


@pytest.mark.parametrize("options, field", [
    ({"group_by": ["val_cost"]}, "--group-by"),
    ({"group_by": ["model.activaton"]}, "--group-by"),
    ({"group_by": ["model.activation"], "columns": ["model.activation", "train.lr"]},
     "--columns"),
    ({"group_by": ["model.activation"], "sort": "train.lr"}, "--sort"),
])
def test_bad_grouping_is_a_spec_error(ledger, options, field):
    with pytest.raises(SpecError) as error:
        compare_sweeps(ledger, ["grid"], **options)
    assert error.value.field == field


def test_columns_prefixed_plus_add_metrics_to_the_grouped_defaults(ledger):
    comparison = compare_sweeps(ledger, ["grid"], group_by=["model.activation"],
                                columns=["+val_accuracy.max"])
    assert [c.name for c in comparison.columns] == [
        "model.activation", "trials", *(f"{k}.{s}" for k in ("val_cost", "val_accuracy.max")
                                        for s in ("mean", "std", "min", "max", "count"))]
