"""``nnchain train`` and ``gradcheck`` end to end, read back through MLflow's own client."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from nnchain.cli.main import main
from nnchain.config import resolve_config, to_params

XOR = """
seed: 3
data: {name: xor, n_samples: 64, noise: 0.05, val_fraction: 0.25}
model: {hidden: [6], activation: tanh}
train: {epochs: 200, lr: 0.8}
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def default_client(home: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{home / 'nnchain-runs' / 'mlflow.db'}")


def test_train_records_params_metrics_and_artifacts(runs_home):
    spec = write(runs_home / "xor.yaml", XOR)
    result = invoke("train", str(spec), "--format", "json", "--quiet")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "FINISHED" and out["epochs"] == 200

    client = default_client(runs_home)
    run = client.get_run(out["run_id"])
    expected = to_params(resolve_config(__import__("yaml").safe_load(XOR)))
    assert run.data.params == expected
    history = client.get_metric_history(out["run_id"], "train_cost")
    assert [m.step for m in history] == list(range(200))
    assert history[-1].value < history[0].value
    assert run.data.metrics["val_accuracy"] == 1.0
    for key in ("grad_norm/layer1", "grad_norm/layer2", "delta_norm/layer1",
                "weight_norm/layer2", "update_ratio/layer1"):
        assert [m.step for m in client.get_metric_history(out["run_id"], key)] == \
            list(range(200)), key
    artifacts = {a.path for a in client.list_artifacts(out["run_id"])}
    assert {"weights.npz", "cost_curve.png", "config.yaml"} <= artifacts


def test_same_seed_gives_bit_identical_weights(runs_home):
    spec = write(runs_home / "xor.yaml", XOR)
    for name in ("a.npz", "b.npz"):
        assert invoke("train", str(spec), "--quiet", "--save-weights", name).exit_code == 0
    with np.load("a.npz", allow_pickle=False) as a, np.load("b.npz", allow_pickle=False) as b:
        assert sorted(a.files) == ["W1", "W2", "b1", "b2"]
        assert a["W1"].shape == (2, 6) and a["b2"].shape == (1,)
        for key in a.files:
            assert np.array_equal(a[key], b[key])


def test_init_weights_round_trip(runs_home):
    spec = write(runs_home / "xor.yaml", XOR)
    assert invoke("train", str(spec), "--quiet", "--save-weights", "w.npz").exit_code == 0
    result = invoke("train", str(spec), "--quiet", "--format", "json", "--set",
                    "train.epochs=1", "--set", "train.lr=1e-12", "--init-weights", "w.npz",
                    "--save-weights", "w2.npz")
    assert result.exit_code == 0, result.output
    with np.load("w.npz") as a, np.load("w2.npz") as b:
        for key in a.files:
            np.testing.assert_allclose(a[key], b[key], atol=1e-9)


def test_set_overrides_reach_params(runs_home):
    spec = write(runs_home / "xor.yaml", XOR)
    result = invoke("train", str(spec), "--quiet", "--format", "json", "--set",
                    "train.lr=0.3", "--set", "model.hidden=[3, 3]", "--set", "train.epochs=5")
    assert result.exit_code == 0, result.output
    params = default_client(runs_home).get_run(json.loads(result.stdout)["run_id"]).data.params
    assert params["train.lr"] == "0.3" and params["model.hidden"] == "[3, 3]"
    assert params["train.epochs"] == "5"


def test_divergence_ends_failed_with_reason(runs_home):
    spec = write(runs_home / "xor.yaml", XOR)
    result = invoke("train", str(spec), "--quiet", "--format", "json", "--set",
                    "train.lr=1e200", "--set", "model.output=identity", "--set",
                    "model.cost=mse")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "FAILED" and out["reason"].startswith("diverged at epoch ")
    run = default_client(runs_home).get_run(out["run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["nnchain.status_reason"] == out["reason"]


BAD_SPECS = {
    "unknown key": ("data: {name: xor}\ntrain: {lrr: 0.1}\n", "train.lrr", "did you mean"),
    "wrong type": ("data: {name: xor}\ntrain: {epochs: many}\n", "train.epochs", "integer"),
    "negative lr": ("data: {name: xor}\ntrain: {lr: -0.1}\n", "train.lr", "> 0"),
    "zero epochs": ("data: {name: xor}\ntrain: {epochs: 0}\n", "train.epochs", ">= 1"),
    "zero width": ("data: {name: xor}\nmodel: {hidden: [4, 0]}\n", "model.hidden", "[4, 0]"),
    "val_fraction": ("data: {name: xor, val_fraction: 1.0}\n", "data.val_fraction", "[0, 1)"),
    "bce 3 classes": ("data: {name: iris}\nmodel: {cost: bce}\n", "model.cost", "3 classes"),
    "bad yaml": ("data: {name: xor\n", "", "valid YAML"),
    "unknown dataset": ("data: {name: spiral}\n", "data.name", "did you mean 'spirals'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(runs_home, case):
    text, field, phrase = BAD_SPECS[case]
    spec = write(runs_home / "bad.yaml", text)
    result = invoke("train", str(spec), "--quiet")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert field in lines[0] and phrase in lines[0]
    assert not (runs_home / "nnchain-runs").exists()


def test_softmax_with_mse_is_allowed(runs_home):
    spec = write(runs_home / "iris.yaml", "data: {name: iris}\nmodel: {output: softmax, "
                                          "cost: mse}\ntrain: {epochs: 3}\n")
    assert invoke("train", str(spec), "--quiet").exit_code == 0


def test_missing_spec_file(runs_home):
    result = invoke("train", "nope.yaml")
    assert result.exit_code == 2 and "nope.yaml" in result.stderr
    assert not (runs_home / "nnchain-runs").exists()


def test_hostile_npz_is_refused_without_running_it(runs_home):
    marker = runs_home / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    np.savez("evil.npz", W1=np.array([Payload()], dtype=object))
    spec = write(runs_home / "xor.yaml", XOR)
    result = invoke("train", str(spec), "--quiet", "--init-weights", "evil.npz")
    assert result.exit_code == 2 and "pickled" in result.stderr
    assert not marker.exists()
    assert not (runs_home / "nnchain-runs").exists()
    assert pickle  # the payload above is what pickle would run


def test_wrong_weight_shapes_refused(runs_home):
    np.savez("w.npz", W1=np.zeros((3, 6)), b1=np.zeros(6), W2=np.zeros((6, 1)), b2=np.zeros(1))
    spec = write(runs_home / "xor.yaml", XOR)
    result = invoke("train", str(spec), "--quiet", "--init-weights", "w.npz")
    assert result.exit_code == 2 and "W1" in result.stderr
    assert not (runs_home / "nnchain-runs").exists()


def test_gradcheck_passes_and_prints_json(runs_home):
    spec = write(runs_home / "xor.yaml", XOR)
    result = invoke("gradcheck", str(spec), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and set(report["parameters"]) == {"W1", "b1", "W2", "b2"}
    assert all(p["rel_error"] < 1e-5 for p in report["parameters"].values())


def test_python_dash_m_runs_train(runs_home):
    spec = write(runs_home / "xor.yaml", XOR)
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    done = subprocess.run([sys.executable, "-m", "nnchain", "train", str(spec), "--format",
                           "json", "--set", "train.epochs=20"], capture_output=True,
                          text=True, env=env, cwd=runs_home, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    run = default_client(runs_home).get_run(out["run_id"])
    assert run.info.status == "FINISHED"
