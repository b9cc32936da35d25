"""Known sweeps for the report tests: configs, summaries and states set by hand.

Sweep ``grid`` (val_cost, minimize) and sweep ``acc`` (val_accuracy, maximize) hold the
same 24 trials: train.lr x model.activation x model.hidden x seed. Among them a FAILED
trial that diverged (no last value), a FAILED one whose last recorded values are the best
of all, a FINISHED one whose metric ended NaN (None), a RUNNING and a PENDING one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from nnchain.ledger import sweeps as ledger_ops
from nnchain.ledger.models import FAILED, FINISHED, PENDING, RUNNING

LRS = (0.01, 0.1, 1.0)
ACTIVATIONS = ("tanh", "relu")
HIDDEN = ([16], [16, 16])
SEEDS = (0, 1)
DIVERGED, LOST, NAN_END, RUNNING_INDEX, PENDING_INDEX = 5, 9, 14, 20, 23


@dataclass(frozen=True)
class Cell:
    key: str
    index: int
    repeat: int
    config: dict
    overrides: dict
    state: str
    reason: str
    summary: dict
    epochs: int

    def last(self, metric: str) -> float | None:
        return (self.summary.get(metric) or {}).get("last")


def _entry(last, low=None, high=None) -> dict:
    values = [v for v in (last, low, high) if v is not None]
    return {"last": last, "min": min(values) if values else None,
            "max": max(values) if values else None}


def make_cells() -> list[Cell]:
    rng = np.random.default_rng(7)
    cells = []
    for seed, lr, activation, hidden in itertools.product(SEEDS, LRS, ACTIVATIONS, HIDDEN):
        index = len(cells)
        cost, accuracy = float(rng.uniform(0.05, 0.9)), float(rng.uniform(0.5, 0.99))
        state, reason, epochs = FINISHED, "", 20
        summary = {"val_cost": _entry(cost, cost * 0.8, cost * 1.5),
                   "val_accuracy": _entry(accuracy, accuracy * 0.7),
                   "train_cost": _entry(cost * 0.9),
                   "grad_norm/layer1": _entry(float(rng.uniform(0.01, 1.0)))}
        if index == DIVERGED:
            state, reason, epochs = FAILED, "diverged at epoch 3", 3
            summary = {"val_cost": _entry(None, 0.0005, 9.0),
                       "val_accuracy": _entry(None, 0.5, 0.6)}
        elif index == LOST:
            state, reason, epochs = FAILED, "worker lost (RayTaskError: node died); " \
                                            "retries exhausted (2) " + "x" * 80, 12
            summary = {"val_cost": _entry(0.0001), "val_accuracy": _entry(0.9999)}
        elif index == NAN_END:
            summary = {"val_cost": _entry(None, 0.3, 0.9), "val_accuracy": _entry(None)}
        elif index == RUNNING_INDEX:
            state, epochs = RUNNING, 4
            summary = {"val_cost": _entry(0.00001), "val_accuracy": _entry(0.99999)}
        elif index == PENDING_INDEX:
            state, epochs, summary = PENDING, 0, {}
        config = {"seed": seed, "data": {"name": "xor", "n_samples": 64, "val_fraction": 0.25},
                  "model": {"hidden": list(hidden), "activation": activation},
                  "train": {"lr": lr, "epochs": 20, "optimizer": "sgd"}}
        overrides = {"train.lr": lr, "model.activation": activation,
                     "model.hidden": list(hidden), "seed": seed}
        cells.append(Cell(f"key{index:03d}", index, seed, config, overrides, state, reason,
                          summary, epochs))
    return cells


CELLS = make_cells()


def add_sweep(ledger, name: str, metric: str, goal: str, cells=CELLS) -> str:
    sweep_id = ledger_ops.new_sweep_id()
    ledger_ops.create_sweep(ledger, sweep_id=sweep_id, name=name, experiment=name,
                            spec_text="", fingerprint="f", metric_name=metric,
                            metric_goal=goal, options={}, tracking_uri="", trials=cells)
    ids = {t.index: t.id for t in ledger_ops.trials_of(ledger, sweep_id)}
    for cell in cells:
        if cell.state == PENDING:
            continue
        value = cell.last(metric) if cell.state == FINISHED else None
        ledger_ops.update_trial(ledger, ids[cell.index], state=cell.state, reason=cell.reason,
                                metric=value, summary=cell.summary, epochs=cell.epochs,
                                run_id=f"run{cell.index:03d}", train_seconds=0.5)
    return sweep_id
