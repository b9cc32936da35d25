"""A recorded sweep's pictures and report, read back through MLflow's own client.

One real sweep for the module (local Ray, SQLite): 2 learning rates that train and one
that diverges (FAILED trials) x 2 depths x 2 seeds, so the report covers a sweep that
ended with failures.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from mlflow import MlflowClient
from PIL import Image

from nnchain.cli.main import main
from nnchain.runner.sweep import SweepOptions, run_sweep

pytestmark = pytest.mark.slow

SPEC = """
name: report-grid
experiment: reports
seed: 0
metric: {name: val_cost, goal: minimize}
repeats: 2
data: {name: spirals, n_samples: 120, noise: 0.1, val_fraction: 0.25}
model: {hidden: [4], activation: relu, output: identity, cost: mse}
train: {epochs: 12, lr: 0.05}
parameters:
  train.lr: {values: [0.01, 0.05, 1.0e+30]}
  model.hidden: {values: [[4], [4, 4]]}
"""
TRIAL_PICTURES = ("cost_curve.png", "gradient_flow.png")
PARENT_FILES = ("report.html", "results.csv", "summary.json", "learning_curves.png",
                "gradient_flow.png", "param_train.lr.png", "param_model.hidden.png")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, ray_local):
    home = tmp_path_factory.mktemp("report-sweep")
    (home / "spec.yaml").write_text(SPEC)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    result = run_sweep(str(home / "spec.yaml"), [], SweepOptions(tracking_uri=uri))
    return {"home": home, "uri": uri, "result": result, "client": MlflowClient(uri)}


def png(payload: bytes) -> Image.Image:
    assert payload.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(payload))
    image.load()  # every pixel decoded: a broken file raises
    return image


def artifact(client: MlflowClient, run_id: str, name: str, folder: Path) -> bytes:
    return Path(client.download_artifacts(run_id, name, str(folder))).read_bytes()


def trial_runs(client: MlflowClient, result) -> list:
    return client.search_runs([result.experiment_id],
                              f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")


def test_the_sweep_ended_with_failures(recorded):
    result = recorded["result"]
    assert result.status == "FAILED"
    assert result.counts["FINISHED"] == 8 and result.counts["FAILED"] == 4


def test_every_trial_run_carries_its_config_and_pictures(recorded, tmp_path):
    client, result = recorded["client"], recorded["result"]
    runs = trial_runs(client, result)
    assert len(runs) == 12
    for run in runs:
        names = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", *TRIAL_PICTURES} <= names, run.info.run_name
        config = yaml.safe_load(artifact(client, run.info.run_id, "config.yaml",
                                         tmp_path / run.info.run_id))
        assert config["train"]["lr"] == float(run.data.params["train.lr"])
        for picture in TRIAL_PICTURES:
            assert png(artifact(client, run.info.run_id, picture,
                                tmp_path / run.info.run_id)).size == (640, 400)
        # whole, short names: t001 lr=0.05 hidden=[4,4] rep=1
        assert re.fullmatch(r"t\d{3} lr=\S+ hidden=\[[\d,]+\] rep=[01]", run.info.run_name)


def test_parent_run_summarises_the_sweep(recorded, tmp_path):
    client, result = recorded["client"], recorded["result"]
    parent = client.get_run(result.parent_run_id)
    metrics = parent.data.metrics
    assert metrics["trials_finished"] == 8 and metrics["trials_failed"] == 4
    assert metrics["trials_total"] == 12
    finals = [client.get_metric_history(run.info.run_id, "val_cost")[-1].value
              for run in trial_runs(client, result) if run.info.status == "FINISHED"]
    assert metrics["best_val_cost"] == min(finals)
    names = {f.path for f in client.list_artifacts(result.parent_run_id)}
    assert set(PARENT_FILES) <= names
    for name in PARENT_FILES:
        if name.endswith(".png"):
            png(artifact(client, result.parent_run_id, name, tmp_path))
    description = parent.data.tags["mlflow.note.content"]
    assert "report-grid" in description and "report.html" in description
    assert "nnchain report report-grid" in description


def test_report_numbers_equal_what_mlflow_holds(recorded, tmp_path):
    """Per group of (lr, hidden): the final val_cost's mean and sample std over seeds, and
    the val_cost curve's mean and std per epoch, recomputed from MLflow's histories."""
    client, result = recorded["client"], recorded["result"]
    summary = json.loads(artifact(client, result.parent_run_id, "summary.json", tmp_path))
    assert summary["group_by"] == ["train.lr", "model.hidden"]
    assert summary["counts"] == {"FAILED": 4, "FINISHED": 8}
    groups: dict[tuple, list[list[float]]] = {}
    for run in trial_runs(client, result):
        if run.info.status != "FINISHED":
            continue
        key = (float(run.data.params["train.lr"]), run.data.params["model.hidden"])
        history = sorted(client.get_metric_history(run.info.run_id, "val_cost"),
                         key=lambda m: m.step)
        groups.setdefault(key, []).append([m.value for m in history])
    by_label = {(g["values"]["train.lr"], str(g["values"]["model.hidden"])): g
                for g in summary["groups"]}
    assert len(by_label) == 6
    for key, curves in groups.items():
        group = by_label[key]
        finals = [curve[-1] for curve in curves]
        assert group["final"]["count"] == len(finals) == 2
        assert group["final"]["mean"] == pytest.approx(np.mean(finals), rel=1e-12)
        assert group["final"]["std"] == pytest.approx(np.std(finals, ddof=1), rel=1e-12)
        stack = np.array(curves)
        curve = group["curves"]["val_cost"]
        assert curve["count"] == [2] * stack.shape[1]
        np.testing.assert_allclose(curve["mean"], stack.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(curve["std"], stack.std(axis=0, ddof=1), rtol=1e-12)
    diverged = [g for g in summary["groups"] if g["values"]["train.lr"] == 1e30]
    assert all(g["final"]["count"] == 0 and g["final"]["mean"] is None for g in diverged)
    best = summary["best"]
    assert best["value"] == min(v[-1] for curves in groups.values() for v in curves)


def test_report_html_is_self_contained_with_links_to_trials(recorded, tmp_path):
    client, result = recorded["client"], recorded["result"]
    page = artifact(client, result.parent_run_id, "report.html", tmp_path).decode()
    assert not re.search(r"<(script|link|iframe)\b", page)
    sources = re.findall(r"src='([^']*)'", page)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    for run in trial_runs(client, result):
        assert f"/runs/{run.info.run_id}'" in page
    rows = artifact(client, result.parent_run_id, "results.csv", tmp_path).decode()
    lines = rows.strip().splitlines()
    assert len(lines) == 13 and lines[0].endswith(",run_id")
    assert all(",FAILED," in line for line in lines[-4:])


# ---- nnchain report ------------------------------------------------------------------------
def run_cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_report_cli_writes_the_same_numbers(recorded, tmp_path):
    client, result = recorded["client"], recorded["result"]
    out = tmp_path / "local"
    outcome = run_cli("report", "report-grid", "--tracking-uri", recorded["uri"],
                      "--out", f"{out}/")
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout.strip() == str(out / "report.html")
    for name in PARENT_FILES:
        assert (out / name).is_file()
    logged = json.loads(artifact(client, result.parent_run_id, "summary.json", tmp_path))
    assert json.loads((out / "summary.json").read_text()) == logged


def test_report_cli_groups_and_metric(recorded, tmp_path):
    out = tmp_path / "lr.html"
    outcome = run_cli("report", result_id(recorded), "--tracking-uri", recorded["uri"],
                      "--group-by", "train.lr", "--metric", "train_cost", "--out", str(out))
    assert outcome.exit_code == 0, outcome.output
    page = out.read_text()
    assert page.count("data:image/png;base64,") >= 4
    groups_table = page.split("<h2>Groups</h2>")[1].split("</table>")[0]
    assert groups_table.count("<tr>") == 4  # header + 3 learning rates
    assert "train_cost mean" in groups_table


def result_id(recorded) -> str:
    return recorded["result"].sweep_id


@pytest.mark.parametrize("args, field", [
    (["no-such-sweep"], "SWEEP"),
    (["report-grid", "--metric", "val_cst"], "--metric"),
    (["report-grid", "--group-by", "train.learning_rate"], "--group-by"),
])
def test_report_cli_bad_input_is_one_line_and_writes_nothing(recorded, tmp_path, args, field):
    out = tmp_path / "out.html"
    outcome = CliRunner().invoke(main, ["report", *args, "--tracking-uri", recorded["uri"],
                                        "--out", str(out)])
    assert outcome.exit_code == 2
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:")
    assert not out.exists()


def test_report_cli_without_a_ledger(tmp_path):
    outcome = CliRunner().invoke(main, ["report", "x", "--tracking-uri",
                                        f"sqlite:///{tmp_path / 'none.db'}"])
    assert outcome.exit_code == 2 and len(outcome.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


# ---- a large sweep's best trials, and a resume (last: they write to the recorded sweep) --------
def test_best_trials_pictures_drawn_at_the_end(recorded):
    """Sweeps over the workers' limit get their best trials' pictures from the curves."""
    from nnchain.ledger.store import open_existing_ledger
    from nnchain.report.html import publish_report

    client, result = recorded["client"], recorded["result"]
    runs = {run.info.run_id: run for run in trial_runs(client, result)}
    folders = {run_id: Path(run.info.artifact_uri.removeprefix("file://"))
               for run_id, run in runs.items()}
    for folder in folders.values():
        for picture in TRIAL_PICTURES:
            (folder / picture).unlink()
    ledger = open_existing_ledger(recorded["uri"], None)
    try:
        publish_report(ledger, client, result.sweep_id, top_pictures=3)
    finally:
        ledger.dispose()
    drawn = {run_id for run_id, folder in folders.items()
             if all((folder / p).is_file() for p in TRIAL_PICTURES)}
    finals = sorted((client.get_metric_history(run_id, "val_cost")[-1].value, run_id)
                    for run_id, run in runs.items() if run.info.status == "FINISHED")
    assert drawn == {run_id for _, run_id in finals[:3]}
    for run_id in drawn:
        png((folders[run_id] / "gradient_flow.png").read_bytes())


def test_resume_rewrites_the_report(recorded, tmp_path):
    """The diverging trials run again on resume and fail again: the parent's summary is
    written again, its metrics at the next step (steps stay unique and contiguous)."""
    from nnchain.runner.sweep import resume_sweep

    client, result = recorded["client"], recorded["result"]
    parent = client.get_run(result.parent_run_id)
    report = Path(parent.info.artifact_uri.removeprefix("file://")) / "report.html"
    report.unlink()
    resumed = resume_sweep(result.sweep_id, SweepOptions(tracking_uri=recorded["uri"]))
    assert resumed.status == "FAILED" and resumed.counts["FAILED"] == 4
    assert "t00" in artifact(client, result.parent_run_id, "report.html", tmp_path).decode()
    for key in ("trials_finished", "trials_failed", "best_val_cost"):
        history = client.get_metric_history(result.parent_run_id, key)
        assert sorted(m.step for m in history) == list(range(len(history)))
        assert len(history) >= 2
    assert client.get_metric_history(result.parent_run_id, "trials_failed")[-1].value == 4


def test_curves_read_through_the_adapter_equal_the_clients(recorded, monkeypatch):
    """The report's curves from MLflow's tables (nnchain.tracking.mlflow_sql) equal those
    read through MlflowClient (NNCHAIN_PLAIN_MLFLOW=1), keys found by name or by prefix."""
    from nnchain.report.summary import load_histories

    client, result = recorded["client"], recorded["result"]
    run_ids = [run.info.run_id for run in trial_runs(client, result)]
    direct = load_histories(recorded["uri"], run_ids, "val_cost")
    monkeypatch.setenv("NNCHAIN_PLAIN_MLFLOW", "1")
    through_client = load_histories(recorded["uri"], run_ids, "val_cost")
    assert set(direct) == set(through_client) == set(run_ids)
    for run_id, curves in through_client.items():
        assert set(direct[run_id]) == set(curves)
        assert any(key.startswith("grad_norm/layer") for key in curves)
        for key, values in curves.items():
            np.testing.assert_array_equal(direct[run_id][key], values)


def whole_report(ledger, uri: str, ref: str, metric=None, group_by=None):
    """The report as it was made before it streamed: every trial and every history held."""
    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.report.compare import compare_loaded
    from nnchain.report.html import report_files
    from nnchain.report.output import to_csv
    from nnchain.report.query import load_trials
    from nnchain.report.summary import build_summary, check_options, curve_keys, load_histories

    loaded = load_trials(ledger, [ref])
    metric, keys = check_options(loaded, metric, group_by)
    record = ledger_ops.find_sweep(ledger, ref)
    histories = load_histories(uri, (row["run_id"] for row in loaded.rows), metric,
                               curve_keys(loaded.metric_keys(), metric))
    summary = build_summary(loaded, experiment_id=record.experiment_id,
                            parent_run_id=record.parent_run_id, histories=histories,
                            metric=metric, group_by=keys)
    sign = "" if summary.goal == "minimize" else "-"
    comparison = compare_loaded(loaded, sort=f"{sign}{metric}",
                                columns=[f"+{metric}", "+run_id"])
    return summary, report_files(summary, to_csv(comparison).encode())


def without_time(page: bytes) -> bytes:
    return re.sub(rb"made \d{4}-\d\d-\d\d \d\d:\d\d UTC", b"made -", page)


@pytest.mark.parametrize(("options", "runs_per_read"), [
    ({}, 250), ({"group_by": ["seed"]}, 1), ({"group_by": ["model.hidden"]}, 3),
    ({"metric": "train_cost", "group_by": ["train.lr", "seed"]}, 2)])
def test_the_streamed_report_is_the_whole_one(recorded, monkeypatch, options, runs_per_read):
    """Read a chunk of runs at a time (chunks ending mid-group too), each group written
    when its last run is read: the same files as with every history held."""
    from nnchain.ledger.store import open_existing_ledger
    from nnchain.report import html

    monkeypatch.setattr(html, "STREAMED_RUNS_PER_READ", runs_per_read)
    ledger = open_existing_ledger(recorded["uri"], None)
    try:
        name = recorded["result"].name
        whole, expected = whole_report(ledger, recorded["uri"], name, **options)
        summary, files = html.sweep_report(ledger, recorded["uri"], name, keep_histories=3,
                                           **options)
    finally:
        ledger.dispose()
    assert set(files) == set(expected)
    for file_name, payload in expected.items():
        if file_name == html.REPORT:
            assert without_time(files[file_name]) == without_time(payload)
        else:
            assert files[file_name] == payload, file_name
    text = files[html.SUMMARY].decode()
    assert text == json.dumps(json.loads(text), indent=1)  # json.dumps' own layout
    assert [row["run_id"] for row in summary.ranked] == [row["run_id"] for row in whole.ranked]
    kept = [row["run_id"] for row in whole.ranked[:3] if row["run_id"] in whole.histories]
    assert set(summary.histories) == set(kept)
    for run_id in kept:
        assert summary.histories[run_id].keys() == whole.histories[run_id].keys()
        for key, values in whole.histories[run_id].items():
            np.testing.assert_array_equal(summary.histories[run_id][key], values)


def test_past_the_cap_groups_have_their_final_figures_only(recorded, monkeypatch):
    """summary.json holds the curves of the best MAX_GROUPS_WITH_CURVES groups; the others
    keep every figure but their curves, and no run of theirs is read from the store."""
    from nnchain.ledger.store import open_existing_ledger
    from nnchain.report import html, summary, summary_json

    read: list[str] = []
    histories = summary.iter_histories

    def counted(uri, runs, *args, **kwargs):
        runs = list(runs)
        read.extend(runs)
        return histories(uri, runs, *args, **kwargs)

    ledger = open_existing_ledger(recorded["uri"], None)
    try:
        name = recorded["result"].name
        _, files = html.sweep_report(ledger, recorded["uri"], name)
        monkeypatch.setattr(summary_json, "MAX_GROUPS_WITH_CURVES", 2)
        monkeypatch.setattr(summary, "iter_histories", counted)
        capped_summary, capped = html.sweep_report(ledger, recorded["uri"], name)
    finally:
        ledger.dispose()
    whole, cut = json.loads(files[html.SUMMARY]), json.loads(capped[html.SUMMARY])
    assert whole["groups_with_curves"] == len(whole["groups"]) == 6
    assert cut["groups_with_curves"] == 2
    assert cut["groups"][:2] == whole["groups"][:2]
    for kept, bare in zip(whole["groups"][2:], cut["groups"][2:], strict=True):
        assert bare["curves"] == {}
        assert {**bare, "curves": kept["curves"]} == kept
    members = {row["run_id"] for group in capped_summary.groups[:2] for row in group.rows
               if row["state"] == "FINISHED"}
    assert set(read) == members
    assert capped[html.RESULTS] == files[html.RESULTS]
