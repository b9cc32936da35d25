"""Trial checkpoints: weights, optimizer state, shuffling rng state and epoch in one ``.npz``.

The payload is bytes, so it travels from a worker to the driver with the trial's
metrics and is kept in the ledger, where every node can read it. It holds numeric
arrays and one JSON string, and is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import json

import numpy as np

from nnchain.job import Job

_WEIGHT, _OPTIMIZER = "weights.", "optimizer."


def pack_checkpoint(job: Job, epoch: int) -> bytes:
    """Serialise the job's state after ``epoch`` completed epochs."""
    arrays = {f"{_WEIGHT}{k}": v for k, v in job.network.get_weights().items()}
    arrays.update({f"{_OPTIMIZER}{k}": np.asarray(v)
                   for k, v in job.optimizer.state_dict().items()})
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
    job.network.set_weights(weights)
    job.optimizer.load_state_dict(state)
    job.shuffle_rng.bit_generator.state = rng_state
    return epoch
