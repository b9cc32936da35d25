"""Checkpoints taken between two mini-batches resume bit for bit, in every update order."""

from __future__ import annotations

import numpy as np
import pytest

from nnchain.checkpoint import pack_checkpoint, restore_checkpoint
from nnchain.config import resolve_config
from nnchain.job import build_job, make_data, run_job


class Interrupted(Exception):
    pass


def config(order: str) -> dict:
    return resolve_config({
        "seed": 4,
        "data": {"name": "spirals", "n_samples": 60, "val_fraction": 0.25},
        "model": {"hidden": [6, 5], "activation": "tanh"},
        "train": {"epochs": 4, "batch_size": 8, "optimizer": "adam", "lr": 0.02,
                  "weight_decay": 0.001, "schedule": "cosine", "update_order": order,
                  "track": ["grad_norm", "update_ratio", "effect", "sensitivity"]}})


@pytest.mark.parametrize("order", ["simultaneous", "output_first", "input_first"])
def test_a_checkpoint_mid_epoch_resumes_as_if_uninterrupted(order):
    resolved = config(order)
    data = make_data(resolved["data"])
    straight = build_job(resolved, data=data)
    expected = []
    outcome = run_job(straight, on_epoch=expected.append)
    assert outcome.epochs_run == 4

    interrupted = build_job(resolved, data=data)
    saved = {}

    def stop_in_epoch_2(position):
        if position.epoch == 2 and position.batch == 3:  # 45 samples: 6 batches an epoch
            saved["payload"] = pack_checkpoint(interrupted, 2, position)
            raise Interrupted

    head = []
    with pytest.raises(Interrupted):
        for record in interrupted.epochs(on_batch=stop_in_epoch_2):
            head.append(record)
    assert [r.epoch for r in head] == [0, 1]

    resumed = build_job(resolved, data=data)
    start = restore_checkpoint(resumed, saved["payload"])
    assert start == 2 and resumed.resume is not None and resumed.resume.batch == 3
    tail = []
    outcome = run_job(resumed, on_epoch=tail.append, start_epoch=start)
    assert [r.metrics for r in head + tail] == [r.metrics for r in expected]
    for name, array in straight.network.get_weights().items():
        np.testing.assert_array_equal(resumed.network.get_weights()[name], array)


def test_an_epoch_end_checkpoint_holds_no_position():
    resolved = config("output_first")
    job = build_job(resolved)
    for _ in job.epochs():
        break
    restored = build_job(resolved)
    assert restore_checkpoint(restored, pack_checkpoint(job, 1)) == 1
    assert restored.resume is None
