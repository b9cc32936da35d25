"""Trial checkpoints: weights, optimizer state, shuffling rng state and epoch in one ``.npz``.

The payload is bytes, so it travels from a worker to the driver with the trial's
metrics and is kept in the ledger, where every node can read it. It holds numeric
arrays and JSON strings, and is read with ``allow_pickle=False``.

A checkpoint taken between two mini-batches (``position``, see ``nn.train.Position``)
also holds where in the epoch it was taken; restoring it sets ``job.resume`` so that
``job.epochs(epoch)`` finishes that epoch first, bit for bit.
"""

from __future__ import annotations

import io
import json

import numpy as np

from nnchain.errors import SpecError, shown
from nnchain.job import Job
from nnchain.nn import Position
from nnchain.npz import Member, open_npz

_WEIGHT, _OPTIMIZER = "weights.", "optimizer."
_POSITION = ["position.batch", "position.total_cost", "position.correct", "position.rng"]
_MAX_ITEM_BYTES = 1 << 20  # the rng states' JSON are the longest items, a few hundred chars


def pack_checkpoint(job: Job, epoch: int, position: Position | None = None) -> bytes:
    """Serialise the job's state after ``epoch`` completed epochs (and, with
    ``position``, ``position.batch`` batches of the next one)."""
    arrays = {f"{_WEIGHT}{k}": v for k, v in job.network.get_weights().items()}
    arrays.update({f"{_OPTIMIZER}{k}": np.asarray(v)
                   for k, v in job.optimizer.state_dict().items()})
    if position is not None:
        if position.epoch != epoch:
            raise ValueError(f"a position in epoch {position.epoch} after {epoch} epochs")
        arrays.update({"position.batch": np.int64(position.batch),
                       "position.total_cost": np.float64(position.total_cost),
                       "position.correct": np.int64(position.correct),
                       "position.rng": np.array(json.dumps(position.rng_state))})
    rng_state = json.dumps(job.shuffle_rng.bit_generator.state)
    buffer = io.BytesIO()
    np.savez(buffer, epoch=np.int64(epoch), rng=np.array(rng_state), **arrays)
    return buffer.getvalue()


def restore_checkpoint(job: Job, payload: bytes) -> int:
    """Load a checkpoint into ``job``; returns the number of epochs already done.

    Its keys and shapes are checked against the job's network and optimizer from the
    ``.npy`` headers, before any array is read.
    """
    with open_npz(payload, "checkpoint", "the stored checkpoint") as archive:
        _check_members(job, archive.members)
        weights = {k[len(_WEIGHT):]: archive.load(k) for k in archive.members
                   if k.startswith(_WEIGHT)}
        state = {k[len(_OPTIMIZER):]: archive.load(k) for k in archive.members
                 if k.startswith(_OPTIMIZER)}
        epoch = int(archive.load("epoch"))
        rng_state = json.loads(str(archive.load("rng")))
        position = None
        if "position.batch" in archive.members:
            position = Position(epoch=epoch, batch=int(archive.load("position.batch")),
                                rng_state=json.loads(str(archive.load("position.rng"))),
                                total_cost=float(archive.load("position.total_cost")),
                                correct=int(archive.load("position.correct")))
    job.network.set_weights(weights)
    job.optimizer.load_state_dict(state)
    job.shuffle_rng.bit_generator.state = rng_state
    job.resume = position
    return epoch


def _check_members(job: Job, members: dict[str, Member]) -> None:
    """The members ``pack_checkpoint`` writes for this job, with its shapes."""
    expected = {"epoch": (), "rng": ()}
    expected.update({f"{_WEIGHT}{k}": v.shape for k, v in job.network.get_weights().items()})
    expected.update({f"{_OPTIMIZER}{k}": np.shape(v)
                     for k, v in job.optimizer.state_dict().items()})
    required = list(expected)
    if "position.batch" in members:
        expected.update(dict.fromkeys(_POSITION, ()))
        required += _POSITION
    missing = [key for key in required if key not in members]
    if missing:
        raise SpecError("checkpoint", f"must match the trial's network, "
                                      f"{shown(missing[0])} is missing")
    for key, member in members.items():
        if key not in expected or member.shape != expected[key]:
            raise SpecError("checkpoint", f"must match the trial's network, got "
                                          f"{shown(key)} of shape {member.shape}")
        if member.dtype.itemsize > _MAX_ITEM_BYTES:
            raise SpecError("checkpoint", f"{shown(key)} must be a number or a short string, "
                                          f"got dtype {member.dtype}")
