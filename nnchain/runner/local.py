"""``nnchain train``: one job run in this process and recorded in one MLflow run.

Everything that can be refused is checked before the run is created: the config, the
initial weights (against the network's shapes) and the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nnchain.config import to_params
from nnchain.job import FAILED, KILLED, Job, Outcome, build_job, run_job
from nnchain.nn import EpochRecord
from nnchain.tracking.artifacts import log_trial_artifacts
from nnchain.tracking.metrics import MetricWriter
from nnchain.tracking.recorder import RunWriter
from nnchain.tracking.store import (
    artifact_root,
    check_name,
    experiment_id,
    open_client,
    resolve_tracking_uri,
)
from nnchain.weights import load_weights, save_weights


@dataclass
class TrainResult:
    run_id: str
    experiment_id: str
    tracking_uri: str
    status: str
    reason: str
    epochs_run: int
    final: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "experiment_id": self.experiment_id,
                "status": self.status, "reason": self.reason, "epochs": self.epochs_run,
                "metrics": self.final}


def prepare_training(config: Mapping, init_weights: str | None) -> Job:
    """Build the job (data, network, optimizer); bad weights are refused here, before MLflow."""
    weights = load_weights(init_weights) if init_weights else None
    return build_job(config, init_weights=weights)


def train_recorded(job: Job, *, tracking_uri: str | None, experiment: str,
                   run_name: str | None = None, save_path: str | None = None,
                   on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainResult:
    """Run ``job`` and record it: params, per-epoch metrics in batches, artifacts, status."""
    check_name("--experiment", experiment)
    uri = resolve_tracking_uri(tracking_uri)
    client = open_client(uri)
    exp_id = experiment_id(client, experiment, artifact_root(uri))
    run = client.create_run(exp_id, run_name=run_name,
                            tags={"nnchain.kind": "train", "nnchain.attempt": "0"})
    run_id = run.info.run_id
    metric_writer = MetricWriter(client, uri)
    writer = RunWriter(client, run_id, metric_writer=metric_writer)
    history: dict[str, list[float]] = {"train_cost": []}
    outcome = Outcome(FAILED, "error while training")
    try:
        writer.log_params(to_params(job.config))

        def record(epoch_record: EpochRecord) -> None:
            writer.log_step(epoch_record.epoch, epoch_record.metrics)
            for key in ("train_cost", "val_cost"):
                if key in epoch_record.metrics:
                    history.setdefault(key, []).append(epoch_record.metrics[key])
            if on_epoch is not None:
                on_epoch(epoch_record)

        started = time.perf_counter()
        outcome = run_job(job, on_epoch=record)
        log_trial_artifacts(client, run_id, weights=outcome.weights, config=job.config,
                            history=history, title=run_name or run_id)
        writer.set_tags({"nnchain.train_seconds": f"{time.perf_counter() - started:.3f}"})
    except KeyboardInterrupt:
        outcome = Outcome(KILLED, "interrupted by the user")
        raise
    finally:
        writer.finish(outcome.status, outcome.reason)
        metric_writer.dispose()
    if save_path and outcome.weights is not None:
        save_weights(Path(save_path), outcome.weights)
    return TrainResult(run_id, exp_id, uri, outcome.status, outcome.reason,
                       outcome.epochs_run, outcome.final)
