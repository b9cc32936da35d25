"""The registry round trip on PostgreSQL: one database for the module (made and dropped
here), the same two sweeps as ``test_models.py``, ``nnchain promote`` and a model loaded
back by alias whose predictions equal the trial's numpy forward pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from local_services import fresh_pg_database
from test_models import numpy_forward, record_sweeps, run_weights

from nnchain.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pg_module_url():
    with fresh_pg_database("nnchain_models") as url:
        yield url


@pytest.fixture(scope="module")
def store(tmp_path_factory, ray_local, pg_module_url):
    import os

    import mlflow
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("models-pg")
    saved = os.environ.get("NNCHAIN_HOME")
    os.environ["NNCHAIN_HOME"] = str(root)  # the artifacts of a PostgreSQL store
    try:
        results = record_sweeps(root, pg_module_url)
        previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(pg_module_url)
        yield {"uri": pg_module_url, "results": results, "root": root,
               "client": MlflowClient(tracking_uri=pg_module_url, registry_uri=pg_module_url)}
        mlflow.set_tracking_uri(previous)
    finally:
        if saved is None:
            os.environ.pop("NNCHAIN_HOME", None)
        else:
            os.environ["NNCHAIN_HOME"] = saved


def test_registry_round_trip_on_postgresql(store, tmp_path):
    import mlflow

    client, uri = store["client"], store["uri"]
    parent = client.get_run(store["results"]["regression"].parent_run_id).data.tags
    done = CliRunner().invoke(main, ["promote", "models-regression", "--name", "reg-net",
                                     "--alias", "champion", "--tracking-uri", uri,
                                     "--format", "json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    version = client.get_model_version_by_alias("reg-net", "champion")
    assert str(version.version) == str(out["version"]) == "1"
    assert version.run_id == parent["nnchain.best_run_id"]
    assert version.source == parent["nnchain.best_model_uri"]
    assert [m.name for m in client.search_registered_models()] == ["reg-net"]

    config = client.get_run(version.run_id).data.params
    weights = run_weights(client, version.run_id, tmp_path)
    model = mlflow.pyfunc.load_model("models:/reg-net@champion")
    x = np.array([[0.3, 4.0, -3.1], [1.2, 7.5, -2.9], [-0.5, 2.0, -3.0]])
    with np.load(mlflow.artifacts.download_artifacts(
            artifact_uri="models:/reg-net@champion", dst_path=str(tmp_path / "model"))
            + "/artifacts/scaling.npz", allow_pickle=False) as scaling:
        mean, scale = scaling["mean"], scaling["scale"]
    expected = numpy_forward(weights, (x - mean) / scale, config["model.activation"],
                             config["model.output"])
    np.testing.assert_allclose(model.predict(x), expected, rtol=0, atol=1e-12)

    done = CliRunner().invoke(main, ["promote", "models-regression", "--trial", "1",
                                     "--name", "reg-net", "--tracking-uri", uri])
    assert done.exit_code == 2 and "is FAILED" in done.output  # the diverged trial
    assert len(client.search_model_versions("name = 'reg-net'")) == 1
