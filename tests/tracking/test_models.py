"""Trials as MLflow models, on SQLite: logged at the sweep's end in the "models from code"
form (no pickle), predictions equal to a numpy forward pass written here, the registry
round trip through ``nnchain promote``, ``nnchain predict``, ``mlflow models serve``, and
the bad input of both commands.

One recorded store per module: a binary sweep (xor, sigmoid output, 2 trials) and a
regression sweep (a CSV target, 2 trials, one of which diverges and FAILS).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from local_services import free_ports
from mlflow import MlflowClient

from nnchain.cli.main import main

pytestmark = pytest.mark.slow

BINARY = """
name: models-binary
experiment: models
seed: 1
metric: {name: val_cost, goal: minimize}
data: {name: xor, n_samples: 80, noise: 0.05, val_fraction: 0.25}
model: {hidden: [5, 3], activation: tanh}
train: {epochs: 4, lr: 0.5}
parameters:
  train.lr: {values: [0.5, 0.05]}
"""
REGRESSION = """
name: models-regression
experiment: models
seed: 2
metric: {name: val_cost, goal: minimize}
data: {path: PATH, target: y, val_fraction: 0.25}
model: {hidden: [4], activation: relu, output: identity, cost: mse}
train: {epochs: 4, lr: 0.01}
parameters:
  train.lr: {values: [0.01, 1.0e+12]}
"""
ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "identity": lambda z: z,
}


def write_regression_csv(path: Path) -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(60, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -3.0]
    y = x @ [0.5, -0.05, 2.0] + 0.1 * rng.normal(size=60)
    rows = ["a,b,c,y"] + [",".join(repr(float(v)) for v in (*row, t))
                                 for row, t in zip(x, y, strict=True)]
    path.write_text("\n".join(rows) + "\n")


def record_sweeps(root: Path, uri: str) -> dict:
    """Run both sweeps into ``uri``; returns {name: SweepResult}."""
    from nnchain.runner.sweep import SweepOptions, run_sweep

    csv_path = root / "regression.csv"
    write_regression_csv(csv_path)
    results = {}
    for name, text in (("binary", BINARY), ("regression", REGRESSION)):
        spec = root / f"{name}.yaml"
        spec.write_text(text.replace("PATH", str(csv_path)))
        results[name] = run_sweep(str(spec), [], SweepOptions(tracking_uri=uri,
                                                              max_concurrent=2))
    return results


def numpy_forward(weights: dict, x: np.ndarray, activation: str, output: str) -> np.ndarray:
    """The network's output written from its weights with numpy alone."""
    a = x
    layers = len(weights) // 2
    for i in range(1, layers + 1):
        z = a @ weights[f"W{i}"] + weights[f"b{i}"]
        a = ACTIVATIONS[activation if i < layers else output](z)
    return a


def run_weights(client: MlflowClient, run_id: str, tmp: Path) -> dict:
    path = client.download_artifacts(run_id, "weights.npz", str(tmp))
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def store(tmp_path_factory, ray_local):
    import mlflow

    root = tmp_path_factory.mktemp("models")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    results = record_sweeps(root, uri)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)  # for mlflow.pyfunc.load_model("runs:/...") in the tests
    yield {"root": root, "uri": uri, "results": results,
           "client": MlflowClient(tracking_uri=uri, registry_uri=uri)}
    mlflow.set_tracking_uri(previous)


def parent(store, name: str):
    return store["client"].get_run(store["results"][name].parent_run_id)


def trial_runs(store, name: str) -> list:
    client, result = store["client"], store["results"][name]
    runs = client.search_runs([result.experiment_id], max_results=100,
                              filter_string=f"tags.mlflow.parentRunId = "
                                            f"'{result.parent_run_id}'")
    return sorted(runs, key=lambda r: int(r.data.tags.get("nnchain.trial_index", 0)))


def registered(store) -> list:
    return store["client"].search_registered_models()


# ---- the model a sweep leaves -------------------------------------------------------------

def test_best_trial_of_each_sweep_is_a_model_from_code_without_pickle(store, tmp_path):
    import mlflow

    assert store["results"]["binary"].status == "FINISHED"
    assert store["results"]["regression"].status == "FAILED"  # the diverged trial
    for name in ("binary", "regression"):
        tags = parent(store, name).data.tags
        model_uri = tags["nnchain.best_model_uri"]
        best_run = store["client"].get_run(tags["nnchain.best_run_id"])
        assert best_run.data.tags["nnchain.model_uri"] == model_uri
        assert best_run.info.status == "FINISHED"
        folder = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=str(tmp_path / name), tracking_uri=store["uri"]))
        files = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert {"MLmodel", "pyfunc_model.py", "input_example.json",
                "artifacts/weights.npz", "artifacts/config.json",
                "artifacts/columns.json", "artifacts/scaling.npz"} <= files
        for path in folder.rglob("*"):
            assert path.suffix not in (".pkl", ".pickle"), path
            if path.is_file():
                head = path.read_bytes()[:2]
                assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04",
                                                                   b"\x05")), path
        mlmodel = (folder / "MLmodel").read_text()
        assert "model_code_path" in mlmodel and "python_model:" not in mlmodel
        assert "signature:" in mlmodel and "saved_input_example_info" in mlmodel
        requirements = (folder / "requirements.txt").read_text()
        assert "nnchain==" in requirements
        config = json.loads((folder / "artifacts/config.json").read_text())
        assert config["train"]["lr"] == float(best_run.data.params["train.lr"])


def test_pyfunc_predictions_equal_a_numpy_forward_pass(store, tmp_path):
    """ndarray and DataFrame inputs, raw (unscaled) rows, against weights.npz read here
    and the training split's mean and std recomputed from the data."""
    import mlflow
    import pandas as pd

    from nnchain.data import load_dataset, split

    for name in ("binary", "regression"):
        run_id = parent(store, name).data.tags["nnchain.best_run_id"]
        run = store["client"].get_run(run_id)
        model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
        config = json.loads(Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"runs:/{run_id}/model/artifacts/config.json",
            dst_path=str(tmp_path / name), tracking_uri=store["uri"])).read_text())
        data = config["data"]
        seeds = np.random.SeedSequence(data.get("seed", 0)).spawn(2)
        dataset = load_dataset(name=data.get("name"), path=data.get("path"),
                               target=data.get("target"), n_samples=data.get("n_samples", 500),
                               noise=data.get("noise", 0.1), classes=data.get("classes", 2),
                               rng=np.random.default_rng(seeds[0]))
        train, val = split(dataset, data["val_fraction"], np.random.default_rng(seeds[1]))
        mean = train.x.mean(axis=0)
        std = train.x.std(axis=0)
        x = np.vstack([val.x, train.x[:5]])
        weights = run_weights(store["client"], run_id, tmp_path / f"{name}-w")
        expected = numpy_forward(weights, (x - mean) / std, config["model"]["activation"],
                                 config["model"]["output"])
        if name == "binary":
            expected = np.hstack([1 - expected, expected])  # P(class 0), P(class 1)
        got = model.predict(x)
        assert got.dtype == np.float64 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        frame = pd.DataFrame(x, columns=list(train.feature_names))
        np.testing.assert_allclose(np.asarray(model.predict(frame)), expected, rtol=0,
                                   atol=1e-12)
        assert run.data.params["model.output"] == config["model"]["output"]


def test_nnchains_own_forward_pass_agrees(store, tmp_path):
    """The model against nnchain's Network on the same weights and standardisation."""
    import mlflow

    from nnchain.job import build_job, make_data

    run_id = parent(store, "binary").data.tags["nnchain.best_run_id"]
    trial = next(r for r in trial_runs(store, "binary") if r.info.run_id == run_id)
    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.ledger.store import open_ledger, resolve_ledger_url

    ledger = open_ledger(resolve_ledger_url(store["uri"], None), create=False)
    config = next(t.config for t in ledger_ops.trials_of(
        ledger, store["results"]["binary"].sweep_id) if t.run_id == trial.info.run_id)
    ledger.dispose()
    split_data = make_data(config["data"])
    job = build_job(config, split_data,
                    init_weights=run_weights(store["client"], run_id, tmp_path))
    raw = split_data.val.x * split_data.scale + split_data.mean
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    np.testing.assert_allclose(model.predict(raw)[:, 1:], job.network.predict(split_data.val.x),
                               rtol=0, atol=1e-12)


def test_the_model_loads_with_nnchains_engine_only(store, tmp_path):
    """Loading the model imports nnchain.nn and the weights reader, not the runner, the
    ledger, the tracking code, the data loaders, Ray or SQLAlchemy (checked in a fresh
    process, against what ``import mlflow.pyfunc`` imported already)."""
    import mlflow

    folder = mlflow.artifacts.download_artifacts(
        artifact_uri=parent(store, "binary").data.tags["nnchain.best_model_uri"],
        dst_path=str(tmp_path), tracking_uri=store["uri"])
    code = (
        "import json, sys\n"
        "import mlflow.pyfunc\n"
        "before = set(sys.modules)\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1], suppress_warnings=True)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n")
    done = subprocess.run([sys.executable, "-c", code, folder], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "nnchain.nn.network" in loaded and "nnchain.weights" in loaded
    heavy = ("nnchain.tracking", "nnchain.runner", "nnchain.ledger", "nnchain.job",
             "nnchain.data", "nnchain.config", "nnchain.sweep", "ray", "sqlalchemy")
    assert not [m for m in loaded if m.startswith(heavy)], loaded


def test_a_driver_whose_working_directory_was_removed_still_logs(store, tmp_path):
    """A sweep submitted as a Ray job can outlive its working_dir on the head; MLflow's
    save_model reads the working directory. Checked in a process whose cwd is gone."""
    client = store["client"]
    best = parent(store, "binary").data.tags["nnchain.best_run_id"]
    run_id = client.create_run(client.get_run(best).info.experiment_id).info.run_id
    client.set_terminated(run_id)
    gone = tmp_path / "gone"
    code = (
        "import os, shutil, sys\n"
        "from nnchain.job import make_data\n"
        "from nnchain.ledger import sweeps\n"
        "from nnchain.ledger.store import open_ledger, resolve_ledger_url\n"
        "from nnchain.tracking.models import log_run_model\n"
        "from nnchain.tracking.store import open_client\n"
        "uri, best, run_id, gone = sys.argv[1:]\n"
        "client = open_client(uri)\n"
        "ledger = open_ledger(resolve_ledger_url(uri, None), create=False)\n"
        "config = next(t.config for s, _ in sweeps.list_sweeps(ledger)\n"
        "              for t in sweeps.trials_of(ledger, s.id) if t.run_id == best)\n"
        "path = client.download_artifacts(best, 'weights.npz', os.path.dirname(gone))\n"
        "client.log_artifact(run_id, path)\n"
        "os.makedirs(gone); os.chdir(gone); shutil.rmtree(gone)\n"
        "print(log_run_model(client, uri, run_id, config))\n")
    done = subprocess.run([sys.executable, "-c", code, store["uri"], best, run_id, str(gone)],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    model_uri = done.stdout.strip().splitlines()[-1]
    assert client.get_run(run_id).data.tags["nnchain.model_uri"] == model_uri


# ---- promote and the registry --------------------------------------------------------------

def test_promote_registers_the_best_trial_and_sets_the_alias(store):
    import mlflow

    client, uri = store["client"], store["uri"]
    done = cli("promote", "models-binary", "--name", "xor-net", "--alias", "champion",
               "--tracking-uri", uri, "--format", "json")
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    best = parent(store, "binary").data.tags
    version = client.get_model_version_by_alias("xor-net", "champion")
    assert str(version.version) == str(out["version"]) == "1"
    assert version.run_id == best["nnchain.best_run_id"] == out["run_id"]
    assert version.source == best["nnchain.best_model_uri"] == out["model_uri"]
    x = np.array([[0.1, 0.9], [0.9, 0.9], [-0.2, 0.1]])
    by_alias = mlflow.pyfunc.load_model("models:/xor-net@champion").predict(x)
    by_run = mlflow.pyfunc.load_model(f"runs:/{version.run_id}/model").predict(x)
    np.testing.assert_array_equal(by_alias, by_run)


def test_promote_a_trial_without_a_model_logs_it_first(store):
    client, uri = store["client"], store["uri"]
    best = parent(store, "binary").data.tags["nnchain.best_run_id"]
    other = next(r for r in trial_runs(store, "binary") if r.info.run_id != best)
    assert "nnchain.model_uri" not in other.data.tags
    index = other.data.tags.get("nnchain.trial_index")
    done = cli("promote", "models-binary", "--trial", index, "--name", "xor-other",
               "--tracking-uri", uri, "--format", "json")
    assert done.exit_code == 0, done.output
    assert done.stderr == "", done.stderr  # no MLflow progress bar while it fetches weights
    model_uri = client.get_run(other.info.run_id).data.tags["nnchain.model_uri"]
    version = client.get_model_version("xor-other", "1")
    assert version.run_id == other.info.run_id
    assert version.source == model_uri
    again = cli("promote", "models-binary", "--trial", index, "--name", "xor-other",
                "--tracking-uri", uri, "--format", "json")
    assert json.loads(again.output)["version"] == 2  # a new version of the same model
    assert client.get_model_version("xor-other", "2").source == model_uri  # logged once


@pytest.mark.parametrize("args, field", [
    (["no-such-sweep", "--name", "bad1"], "SWEEP"),
    (["models-regression", "--trial", "1", "--name", "bad2"], "--trial"),  # diverged
    (["models-binary", "--trial", "7", "--name", "bad3"], "--trial"),
    (["models-binary", "--name", "bad4", "--alias", "champ ion!"], "--alias"),
    (["models-binary", "--name", "bad5", "--alias", "latest"], "--alias"),
    (["models-binary", "--name", "a/b"], "--name"),
])
def test_promote_bad_input_is_one_line_exit_2_nothing_registered(store, args, field):
    before = {m.name for m in registered(store)}
    done = cli("promote", *args, "--tracking-uri", store["uri"])
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), lines
    assert {m.name for m in registered(store)} == before


# ---- nnchain predict -----------------------------------------------------------------------

def test_predict_prints_csv_and_json_equal_to_pyfunc(store, tmp_path):
    import mlflow

    uri = store["uri"]
    run_id = parent(store, "regression").data.tags["nnchain.best_run_id"]
    x = np.array([[0.3, 4.0, -3.1], [1.2, 7.5, -2.9], [-0.5, 2.0, -3.0]])
    expected = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").predict(x)
    csv_file = tmp_path / "rows.csv"
    # columns by name, in another order than the model's
    csv_file.write_text("c,a,b\n" + "".join(f"{r[2]},{r[0]},{r[1]}\n" for r in x.tolist()))
    done = cli("predict", f"runs:/{run_id}/model", str(csv_file), "--tracking-uri", uri)
    assert done.exit_code == 0, done.output
    lines = done.output.strip().splitlines()
    assert lines[0] == "y"
    np.testing.assert_array_equal(np.array([float(v) for v in lines[1:]]), expected[:, 0])
    npz_file = tmp_path / "rows.npz"
    np.savez(npz_file, x=x)
    done = cli("predict", f"runs:/{run_id}/model", str(npz_file), "--format", "json",
               "--tracking-uri", uri)
    out = json.loads(done.output)
    assert out["columns"] == ["y"]
    np.testing.assert_array_equal(np.array(out["predictions"]), expected)


def test_predict_by_alias_uses_the_given_store_only(store, tmp_path):
    """models:/NAME@ALIAS resolved through --tracking-uri, with MLflow's process-wide
    tracking URI unset (as in a fresh `nnchain predict`)."""
    import mlflow

    if not store["client"].search_registered_models(filter_string="name = 'xor-net'"):
        test_promote_registers_the_best_trial_and_sets_the_alias(store)
    x = np.array([[0.1, 0.9], [0.9, 0.9]])
    expected = mlflow.pyfunc.load_model("models:/xor-net@champion").predict(x)
    np.savez(tmp_path / "rows.npz", x=x)
    mlflow.set_tracking_uri(None)
    try:
        done = cli("predict", "models:/xor-net@champion", str(tmp_path / "rows.npz"),
                   "--format", "json", "--tracking-uri", store["uri"])
        assert not mlflow.is_tracking_uri_set()
    finally:
        mlflow.set_tracking_uri(store["uri"])
    assert done.exit_code == 0, done.output
    np.testing.assert_array_equal(np.array(json.loads(done.output)["predictions"]), expected)


def test_predict_wrong_column_count_names_expected_and_given(store, tmp_path):
    run_id = parent(store, "binary").data.tags["nnchain.best_run_id"]
    rows = tmp_path / "three.csv"
    rows.write_text("p,q,r\n1,2,3\n")
    done = cli("predict", f"runs:/{run_id}/model", str(rows), "--tracking-uri", store["uri"])
    assert done.exit_code == 2
    lines = done.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert "must have 2 columns (x0, x1), got 3 (p, q, r)" in lines[0]


def test_predict_reads_its_input_through_the_bounded_readers(store, tmp_path):
    """Columns taken by name (a target column left out); a declared shape over the limits
    refused from the .npz header, before any data is read; a non-number named."""
    run_id = parent(store, "binary").data.tags["nnchain.best_run_id"]
    uri = f"runs:/{run_id}/model"
    by_name = tmp_path / "named.csv"
    by_name.write_text("label,x1,x0\n1,0.5,-0.25\n0,2,3\n")
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.array([[-0.25, 0.5], [3.0, 2.0]]))
    from_csv = cli("predict", uri, str(by_name), "--format", "json", "--tracking-uri",
                   store["uri"])
    from_npz = cli("predict", uri, str(plain), "--format", "json", "--tracking-uri",
                   store["uri"])
    assert from_csv.exit_code == from_npz.exit_code == 0, (from_csv.output, from_npz.output)
    assert json.loads(from_csv.stdout) == json.loads(from_npz.stdout)
    wide = tmp_path / "wide.npz"  # 10 MB of zeros declared: refused by its header
    np.savez_compressed(wide, x=np.zeros((1, 1_250_000)))
    refused = cli("predict", uri, str(wide), "--tracking-uri", store["uri"])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "INPUT" in refused.output and "columns limit" in refused.output
    words = tmp_path / "words.csv"
    words.write_text("x0,x1\n1,two\n")
    refused = cli("predict", uri, str(words), "--tracking-uri", store["uri"])
    assert refused.exit_code == 2 and "must hold numbers only" in refused.output


def test_a_model_folder_holding_a_pickle_is_refused(store, tmp_path):
    import mlflow

    from nnchain.errors import SpecError
    from nnchain.tracking.models import load_model

    model_uri = parent(store, "binary").data.tags["nnchain.best_model_uri"]
    folder = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=model_uri, dst_path=str(tmp_path / "clean"), tracking_uri=store["uri"]))
    assert load_model(str(folder), store["uri"]).features == ["x0", "x1"]
    for name, payload in (("extra.pkl", b"not even a pickle"),
                          ("artifacts/helper.bin", b"\x80\x04\x95\x00.")):
        poisoned = tmp_path / f"poisoned-{Path(name).stem}"
        shutil.copytree(folder, poisoned)
        (poisoned / name).write_bytes(payload)
        with pytest.raises(SpecError, match="must hold no pickle"):
            load_model(str(poisoned), store["uri"])
    poisoned = tmp_path / "object-npz"
    shutil.copytree(folder, poisoned)
    np.savez(poisoned / "artifacts" / "weights.npz", W1=np.array([{"a": 1}], dtype=object))
    with pytest.raises(SpecError, match="weights.npz is one"):
        load_model(str(poisoned), store["uri"])


# ---- mlflow models serve ---------------------------------------------------------------------

def test_mlflow_models_serve_answers_invocations(store, tmp_path):
    import mlflow

    uri = store["uri"]
    if not store["client"].search_registered_models(filter_string="name = 'xor-net'"):
        test_promote_registers_the_best_trial_and_sets_the_alias(store)
    port = free_ports(1)[0]
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    # mlflow runs `uvicorn` by name: the venv's scripts first, activated or not
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_REGISTRY_URI=uri,
               PATH=f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(mlflow_bin), "models", "serve", "-m", "models:/xor-net@champion",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        x = [[0.1, 0.9], [0.9, 0.9]]
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": x},
                               timeout=30)
        assert answer.status_code == 200, answer.text
        expected = mlflow.pyfunc.load_model("models:/xor-net@champion").predict(np.array(x))
        np.testing.assert_allclose(np.array(answer.json()["predictions"]), expected,
                                   rtol=0, atol=1e-12)
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
