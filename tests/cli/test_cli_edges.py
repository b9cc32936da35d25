"""The CLI's edges: a spec given to the wrong command names the right one, names keep one
rule, bad input is one line with nothing drawn before it, and the README's main command
gives the sweep it just ran when run a second time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nnchain.cli.main import main

ROOT = Path(__file__).parents[2]
TRAINING = "data: {name: xor, n_samples: 40}\ntrain: {epochs: 3}\n"
SWEEP = ("name: tiny\nexperiment: tiny\ndata: {name: xor, n_samples: 40, val_fraction: 0.25}\n"
         "model: {hidden: [2]}\ntrain: {epochs: 3}\nparameters:\n"
         "  train.lr: {values: [0.1, 0.5]}\n")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # nothing drawn before it (no progress bar)
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("command", [["sweep", "run"], ["sweep", "submit"]])
def test_a_training_spec_given_to_a_sweep_command_names_nnchain_train(runs_home, command):
    spec = runs_home / "one.yaml"
    spec.write_text(TRAINING)
    line = one_error_line(invoke(*command, str(spec), "--address", "http://127.0.0.1:1"))
    assert f"{spec}: is a training spec" in line and f"nnchain train {spec}" in line
    assert not (runs_home / "nnchain-runs").exists()


def test_a_sweep_spec_given_to_train_names_nnchain_sweep_run(runs_home):
    spec = runs_home / "grid.yaml"
    spec.write_text(SWEEP)
    line = one_error_line(invoke("train", str(spec)))
    assert f"{spec}: is a sweep spec" in line and f"nnchain sweep run {spec}" in line
    assert not (runs_home / "nnchain-runs").exists()


def test_gradcheck_checks_a_sweep_specs_first_cell(runs_home):
    spec = runs_home / "grid.yaml"
    spec.write_text(SWEEP)
    result = invoke("gradcheck", str(spec), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"]
    assert "first cell (train.lr=0.1)" in result.stderr
    assert f"`nnchain sweep run {spec}` runs them all" in result.stderr


@pytest.mark.parametrize(("args", "field"), [
    (["--name", "a b"], "--name"),
    (["--name", "../up"], "--name"),
    (["--set", "name=a b"], "name"),
    (["--set", "experiment=a/b"], "experiment"),
])
def test_sweep_names_keep_one_rule(runs_home, args, field):
    spec = runs_home / "grid.yaml"
    spec.write_text(SWEEP)
    line = one_error_line(invoke("sweep", "run", str(spec), *args))  # not --quiet
    assert line.startswith(f"error: {field}: must be 1-100 letters, digits, '.', '_' or '-'")
    assert not (runs_home / "nnchain-runs").exists()


def test_train_experiment_keeps_the_same_rule(runs_home):
    spec = runs_home / "one.yaml"
    spec.write_text(TRAINING)
    line = one_error_line(invoke("train", str(spec), "--experiment", "a b"))
    assert line.startswith("error: --experiment: must be 1-100 letters, digits")
    assert not (runs_home / "nnchain-runs").exists()


def test_readme_main_command_twice_compares_the_newest_sweep(runs_home, ray_local):
    """`nnchain sweep run workflows/xor.yaml && nnchain compare`, run twice: the second
    sweep is xor-grid-2 and `compare` shows it."""
    spec = str(ROOT / "workflows" / "xor.yaml")
    for expected in ("xor-grid", "xor-grid-2"):
        ran = invoke("sweep", "run", spec, "--set", "train.epochs=3", "--set",
                     "data.n_samples=40", "--quiet", "--format", "json")
        assert ran.exit_code == 0, ran.output
        assert json.loads(ran.stdout)["name"] == expected
        compared = invoke("compare", "--columns", "sweep,index", "--format", "json")
        assert compared.exit_code == 0, compared.output
        assert {row["sweep"] for row in json.loads(compared.stdout)} == {expected}


@pytest.mark.parametrize(("code", "body", "said"), [
    ("403", "Permission denied", "it does not allow it (Permission denied) (HTTP 403)"),
    ("401", "You are not authenticated.\nhttps://mlflow.org", "it does not know that user "
     "or password (You are not authenticated.) (HTTP 401)")])
def test_a_tracking_server_refusal_is_one_line_and_exit_1(monkeypatch, code, body, said):
    """A server that refuses the user (no EDIT on the experiment, a wrong password) is
    named in one line with the user and the endpoint, not a traceback."""
    import click
    from mlflow.exceptions import MlflowException

    from nnchain.cli.main import invoke_translated

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")

    def refused(ctx):
        raise MlflowException(f"API request to endpoint /api/2.0/mlflow/runs/create failed "
                              f"with error code {code} != 200. Response body: '{body}'")

    ctx = click.Context(main)
    with pytest.raises(click.exceptions.Exit) as exited:
        invoke_translated(refused, ctx)
    assert exited.value.exit_code == 1
    from nnchain.cli.main import _server_refusal

    try:
        refused(ctx)
    except MlflowException as exc:
        assert _server_refusal(exc).endswith(said)


def test_the_refusal_line_names_user_endpoint_and_reason(monkeypatch):
    from mlflow.exceptions import MlflowException

    from nnchain.cli.main import _server_refusal

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "reader")
    line = _server_refusal(MlflowException(
        "API request to endpoint /api/2.0/mlflow/runs/create failed with error code 403 != "
        "200. Response body: 'Permission denied'"))
    assert line == ("the MLflow tracking server refused /api/2.0/mlflow/runs/create for user "
                    "'reader': it does not allow it (Permission denied) (HTTP 403)")
    assert _server_refusal(MlflowException("failed with error code 500")) is None
    assert _server_refusal(ValueError("failed with error code 403")) is None
