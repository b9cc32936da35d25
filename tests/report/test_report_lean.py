"""The lean ``compare``: the default comparison of an SQLite ledger read without SQLAlchemy
(``query.load_shown``, ``ledger/reading.py``) equals the full load's, row for row; anything
it cannot read exactly goes the full way; the process imports only what it needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest
from report_sweep_data import CELLS, add_sweep

from nnchain.ledger import reading
from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import Sweep, Trial
from nnchain.ledger.report import best_trial
from nnchain.report import output
from nnchain.report.compare import compare_at, compare_loaded, compare_sweeps
from nnchain.report.query import load_shown

HEAVY = ("sqlalchemy", "numpy", "rich", "mlflow", "ray")


def comparison_dict(comparison) -> dict:
    return {**asdict(comparison), "sweeps": [asdict(s) for s in comparison.sweeps]}


def assert_lean_equals_full(ledger, ledger_url, refs, top=None, *, may_refuse=False):
    lean = load_shown(ledger_url, refs)
    expected = compare_sweeps(ledger, refs, top=top)
    assert comparison_dict(compare_at(None, ledger_url, refs, top=top)) == \
        comparison_dict(expected)
    if lean is None and may_refuse:
        return
    assert lean is not None
    assert comparison_dict(compare_loaded(lean, top=top)) == comparison_dict(expected)
    for render in (output.to_csv, output.to_json, output.to_table):
        assert render(compare_loaded(lean, top=top)) == render(expected)


@pytest.mark.parametrize("refs", [[], ["grid"], ["acc"], ["acc", "grid", "acc"]])
@pytest.mark.parametrize("top", [None, 3])
def test_the_lean_load_compares_as_the_full_one(ledger, ledger_url, refs, top):
    assert_lean_equals_full(ledger, ledger_url, refs, top)


def test_a_unique_id_prefix_is_found_as_by_the_full_load(ledger, ledger_url):
    sweep = ledger_ops.find_sweep(ledger, "grid")
    assert_lean_equals_full(ledger, ledger_url, [sweep.id[:6]])


def test_nan_and_infinity_in_summaries_and_configs_read_as_the_full_load_reads_them(
        ledger, ledger_url):
    trials = ledger_ops.trials_of(ledger, ledger_ops.find_sweep(ledger, "grid").id)
    nan_entry = {"last": float("nan"), "min": float("-inf"), "max": float("inf")}
    ledger_ops.update_trial(ledger, trials[0].id, summary={"val_cost": nan_entry})
    ledger_ops.update_trial(ledger, trials[1].id, summary={
        **trials[1].summary, "val_cost": {"last": float("inf"), "min": 0.1, "max": None}})
    config = json.loads(json.dumps(trials[2].config))
    config["train"]["lr"] = float("nan")  # not a config nnchain writes; read all the same
    ledger_ops.update_trial(ledger, trials[2].id, config=config)
    # an SQLite before 3.42 refuses such JSON (the full load then); a later one reads it
    # as JSON5, and those rows are decoded in Python
    assert_lean_equals_full(ledger, ledger_url, ["grid"], may_refuse=True)


def test_a_param_missing_from_a_config_or_holding_a_section_reads_as_flatten_has_it(
        ledger, ledger_url):
    trials = ledger_ops.trials_of(ledger, ledger_ops.find_sweep(ledger, "grid").id)
    config = json.loads(json.dumps(trials[3].config))
    del config["train"]["lr"]
    config["model"]["activation"] = {"nested": "section"}
    ledger_ops.update_trial(ledger, trials[3].id, config=config,
                            overrides={**trials[3].overrides, "train.update_order": "x"})
    assert_lean_equals_full(ledger, ledger_url, ["grid"])
    row = load_shown(ledger_url, ["grid"]).rows[3]
    assert "train.lr" not in row["params"] and "model.activation" not in row["params"]
    assert row["params"]["train.update_order"] == "simultaneous"  # PARAM_DEFAULTS


def test_what_the_lean_load_cannot_read_goes_the_full_way(ledger, ledger_url, tmp_path):
    assert load_shown(ledger_url, ["gird"]) is None  # the full load says what is wrong
    assert load_shown("postgresql://u@127.0.0.1:1/db", ["grid"]) is None
    assert load_shown(f"sqlite:///{tmp_path}/missing.db", ["grid"]) is None
    link = tmp_path / "link.db"
    link.symlink_to(ledger_url.removeprefix("sqlite:///"))
    assert load_shown(f"sqlite:///{link}", ["grid"]) is None
    with ledger.engine.begin() as connection:  # a ledger older than a column read
        connection.exec_driver_sql("ALTER TABLE nnchain_trials DROP COLUMN train_seconds")
    assert load_shown(ledger_url, ["grid"]) is None
    with pytest.raises(Exception, match="train_seconds"):
        compare_at(None, ledger_url, ["grid"])  # the full path reads the same table


def test_an_empty_ledger_goes_the_full_way_and_says_it_has_no_sweep(tmp_path):
    from nnchain.errors import SpecError
    from nnchain.ledger.store import open_ledger

    url = f"sqlite:///{tmp_path}/ledger.db"
    open_ledger(url).dispose()
    assert load_shown(url, []) is None
    with pytest.raises(SpecError, match="has none yet"):
        compare_at(None, url, [])


def test_the_names_read_directly_are_the_models(ledger):
    assert reading.SWEEPS == Sweep.__tablename__ and reading.TRIALS == Trial.__tablename__
    assert set(reading.SWEEP_COLUMNS) <= set(Sweep.__table__.columns.keys())
    assert set(reading.TRIAL_COLUMNS) <= set(Trial.__table__.columns.keys())
    assert set(reading.JSON_COLUMNS) <= set(Trial.__table__.columns.keys())


def test_the_plain_table_is_what_rich_prints(ledger, monkeypatch):
    comparison = compare_sweeps(ledger, ["grid", "acc"],
                                columns=["sweep", "index", "model.hidden", "val_cost", "reason"])
    plain = output.to_table(comparison)
    monkeypatch.setattr(output, "_plain", lambda cells: False)
    assert output.to_table(comparison) == plain


def test_a_cell_rich_would_change_takes_rich(ledger):
    comparison = compare_sweeps(ledger, ["grid"], columns=["index", "reason"])
    comparison.records[0]["reason"] = "tab\there, ü, 漢字"
    assert not output._plain(["tab\there"]) and not output._plain(["ü"])
    assert output._plain(["FINISHED", "-1.5e-05", "[16, 16]", "a (b); c"])
    table = output.to_table(comparison)
    assert "\t" not in table and "漢字" in table  # rich expanded the tab


def test_best_trial_ranks_finite_metrics_only(ledger):
    sweep = ledger_ops.find_sweep(ledger, "grid")
    trials = ledger_ops.trials_of(ledger, sweep.id, states=["FINISHED"])
    ledger_ops.update_trial(ledger, trials[0].id, metric=float("-inf"))
    ledger_ops.update_trial(ledger, trials[1].id, metric=1e-9)
    best = best_trial(ledger, sweep)
    assert best.id == trials[1].id and best.config == trials[1].config  # a whole trial
    maximize = ledger_ops.find_sweep(ledger, "acc")
    ledger_ops.update_sweep(ledger, maximize.id, metric_goal="maximize")
    acc_trials = ledger_ops.trials_of(ledger, maximize.id, states=["FINISHED"])
    ledger_ops.update_trial(ledger, acc_trials[0].id, metric=float("inf"))
    finite = [t.metric for t in acc_trials[1:] if t.metric is not None]
    assert best_trial(ledger, ledger_ops.find_sweep(ledger, "acc")).metric == max(finite)


def run_compare(ledger_url, *args):
    code = ("import sys\nfrom nnchain.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
            f"finally:\n    print('heavy=' + ','.join(m for m in {HEAVY!r} if m in "
            "sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, "compare", *args, "--ledger-url",
                           ledger_url], capture_output=True, text=True,
                          env={**os.environ, "NNCHAIN_LEDGER_URL": ""}, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr.strip().splitlines()[-1]


def test_the_default_compare_imports_no_sqlalchemy_numpy_rich_mlflow_or_ray(ledger_url):
    stdout, heavy = run_compare(ledger_url, "grid", "--top", "5")
    assert heavy == "heavy="
    assert len(stdout.splitlines()) == 2 + 5
    stdout, heavy = run_compare(ledger_url, "grid", "--format", "json")
    assert heavy == "heavy=" and len(json.loads(stdout)) == len(CELLS)


def test_a_compare_with_options_reads_through_sqlalchemy_and_still_not_mlflow_or_ray(
        ledger_url):
    stdout, heavy = run_compare(ledger_url, "grid", "--where", "state=FINISHED",
                                "--format", "json")
    assert "sqlalchemy" in heavy and "mlflow" not in heavy and "ray" not in heavy.split(",")
    assert {row["state"] for row in json.loads(stdout)} == {"FINISHED"}


def test_a_sweep_added_later_is_the_newest(ledger, ledger_url):
    add_sweep(ledger, "later", "val_cost", "minimize")
    assert [s.name for s in load_shown(ledger_url, []).sweeps] == ["later"]
    assert_lean_equals_full(ledger, ledger_url, [])


def test_rows_sqlite_would_read_as_json5_are_decoded_in_python(ledger, ledger_url, monkeypatch):
    """SQLite 3.42+ reads Python's NaN as JSON5 and writes it back as null: the lean load
    must not take that value. Played here by a reader that does just that."""
    trials = ledger_ops.trials_of(ledger, ledger_ops.find_sweep(ledger, "grid").id)
    ledger_ops.update_trial(ledger, trials[0].id, summary={
        "val_cost": {"last": float("nan"), "min": 0.1, "max": 0.2}})
    config = json.loads(json.dumps(trials[1].config))
    config["train"]["lr"] = float("inf")
    ledger_ops.update_trial(ledger, trials[1].id, config=config)

    def as_json5(connection, sweep_ids, columns=reading.TRIAL_COLUMNS, paths=()):
        texts = list(dict.fromkeys(column for column, _ in paths))
        marks = ", ".join("?" * len(sweep_ids))
        rows = connection.execute(
            f"SELECT {', '.join(f'[{c}]' for c in (*columns, *texts))} FROM nnchain_trials "
            f"WHERE sweep_id IN ({marks}) ORDER BY id", list(sweep_ids)).fetchall()
        result = []
        for row in rows:
            whole = dict(zip(texts, row[len(columns):], strict=True))
            extracted = []
            for column, keys in paths:
                value = json.loads(whole[column])
                for key in keys:
                    value = value.get(key) if isinstance(value, dict) else None
                extracted.append(None if value is None else json.dumps(value).replace(
                    "NaN", "null").replace("Infinity", "9e999"))
            result.append((*row[:len(columns)], *extracted, *row[len(columns):]))
        return result

    monkeypatch.setattr(reading, "trial_values", as_json5)
    lean = load_shown(ledger_url, ["grid"])
    assert lean is not None
    assert comparison_dict(compare_loaded(lean)) == comparison_dict(
        compare_sweeps(ledger, ["grid"]))
    row0, row1 = lean.rows[0], lean.rows[1]
    assert row0["summary"]["val_cost"]["last"] != row0["summary"]["val_cost"]["last"]  # NaN
    assert row1["params"]["train.lr"] == float("inf")


@pytest.mark.parametrize("late", [False, True])
def test_a_report_keeps_each_trials_cell_params_group_keys_and_metrics(ledger, late):
    """load_for_report: every row cut to the cells' params (also a param only later
    cells set), the group keys and the metrics; every trial's keys known aside."""
    from nnchain.report.query import load_for_report, load_trials

    trials = ledger_ops.trials_of(ledger, ledger_ops.find_sweep(ledger, "grid").id)
    if late:  # the first trials' cells do not set the seed; later ones do
        for trial in trials[:3]:
            ledger_ops.update_trial(ledger, trial.id, overrides={
                k: v for k, v in trial.overrides.items() if k != "seed"})
    full = load_trials(ledger, ["grid"])
    slim = load_for_report(ledger, "grid", metric="val_accuracy", group_by=["data.name"])
    swept = {key for row in full.rows for key in row["overrides"]}
    assert "seed" in swept
    for whole, cut in zip(full.rows, slim.rows, strict=True):
        kept = swept | {"data.name", "val_accuracy"}
        assert cut["params"] == {k: v for k, v in whole["params"].items() if k in kept}
        assert cut["summary"] == {k: v for k, v in whole["summary"].items()
                                  if k in ("val_cost", "val_accuracy")}
        assert {k: v for k, v in cut.items() if k not in ("params", "summary")} == \
            {k: v for k, v in whole.items() if k not in ("params", "summary")}
    assert slim.param_keys() == full.param_keys()
    assert slim.metric_keys() == full.metric_keys()
