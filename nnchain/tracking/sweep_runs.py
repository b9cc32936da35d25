"""A sweep in MLflow: a parent run, and one nested child run per trial.

All calls go through an explicit ``MlflowClient`` with run ids; the sweep's driver is
the only process that calls them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from nnchain.config import to_params
from nnchain.tracking import mlflow_sql
from nnchain.tracking.recorder import MAX_PARAM_LENGTH, RunWriter

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
DESCRIPTION_TAG = "mlflow.note.content"  # what the MLflow UI shows as a run's description


def create_parent_run(client, experiment_id: str, *, sweep_id: str, name: str, spec_text: str,
                      trial_count: int, settings: Mapping[str, str]) -> str:
    """The sweep's parent run, with the spec as an artifact and sweep-level params."""
    run = client.create_run(experiment_id, run_name=name, tags={
        "nnchain.kind": "sweep", "nnchain.sweep_id": sweep_id, "nnchain.sweep": name,
        "nnchain.trial_count": str(trial_count)})
    complete_parent_run(client, run.info.run_id, spec_text=spec_text, settings=settings)
    set_description(client, run.info.run_id, (
        f"**Sweep {name}** (`{sweep_id}`): {trial_count} trials "
        f"({settings.get('sweep.method', '')}), metric `{settings.get('sweep.metric', '')}` "
        f"({settings.get('sweep.goal', '')}); spec in `spec.yaml`. Its report, `report.html`, "
        f"is written into this run's artifacts when the sweep ends; locally: "
        f"`nnchain report {name}`."))
    return run.info.run_id


def complete_parent_run(client, run_id: str, *, spec_text: str,
                        settings: Mapping[str, str]) -> None:
    """The parent run's params and spec artifact (again: equal params and the same file
    are harmless, for a parent adopted after its driver died making it)."""
    RunWriter(client, run_id).log_params(settings)
    with tempfile.TemporaryDirectory(prefix="nnchain-") as tmp:
        spec_file = Path(tmp) / "spec.yaml"
        spec_file.write_text(spec_text)
        client.log_artifact(run_id, str(spec_file))


def find_parent_run(client, experiment_id: str, sweep_id: str) -> str:
    """The id of the sweep's parent run, if one was made ("" if none)."""
    runs = _sweep_runs_tagged(client, experiment_id, sweep_id, "nnchain.kind", "sweep", 1)
    return runs[0].info.run_id if runs else ""


def _sweep_runs_tagged(client, experiment_id: str, sweep_id: str, tag: str, value: str,
                       max_results: int) -> list:
    """The sweep's runs whose ``tag`` is ``value``, oldest first."""
    return client.search_runs(
        [experiment_id], max_results=max_results, order_by=["attributes.start_time ASC"],
        filter_string=f"tags.`nnchain.sweep_id` = '{sweep_id}' and tags.`{tag}` = '{value}'")


def trial_run_name(index: int, overrides: Mapping[str, object], repeat: int = 0) -> str:
    """``t007 lr=0.5 hidden=[8]``: the index and the cell's own values, short keys; in a
    sweep with repeats, ``rep=N`` instead of the repeat's seed (a long number that says
    nothing in a runs table). Whole up to MLflow's 250 characters."""
    parts = []
    for path, value in overrides.items():
        if path == "seed":
            continue
        short = path.rsplit(".", 1)[-1]
        text = "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
        parts.append(f"{short}={text}")
    if "seed" in overrides:
        parts.append(f"rep={repeat}")
    return (f"t{index:03d} " + " ".join(parts)).strip()[:250]


def _trial_tags(parent_run_id: str, sweep_id: str, trial_key: str, index: int, repeat: int,
                attempt: int) -> dict[str, str]:
    return {PARENT_TAG: parent_run_id, "nnchain.kind": "trial", "nnchain.sweep_id": sweep_id,
            "nnchain.trial_key": trial_key, "nnchain.trial_index": str(index),
            "nnchain.repeat": str(repeat), "nnchain.attempt": str(attempt)}


def create_trial_run(client, experiment_id: str, *, parent_run_id: str, sweep_id: str,
                     trial_key: str, index: int, repeat: int, attempt: int,
                     config: Mapping, overrides: Mapping, start_ms: int | None = None,
                     scheduled: bool = False) -> tuple[str, str]:
    """A nested child run for one trial; params = the trial's resolved config.

    ``scheduled``: created ahead of the trial's start, in MLflow's SCHEDULED state.
    Returns the run id and its artifact URI."""
    run = client.create_run(experiment_id, start_time=start_ms or int(time.time() * 1000),
                            run_name=trial_run_name(index, overrides, repeat),
                            tags=_trial_tags(parent_run_id, sweep_id, trial_key, index, repeat,
                                             attempt))
    RunWriter(client, run.info.run_id).log_params(to_params(config))
    if scheduled:
        client.update_run(run.info.run_id, status="SCHEDULED")
    return run.info.run_id, run.info.artifact_uri


def insert_scheduled_runs(client, tracking_uri: str, experiment_id: str, *,
                          parent_run_id: str, sweep_id: str,
                          trials: Sequence) -> dict[int, tuple[str, str]]:
    """Every trial's run made ahead, SCHEDULED: in one transaction through ``mlflow_sql``
    (1-2 ms a run here), else through the client one by one (``create_trial_run``, 27 ms
    a run), stopping at a store that went away (the driver makes the rest as trials
    start). ``trials`` are ledger rows; returns trial id -> (run id, artifact URI)."""
    with mlflow_sql.tables_of(tracking_uri) as tables:
        if tables is None:
            return _create_one_by_one(client, experiment_id, parent_run_id, sweep_id, trials)
        from mlflow.utils.uri import append_to_uri_path

        location = client.get_experiment(experiment_id).artifact_location
        made = {}

        def new_runs():  # one at a time: the adapter writes them in chunks
            for trial, run_id in zip(trials, mlflow_sql.ordered_run_ids(), strict=False):
                name = trial_run_name(trial.index, trial.overrides, trial.repeat)
                made[trial.id] = (run_id, append_to_uri_path(location, run_id, "artifacts"))
                tags = _trial_tags(parent_run_id, sweep_id, trial.key, trial.index,
                                   trial.repeat, 0)
                tags[RUN_NAME_TAG] = name
                yield mlflow_sql.NewRun(
                    run_id, name, made[trial.id][1], tags,
                    {k: v[:MAX_PARAM_LENGTH] for k, v in to_params(trial.config).items()})

        tables.insert_scheduled_runs(experiment_id, new_runs(), int(time.time() * 1000))
    return made


def _create_one_by_one(client, experiment_id: str, parent_run_id: str, sweep_id: str,
                       trials: Sequence) -> dict[int, tuple[str, str]]:
    from nnchain.tracking.retry import is_transient, with_retry

    made = {}
    for trial in trials:
        try:
            made[trial.id] = create_trial_run(
                client, experiment_id, parent_run_id=parent_run_id, sweep_id=sweep_id,
                trial_key=trial.key, index=trial.index, repeat=trial.repeat, attempt=0,
                config=trial.config, overrides=trial.overrides, scheduled=True)
        except Exception as error:
            if not is_transient(error):
                raise
            found = with_retry(recover_trial_run, client, experiment_id, sweep_id=sweep_id,
                               trial_key=trial.key, config=trial.config,
                               what="the MLflow store")
            if found[0]:  # made before its answer was lost
                made[trial.id] = found
            break
    return made


def recover_trial_run(client, experiment_id: str, *, sweep_id: str, trial_key: str,
                      config: Mapping) -> tuple[str, str]:
    """The trial's run if a create whose answer was lost made one, its params completed
    (logging equal params again is harmless); extra copies are deleted. Returns the run id
    and artifact URI, or ``("", "")`` when no run was made."""
    runs = _sweep_runs_tagged(client, experiment_id, sweep_id, "nnchain.trial_key", trial_key,
                              10)
    if not runs:
        return "", ""
    for extra in runs[1:]:
        client.delete_run(extra.info.run_id)
    RunWriter(client, runs[0].info.run_id).log_params(to_params(config))
    return runs[0].info.run_id, runs[0].info.artifact_uri


def end_run(client, run_id: str, status: str, reason: str = "",
            tags: Mapping[str, str] | None = None) -> None:
    """Tag the reason (and any extra tags), then set the terminal status."""
    all_tags = dict(tags or {})
    if reason:
        all_tags["nnchain.status_reason"] = reason
    if all_tags:
        RunWriter(client, run_id).set_tags(all_tags)
    client.set_terminated(run_id, status=status)


def log_weights(client, run_id: str, payload: bytes, artifact_uri: str = "") -> None:
    """The trial's final weights as ``weights.npz`` in its artifacts."""
    log_files(client, run_id, {"weights.npz": payload}, artifact_uri)


def log_files(client, run_id: str, files: Mapping[str, bytes], artifact_uri: str = "") -> None:
    """Files (name -> bytes) into the run's artifacts.

    Local artifact folders are written directly (what MLflow's local repository does with
    a copy); any other artifact store goes through ``log_artifacts``.
    """
    if not files:
        return
    if artifact_uri.startswith("file://") or artifact_uri.startswith("/"):
        folder = Path(unquote(urlsplit(artifact_uri).path) if "://" in artifact_uri
                      else artifact_uri)
        folder.mkdir(parents=True, exist_ok=True)
        for name, payload in files.items():
            (folder / name).write_bytes(payload)
        return
    with tempfile.TemporaryDirectory(prefix="nnchain-") as tmp:
        for name, payload in files.items():
            (Path(tmp) / name).write_bytes(payload)
        client.log_artifacts(run_id, tmp)


def set_description(client, run_id: str, text: str) -> None:
    client.set_tag(run_id, DESCRIPTION_TAG, text)


def log_summary_metrics(client, run_id: str, metrics: Mapping[str, float]) -> None:
    """A sweep's summary metrics on its parent run: each key's next step (a resume logs
    them again after the first values, steps stay unique and contiguous)."""
    from mlflow.entities import Metric

    known = client.get_run(run_id).data.metrics
    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now,
                    len(client.get_metric_history(run_id, key)) if key in known else 0)
             for key, value in metrics.items()]
    if batch:
        client.log_batch(run_id, metrics=batch)
