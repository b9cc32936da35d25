"""One training job: a resolved config turned into data, a network and epochs of training.

This is what ``nnchain train`` runs in-process and what a sweep's Ray task runs on a
worker; it knows nothing of MLflow or Ray. Randomness comes from two seeds:
``data.seed`` makes the dataset and its split (so the repeats of a sweep share one
dataset, made once), ``seed`` makes the initial weights and the mini-batch order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnchain.data import (
    Dataset,
    encode_targets,
    feature_stats,
    load_dataset,
    split,
    standardize,
)
from nnchain.errors import DivergedError
from nnchain.ledger.states import FAILED, FINISHED, KILLED  # noqa: F401 - used by callers
from nnchain.nn import (
    EpochRecord,
    Network,
    Position,
    build_network,
    make_optimizer,
    make_schedule,
    train_epochs,
)


@dataclass(frozen=True)
class Split:
    """The data a job trains on: train part and optional validation part.

    ``mean`` and ``scale`` (d,) are the training part's standardisation, x_std = (x - mean)
    / scale, kept so that a model can apply it to new inputs (None: not standardised).
    """

    train: Dataset
    val: Dataset | None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None


@dataclass
class Job:
    """A network with its optimizer, schedule, shuffling rng and encoded data, ready to train."""

    config: dict
    data: Split
    network: Network
    optimizer: Any
    schedule: Callable[[int], float]
    shuffle_rng: np.random.Generator
    y_train: np.ndarray
    y_val: np.ndarray | None
    resume: Position | None = None  # set by a mid-epoch checkpoint (checkpoint.py)

    @property
    def classification(self) -> bool:
        return self.data.train.task != "regression"

    def epochs(self, start_epoch: int = 0,
               on_batch: Callable[[Position], None] | None = None) -> Iterator[EpochRecord]:
        """Train from ``start_epoch`` to the configured epochs, one record per epoch.

        Only the diagnostics named in ``train.track`` are computed, and recorded.
        ``on_batch``: see ``nn.train.train_epochs`` (a mid-epoch checkpoint's hook).
        """
        train = self.config["train"]
        dtype = self.network_dtype
        return train_epochs(
            self.network, self.optimizer,
            self.data.train.x.astype(dtype, copy=False), self.y_train,
            epochs=train["epochs"], batch_size=train["batch_size"], rng=self.shuffle_rng,
            x_val=None if self.data.val is None else self.data.val.x.astype(dtype, copy=False),
            y_val=self.y_val, schedule=self.schedule, start_epoch=start_epoch,
            diagnostics=train.get("track", ()), accuracy=self.classification,
            update_order=train.get("update_order", "simultaneous"),
            layer_lr=train.get("layer_lr"),
            resume=self.resume if self.resume and self.resume.epoch == start_epoch else None,
            on_batch=on_batch)

    @property
    def network_dtype(self) -> np.dtype:
        return np.dtype(self.config["model"]["dtype"])


@dataclass
class Outcome:
    """What a job ended with: a value, also when it failed."""

    status: str  # FINISHED | FAILED | KILLED
    reason: str = ""
    epochs_run: int = 0
    final: dict[str, float] = field(default_factory=dict)
    weights: dict[str, np.ndarray] | None = None


def make_data(data_config: Mapping[str, Any]) -> Split:
    """The dataset of a data section, split and standardised; a pure function of the section."""
    seeds = np.random.SeedSequence(data_config.get("seed", 0)).spawn(2)
    dataset = load_dataset(
        name=data_config.get("name"), path=data_config.get("path"),
        target=data_config.get("target"), n_samples=data_config.get("n_samples", 500),
        noise=data_config.get("noise", 0.1), classes=data_config.get("classes", 2),
        rng=np.random.default_rng(seeds[0]))
    train, val = split(dataset, data_config["val_fraction"], np.random.default_rng(seeds[1]))
    if not data_config.get("standardize", True):
        return Split(train, val)
    mean, scale = feature_stats(train.x)
    train, val = standardize(train, val)
    return Split(train, val, mean, scale)


def output_width(data: Dataset, output: str) -> int:
    """Units of the output layer: one sigmoid-like unit for binary labels, else one per class."""
    if data.task == "regression":
        return data.y.shape[1]
    if data.task == "binary" and output != "softmax":
        return 1
    return data.n_classes


def build_job(config: Mapping[str, Any], data: Split | None = None,
              init_weights: Mapping[str, np.ndarray] | None = None) -> Job:
    """Build a job from a resolved config; ``data`` may be shared between jobs."""
    data = data if data is not None else make_data(config["data"])
    model, train = config["model"], config["train"]
    dtype = np.dtype(model["dtype"])
    init_seed, shuffle_seed = np.random.SeedSequence(config["seed"]).spawn(2)
    width = output_width(data.train, model["output"])
    network = build_network(
        [data.train.x.shape[1], *model["hidden"], width], activation=model["activation"],
        output=model["output"], cost=model["cost"], init=model["init"],
        rng=np.random.default_rng(init_seed), dtype=dtype)
    if init_weights is not None:
        network.set_weights(dict(init_weights))
    hyper = {k: train[k] for k in ("momentum", "beta1", "beta2", "rho", "eps") if k in train}
    optimizer = make_optimizer(train["optimizer"], network, lr=train["lr"],
                               weight_decay=train["weight_decay"], **hyper)
    schedule_options = {k: train[k] for k in ("gamma", "step_size", "min_lr") if k in train}
    schedule = make_schedule(train["schedule"], train["lr"], epochs=train["epochs"],
                             **schedule_options)

    def encode(part: Dataset) -> np.ndarray:
        return encode_targets(part.y, part.task, part.n_classes, width, dtype)

    return Job(config=dict(config), data=data, network=network, optimizer=optimizer,
               schedule=schedule, shuffle_rng=np.random.default_rng(shuffle_seed),
               y_train=encode(data.train),
               y_val=None if data.val is None else encode(data.val))


def run_job(job: Job, *, on_epoch: Callable[[EpochRecord], None] | None = None,
            start_epoch: int = 0) -> Outcome:
    """Train to the end, reporting each epoch; divergence becomes an outcome."""
    final: dict[str, float] = {}
    epochs_run = start_epoch
    try:
        for record in job.epochs(start_epoch):
            final = dict(record.metrics)
            epochs_run = record.epoch + 1
            if on_epoch is not None:
                on_epoch(record)
    except DivergedError as exc:
        return Outcome(FAILED, str(exc), exc.epoch, final, job.network.get_weights())
    return Outcome(FINISHED, "", epochs_run, final, job.network.get_weights())
