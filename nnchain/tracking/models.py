"""Trials as MLflow models: logging them, registering them, loading them back for prediction.

A trial's model is MLflow's "models from code" form (``pyfunc_model.py`` is the model
file): its artifacts are plain ``weights.npz``, ``scaling.npz``, ``config.json`` and
``columns.json``, with an input/output signature and an input example. No pickle is
written, and ``load_model`` refuses a folder that holds one before MLflow reads it.
The logged model's URI is tagged on the trial run (``nnchain.model_uri``), so a trial is
logged once. Prediction is in float64 whatever dtype the trial trained in.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnchain.errors import SpecError, StoreError
from nnchain.job import Split, make_data
from nnchain.tracking import pyfunc_model
from nnchain.weights import load_weights

MODEL_NAME = "model"  # the logged model's name: runs:/RUN_ID/model
MODEL_TAG = "nnchain.model_uri"  # on the trial run: the models:/MODEL_ID it was logged as
MODEL_FILE = Path(pyfunc_model.__file__)
EXAMPLE_ROWS = 3
# file kinds that hold pickles (or zips of them) by convention
PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".joblib", ".pt", ".pth", ".dill")
_ALIAS = re.compile(r"^[\w\-]+$")
_VERSION_ALIAS = re.compile(r"^v\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class ModelData:
    """What a model needs from its trial's data: names, the scaling and an input example.

    mean, scale: (d,) or None; example: (EXAMPLE_ROWS, d) raw (unscaled) training rows.
    """

    task: str
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    mean: np.ndarray | None
    scale: np.ndarray | None
    example: np.ndarray


def model_data(data: Split, config: Mapping) -> ModelData:
    train = data.train
    if train.task == "regression":
        target = config["data"].get("target")
        targets = [target] if isinstance(target, str) else list(target or [])
        width = train.y.shape[1]
        outputs = tuple(targets) if len(targets) == width else \
            tuple(f"y{i}" for i in range(width))
    else:
        outputs = tuple(train.class_names)
    example = train.x[:EXAMPLE_ROWS]
    if data.mean is not None:
        example = example * data.scale + data.mean
    return ModelData(train.task, tuple(train.feature_names), outputs, data.mean, data.scale,
                     np.array(example, dtype=np.float64))


@contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's model logging reads the process's tracking URI: set for the call only."""
    import mlflow

    # None unsets it again (and MLFLOW_TRACKING_URI, which set_tracking_uri also sets)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """MLflow draws a progress bar on stderr for each artifact it copies into a model."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def _leave_a_removed_cwd() -> None:
    """MLflow's save_model reads the working directory (for uv projects), which fails if it
    was removed: a sweep submitted as a Ray job can outlive the job's working_dir on the
    head. Such a process moves to the temp folder; any other stays where it is."""
    try:
        os.getcwd()
    except FileNotFoundError:
        os.chdir(tempfile.gettempdir())


def requirements() -> list[str]:
    """What the model needs where it is loaded: nnchain itself is installed there (it is not
    on PyPI; serve with ``--env-manager local`` in an environment that has it)."""
    import mlflow

    from nnchain import __version__

    return [f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}",
            f"nnchain=={__version__}"]


def log_trial_model(uri: str, run_id: str, config: Mapping,
                    weights: Mapping[str, np.ndarray], data: ModelData) -> str:
    """Log the trial run ``run_id``'s network as an MLflow model; returns models:/MODEL_ID.

    The steps of ``mlflow.pyfunc.log_model`` through the public client, less two that cost
    a request per metric key or a model load: copying the run's step-0 metrics onto the
    model, and loading the model back to check the input example (the tests load it).
    The logged model is made in the run's experiment, outputs of the run at step 0, and
    READY once its files are stored.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model, ModelSignature
    from mlflow.types import Schema, TensorSpec

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id,
        params=dict(run.data.params), model_type="nnchain")
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    with tempfile.TemporaryDirectory(prefix="nnchain-model-") as tmp:
        folder = Path(tmp)
        files = pyfunc_model.ARTIFACT_FILES
        np.savez(folder / files[pyfunc_model.WEIGHTS],
                 **{k: np.asarray(v) for k, v in weights.items()})
        artifacts = {name: str(folder / files[name]) for name in
                     (pyfunc_model.WEIGHTS, pyfunc_model.CONFIG, pyfunc_model.COLUMNS)}
        if data.mean is not None:
            np.savez(folder / files[pyfunc_model.SCALING], mean=data.mean, scale=data.scale)
            artifacts[pyfunc_model.SCALING] = str(folder / files[pyfunc_model.SCALING])
        (folder / files[pyfunc_model.CONFIG]).write_text(json.dumps(config, indent=1))
        columns = {"task": data.task, "features": list(data.features),
                   "outputs": list(data.outputs)}
        (folder / files[pyfunc_model.COLUMNS]).write_text(json.dumps(columns, indent=1))
        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float64), (-1, len(data.features)))]),
            outputs=Schema([TensorSpec(np.dtype(np.float64), (-1, len(data.outputs)))]))
        local = folder / "model"
        _leave_a_removed_cwd()
        with _no_progress_bars():
            mlflow.pyfunc.save_model(
                str(local), python_model=str(MODEL_FILE), artifacts=artifacts,
                signature=signature, input_example=data.example,
                pip_requirements=requirements(), metadata={"nnchain": columns},
                mlflow_model=Model(artifact_path=logged.artifact_location,
                                   model_uuid=logged.model_id, run_id=run_id,
                                   model_id=logged.model_id))
        for cache in local.rglob("__pycache__"):  # left by loading the model file
            shutil.rmtree(cache, ignore_errors=True)
        client.log_model_artifacts(logged.model_id, str(local))
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    model_uri = f"models:/{logged.model_id}"
    client.set_tag(run_id, MODEL_TAG, model_uri)
    return model_uri


def log_run_model(client, uri: str, run_id: str, config: Mapping,
                  data: Split | None = None) -> str:
    """The trial run's model URI: the one already logged, else logged now from the run's
    ``weights.npz`` artifact (``data``: the trial's split, made from its config if None)."""
    logged = client.get_run(run_id).data.tags.get(MODEL_TAG)
    if logged:
        return logged
    with tempfile.TemporaryDirectory(prefix="nnchain-weights-") as tmp:
        try:
            with _no_progress_bars():
                path = client.download_artifacts(run_id, "weights.npz", tmp)
        except Exception as exc:  # noqa: BLE001 - MLflow raises several kinds
            raise SpecError("--trial", f"the trial's run {run_id} must hold weights.npz, "
                                       f"it has none ({type(exc).__name__})") from None
        weights = load_weights(path, field="weights.npz")
    data = data if data is not None else make_data(config["data"])
    return log_trial_model(uri, run_id, config, weights, model_data(data, config))


def check_alias(alias: str) -> None:
    """MLflow's alias rule, checked before anything is written."""
    if not _ALIAS.match(alias) or len(alias) > 255:
        raise SpecError("--alias", f"must hold only letters, digits, _ and - (1 to 255 of "
                                   f"them), got {alias!r}")
    if alias.lower() == "latest" or _VERSION_ALIAS.match(alias):
        raise SpecError("--alias", f"must not be 'latest' or v<number> (MLflow reserves "
                                   f"them), got {alias!r}")


def check_model_name(name: str) -> None:
    if not name.strip() or "/" in name or ":" in name or len(name) > 255:
        raise SpecError("--name", f"must be 1 to 255 characters without '/' or ':', "
                                  f"got {name!r}")


def promote(ref: str, *, name: str, trial_index: int | None = None,
            alias: str | None = None, tracking_uri: str | None = None,
            ledger_url: str | None = None) -> dict:
    """Register a sweep's trial (default: its best) as a version of ``name``, logging its
    model first if it has none, and point ``alias`` at that version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from nnchain.ledger import sweeps as ledger_ops
    from nnchain.ledger.report import best_trial
    from nnchain.ledger.states import FINISHED
    from nnchain.ledger.store import ledger_exists, open_ledger, resolve_ledger_url
    from nnchain.tracking.store import open_client, resolve_tracking_uri

    check_model_name(name)
    if alias is not None:
        check_alias(alias)
    uri = resolve_tracking_uri(tracking_uri)
    url = resolve_ledger_url(uri, ledger_url)
    if not ledger_exists(url):
        raise SpecError("SWEEP", f"must name a sweep of a ledger, and there is none at this "
                                 f"store, got {ref!r}")
    ledger = open_ledger(url, create=False)
    try:
        sweep = ledger_ops.find_sweep(ledger, ref)
        if trial_index is None:
            trial = best_trial(ledger, sweep)
            if trial is None:
                raise SpecError("SWEEP", f"sweep {sweep.name!r} must have a FINISHED trial "
                                         f"with a finite {sweep.metric_name}, it has none")
        else:
            trial = next((t for t in ledger_ops.trials_of(ledger, sweep.id)
                          if t.index == trial_index), None)
            if trial is None:
                raise SpecError("--trial", f"must be a trial index of sweep {sweep.name!r} "
                                           f"(0..{sweep.trial_count - 1}), got {trial_index}")
        if trial.state != FINISHED or not trial.run_id:
            raise SpecError("--trial", f"must name a FINISHED trial, trial {trial.index} of "
                                       f"{sweep.name!r} is {trial.state}")
    finally:
        ledger.dispose()
    client = open_client(uri)
    model_uri = log_run_model(client, uri, trial.run_id, trial.config)
    model_id = model_uri.split("/", 1)[1].lstrip("/")
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        registry.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise StoreError(f"cannot register {name!r}: {str(exc).splitlines()[0]}") from None
    with _tracking_uri(uri):  # MLflow's SQL registry reads the logged model through it
        version = registry.create_model_version(
            name, source=model_uri, run_id=trial.run_id, model_id=model_id,
            tags={"nnchain.sweep": sweep.name, "nnchain.trial_key": trial.key})
    if alias is not None:
        registry.set_registered_model_alias(name, alias, version.version)
    return {"name": name, "version": int(version.version), "alias": alias,
            "model_uri": model_uri, "run_id": trial.run_id, "sweep": sweep.name,
            "trial": trial.index, "trial_key": trial.key,
            "uri": f"models:/{name}@{alias}" if alias else f"models:/{name}/{version.version}"}


# ---- loading and predicting -------------------------------------------------------------

def _holds_pickle(path: Path) -> bool:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    if path.suffix.lower() in (".npz", ".npy"):
        try:
            with np.load(path, allow_pickle=False) as archive:
                for key in archive.files:
                    archive[key]
        except AttributeError:  # a .npy gives an array, not an archive
            return False
        except ValueError:
            return True
        except (OSError, zipfile.BadZipFile, EOFError):
            return False
        return False
    with open(path, "rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5  # pickle protocol 2..5


def refuse_pickle(folder: str | Path, field: str = "MODEL_URI") -> None:
    """Refuse a model folder holding a pickle anywhere (by suffix or by content), or an
    MLmodel whose python_function flavor loads a pickled object, before anything is loaded."""
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if _holds_pickle(path):
            raise SpecError(field, f"a model must hold no pickle, {path.relative_to(folder)} "
                                   f"is one (refused, not loaded)")
    mlmodel = folder / "MLmodel"
    if mlmodel.is_file():
        text = mlmodel.read_text(errors="replace")
        if re.search(r"^\s+python_model:", text, re.MULTILINE):
            raise SpecError(field, "a model must hold no pickle, its MLmodel loads a pickled "
                                   "python_model (refused, not loaded)")


@dataclass
class LoadedModel:
    pyfunc: object
    features: list[str]
    outputs: list[str]
    task: str

    def predict(self, x):
        return self.pyfunc.predict(x)


def load_model(model_uri: str, tracking_uri: str | None = None) -> LoadedModel:
    """An nnchain model from any MLflow model URI, refused if its folder holds a pickle."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from nnchain.tracking.store import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="nnchain-load-") as tmp:
        try:  # models:/ URIs are resolved through the process's tracking URI
            with _no_progress_bars(), _tracking_uri(uri):
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=model_uri, dst_path=tmp, tracking_uri=uri, registry_uri=uri)
        except MlflowException as exc:
            raise SpecError("MODEL_URI", f"must name an MLflow model, {model_uri!r}: "
                                         f"{str(exc).splitlines()[0]}") from None
        refuse_pickle(local)
        columns_file = Path(local) / "artifacts" / "columns.json"
        if not columns_file.is_file():
            raise SpecError("MODEL_URI", f"must name an nnchain model, {model_uri!r} has no "
                                         "artifacts/columns.json")
        columns = json.loads(columns_file.read_text())
        # suppress_warnings: no scan of every installed package for a requirements warning
        with _tracking_uri(uri):
            model = mlflow.pyfunc.load_model(local, suppress_warnings=True)
    return LoadedModel(model, columns["features"], columns["outputs"], columns["task"])


def read_input(path: str | Path, features: list[str]) -> np.ndarray:
    """Rows to predict, x (n, d) float64, from a CSV with a header or an NPZ (key ``x``, or
    its one array), read by nnchain's bounded readers (sizes checked before data is read).
    CSV columns named like the model's features are taken by name."""
    from nnchain.data.files import read_csv
    from nnchain.limits import check_cap
    from nnchain.npz import open_npz

    path = Path(path)
    if not path.is_file():
        raise SpecError("INPUT", f"must be an existing .csv or .npz file, got '{path}'")
    given = None
    if path.suffix.lower() == ".npz":
        with open_npz(path, "INPUT", str(path)) as archive:
            keys = list(archive.members)
            key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise SpecError("INPUT", f"an .npz must hold an array 'x' or one array, "
                                         f"'{path}' holds {', '.join(keys[:8])}")
            shape = archive.members[key].shape
            check_cap("n_samples", shape[0] if shape else 1, "INPUT", f"rows in {path}")
            check_cap("columns", math.prod(shape[1:]), "INPUT", f"columns in {path}")
            x = np.asarray(archive.load(key))
    elif path.suffix.lower() == ".csv":
        given, rows, _ = read_csv(str(path), "INPUT")
        if set(features) <= set(given):  # by name: other columns (a target) are left out
            where = {name: column for column, name in enumerate(given)}
            rows = [[row[where[name]] for name in features] for row in rows]
            given = None
        try:
            x = np.array(rows, dtype=np.float64).reshape(len(rows), -1 if rows else
                                                         len(given or features))
        except ValueError:
            raise SpecError("INPUT", f"must hold numbers only, '{path}' does not") from None
    else:
        raise SpecError("INPUT", f"must be a .csv or .npz file, got '{path}'")
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim != 2 or x.shape[1] != len(features):
        count = x.shape[1] if x.ndim == 2 else f"shape {x.shape}"
        shown = f" ({', '.join(given)})" if given else ""
        raise SpecError("INPUT", f"must have {len(features)} columns ({', '.join(features)}), "
                                 f"got {count}{shown}")
    try:
        return x.astype(np.float64)
    except (TypeError, ValueError):
        raise SpecError("INPUT", f"must hold numbers only, '{path}' does not") from None


def predict_file(model_uri: str, input_path: str | Path,
                 tracking_uri: str | None = None) -> tuple[list[str], np.ndarray]:
    """(output column names, predictions (n, k)) of the model on the file's rows."""
    input_path = Path(input_path)
    if not input_path.is_file() or input_path.suffix.lower() not in (".csv", ".npz"):
        raise SpecError("INPUT", f"must be an existing .csv or .npz file, got '{input_path}'")
    model = load_model(model_uri, tracking_uri)
    x = read_input(input_path, model.features)
    return model.outputs, np.asarray(model.predict(x), dtype=np.float64)


def log_best_model(client, uri: str, run_id: str, config: Mapping,
                   data: Split | None = None) -> str | None:
    """The sweep's best trial as a model when the sweep ends; a failure is said on stderr
    and never fails the sweep (``nnchain promote`` logs it later)."""
    import sys

    if os.environ.get("NNCHAIN_NO_MODEL") == "1":
        return None
    try:
        return log_run_model(client, uri, run_id, config, data)
    except Exception as exc:  # noqa: BLE001 - the sweep's result stands without a model
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"nnchain: the best trial was not logged as a model: {type(exc).__name__}: "
              f"{first}", file=sys.stderr)
        return None
