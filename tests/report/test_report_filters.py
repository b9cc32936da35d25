"""--where: every operator, numbers vs text, lists, state, missing values, bad expressions."""

from __future__ import annotations

import operator

import pytest
from report_sweep_data import CELLS, DIVERGED, LOST, NAN_END, PENDING_INDEX, RUNNING_INDEX

from nnchain.errors import SpecError
from nnchain.ledger.models import FAILED, FINISHED
from nnchain.report.compare import compare_sweeps
from nnchain.report.filters import parse_where
from nnchain.report.keys import Catalog
from nnchain.report.query import load_trials

OPS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
       ">": operator.gt, ">=": operator.ge}


def matching(ledger, *where: str) -> set[int]:
    return {r["index"] for r in compare_sweeps(ledger, ["grid"], where=list(where)).records}


def cells_where(predicate) -> set[int]:
    return {c.index for c in CELLS if predicate(c)}


@pytest.mark.parametrize("op", list(OPS))
def test_every_operator_on_a_numeric_param(ledger, op):
    assert matching(ledger, f"train.lr{op}0.1") == cells_where(
        lambda c: OPS[op](c.overrides["train.lr"], 0.1))


@pytest.mark.parametrize("op", list(OPS))
def test_every_operator_on_a_metric_value_numbers_compare_as_numbers(ledger, op):
    """1e-1 is 0.1 as a number; as text it would sort after every "0.x"."""
    expected = cells_where(lambda c: c.last("val_cost") is not None
                           and OPS[op](c.last("val_cost"), 0.3))
    if op in ("=", "!="):
        expected = cells_where(lambda c: OPS[op](c.last("val_cost"), 0.3))
    assert matching(ledger, f"val_cost {op} 0.3") == expected
    assert matching(ledger, "val_cost>=1e-1") == cells_where(
        lambda c: c.last("val_cost") is not None and c.last("val_cost") >= 0.1)


@pytest.mark.parametrize("op", list(OPS))
def test_every_operator_on_a_text_param_compares_as_text(ledger, op):
    assert matching(ledger, f"model.activation{op}sigmoid") == cells_where(
        lambda c: OPS[op](c.overrides["model.activation"], "sigmoid"))


def test_metric_stats_and_explicit_last(ledger):
    assert matching(ledger, "val_cost.min<0.001") == {DIVERGED, LOST, RUNNING_INDEX}
    assert matching(ledger, "val_cost.max>=9") == {DIVERGED}
    assert matching(ledger, "val_cost.last<0.001") == {LOST, RUNNING_INDEX}


def test_a_list_param_matches_the_param_format_however_it_is_spaced(ledger):
    deep = cells_where(lambda c: c.overrides["model.hidden"] == [16, 16])
    assert matching(ledger, "model.hidden=[16, 16]") == deep
    assert matching(ledger, "model.hidden=[16,16]") == deep
    assert matching(ledger, "model.hidden!=[16]") == deep


def test_quoted_values_and_double_equals(ledger):
    relu = cells_where(lambda c: c.overrides["model.activation"] == "relu")
    assert matching(ledger, "model.activation='relu'") == relu
    assert matching(ledger, "model.activation!='<relu'") == set(range(len(CELLS)))
    assert matching(ledger, 'model.activation == "relu"') == relu


def test_state_and_status_in_any_case(ledger):
    failed = cells_where(lambda c: c.state == FAILED)
    assert matching(ledger, "state=FAILED") == failed == {DIVERGED, LOST}
    assert matching(ledger, "status=failed") == failed
    assert matching(ledger, "state!=finished") == cells_where(lambda c: c.state != FINISHED)


def test_a_missing_value_reads_as_null_and_is_never_ordered(ledger):
    no_value = {DIVERGED, NAN_END, PENDING_INDEX}
    assert matching(ledger, "val_cost=null") == no_value
    assert matching(ledger, "val_cost!=null") == set(range(len(CELLS))) - no_value
    assert not matching(ledger, "val_cost<1e9") & no_value
    # a param that no trial has (momentum does not apply to sgd)
    assert matching(ledger, "train.momentum=null") == set(range(len(CELLS)))


def test_several_where_must_all_hold(ledger):
    assert matching(ledger, "train.lr>=0.1", "model.activation=tanh", "seed=1") == cells_where(
        lambda c: c.overrides["train.lr"] >= 0.1 and c.overrides["model.activation"] == "tanh"
        and c.overrides["seed"] == 1)


def test_nothing_matching_is_an_empty_result_not_an_error(ledger):
    comparison = compare_sweeps(ledger, ["grid"], where=["train.lr>100"])
    assert comparison.records == [] and comparison.matched == 0


@pytest.mark.parametrize("expression, says", [
    ("train.lr", "must look like KEY OP VALUE"),
    ("=0.1", "must look like KEY OP VALUE"),
    ("", "must look like KEY OP VALUE"),
    ("train.lr<", "< needs a value"),
    ("trian.lr<0.1", "did you mean 'train.lr'"),
    ("val_cots.min<0.1", "did you mean 'val_cost.min'"),
    ("lr_rate=1", "got 'lr_rate'"),
    ("state=DONE", "state must be one of PENDING, RUNNING, FINISHED, PRUNED, FAILED, KILLED"),
    ("state=FINSHED", "did you mean 'FINISHED'"),
    ("state>FAILED", "state takes = or !="),
    ("train.lr>>0.1", "OP must be one of = != < <= > >=, got '>>'"),
    ("train.lr=<0.1", "got '=<'"),
    ("train.lr => 0.1", "got '=>'"),
    ("train.lr<>0.1", "got '<>'"),
    ("model.activation===relu", "got '==='"),
])
def test_bad_expressions_are_spec_errors_saying_what_must_hold(ledger, expression, says):
    catalog = Catalog(load_trials(ledger, ["grid"]))
    with pytest.raises(SpecError) as error:
        parse_where(expression, catalog)
    assert error.value.field == "--where"
    assert says in str(error.value)
    assert "\n" not in str(error.value)
