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

from nnchain.job import Job
from nnchain.nn import Position

_WEIGHT, _OPTIMIZER = "weights.", "optimizer."


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
    """Load a checkpoint into ``job``; returns the number of epochs already done."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as archive:
        weights = {k[len(_WEIGHT):]: archive[k] for k in archive.files if k.startswith(_WEIGHT)}
        state = {k[len(_OPTIMIZER):]: archive[k] for k in archive.files
                 if k.startswith(_OPTIMIZER)}
        epoch = int(archive["epoch"])
        rng_state = json.loads(str(archive["rng"]))
        position = None
        if "position.batch" in archive.files:
            position = Position(epoch=epoch, batch=int(archive["position.batch"]),
                                rng_state=json.loads(str(archive["position.rng"])),
                                total_cost=float(archive["position.total_cost"]),
                                correct=int(archive["position.correct"]))
    job.network.set_weights(weights)
    job.optimizer.load_state_dict(state)
    job.shuffle_rng.bit_generator.state = rng_state
    job.resume = position
    return epoch
