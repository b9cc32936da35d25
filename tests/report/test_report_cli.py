"""``nnchain compare`` through click: exit codes, formats, options, and no MLflow or Ray."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

from click.testing import CliRunner
from report_sweep_data import CELLS

from nnchain.cli.compare import compare
from nnchain.cli.main import main


def invoke(*args: str, command=compare, env=None):
    return CliRunner().invoke(command, list(args), catch_exceptions=False, env=env)


def test_table_by_default_with_a_summary_on_stderr(ledger, ledger_url):
    result = invoke("grid", "--ledger-url", ledger_url, "--top", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["index", "state", "train.lr"]
    assert len(lines) == 2 + 3
    assert "grid: 24 trials, 3 trials shown, sorted by val_cost ascending" in result.stderr


def test_options_end_to_end_in_csv(ledger, ledger_url):
    result = invoke("grid", "acc", "--ledger-url", ledger_url, "--sort", "-val_accuracy",
                    "--where", "model.hidden=[16, 16]", "--where", "state=finished",
                    "--columns", "sweep,index,model.hidden,val_accuracy", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["model.hidden"] for r in rows} == {"[16, 16]"}
    accuracies = [float(r["val_accuracy"]) for r in rows if r["val_accuracy"]]
    assert accuracies == sorted(accuracies, reverse=True)
    assert result.stderr == ""


def test_group_by_in_json(ledger, ledger_url):
    result = invoke("acc", "--ledger-url", ledger_url, "--group-by", "model.activation",
                    "--format", "json")
    assert result.exit_code == 0, result.output
    groups = json.loads(result.stdout)
    assert [g["model.activation"] for g in groups] and all(
        g["trials"] == len(CELLS) // 2 for g in groups)
    means = [g["val_accuracy.mean"] for g in groups]
    assert means == sorted(means, reverse=True)


def test_an_unknown_sweep_exits_2_with_one_line(ledger, ledger_url):
    result = invoke("gird", "--ledger-url", ledger_url)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: SWEEP: ") and "did you mean 'grid'" in result.stderr


def test_a_bad_where_exits_2_with_one_line(ledger, ledger_url):
    result = invoke("grid", "--ledger-url", ledger_url, "--where", "train.lr~0.1")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --where: ")


def test_a_missing_ledger_exits_2_and_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path}/nothing/ledger.db"
    result = invoke("grid", "--ledger-url", url)
    assert result.exit_code == 2 and "no sweep ledger" in result.stderr
    assert not (tmp_path / "nothing" / "ledger.db").exists()


def test_the_ledger_is_found_beside_the_tracking_store_or_from_the_environment(
        ledger, ledger_url, tmp_path):
    beside = invoke("grid", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                    "--format", "json", env={"NNCHAIN_LEDGER_URL": None})
    assert beside.exit_code == 0, beside.output
    assert len(json.loads(beside.stdout)) == len(CELLS)
    from_env = invoke("grid", "--format", "json", env={"NNCHAIN_LEDGER_URL": ledger_url})
    assert from_env.exit_code == 0 and len(json.loads(from_env.stdout)) == len(CELLS)


def test_registered_under_nnchain(ledger, ledger_url):
    result = invoke("compare", "grid", "--ledger-url", ledger_url, "--format", "json",
                    command=main)
    assert result.exit_code == 0 and len(json.loads(result.stdout)) == len(CELLS)


def test_a_compare_process_imports_neither_mlflow_nor_ray(ledger, ledger_url):
    code = ("import sys\nfrom nnchain.cli.main import main\ntry:\n    main(sys.argv[1:])\n"
            "finally:\n    print('heavy=' + ','.join(m for m in ('mlflow', 'ray') "
            "if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code, "compare", "grid", "--ledger-url",
                           ledger_url, "--format", "json"], capture_output=True, text=True,
                          env={**os.environ, "NNCHAIN_LEDGER_URL": ""}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == len(CELLS)
    assert done.stderr.strip().endswith("heavy=")


def test_an_unknown_where_operator_exits_2_listing_the_valid_ones(ledger, ledger_url):
    result = invoke("grid", "--ledger-url", ledger_url, "--where", "train.lr>>0.1")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "--where: OP must be one of = != < <= > >=, got '>>'" in result.stderr


def test_without_a_sweep_the_newest_is_compared(ledger, ledger_url):
    result = invoke("--ledger-url", ledger_url, "--columns", "sweep,index", "--format", "json")
    assert result.exit_code == 0, result.output
    assert {row["sweep"] for row in json.loads(result.stdout)} == {"acc"}
