"""``nnchain gradcheck``: a spec's network checked against central differences."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from nnchain.job import build_job, make_data
from nnchain.nn import check_network
from nnchain.nn.gradcheck import DEFAULT_TOLERANCE


def check_spec(config: Mapping, *, samples: int = 8,
               tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """Worst relative error per parameter (W1, b1, ...) on ``samples`` training samples,
    floored for ``tolerance`` (see ``nnchain.nn.gradcheck``).

    The check runs in float64 whatever the spec's dtype, so that rounding does not
    hide or fake an error. For a layer-by-layer ``train.update_order`` each layer's
    gradient is taken as that order takes it (a backward pass stopping at the layer).
    """
    config = copy.deepcopy(dict(config))
    config["model"]["dtype"] = "float64"
    job = build_job(config, data=make_data(config["data"]))
    n = min(samples, len(job.y_train))
    x = job.data.train.x[:n].astype("float64")
    per_layer = config["train"].get("update_order", "simultaneous") != "simultaneous"
    return check_network(job.network, x, job.y_train[:n], tolerance=tolerance,
                         per_layer=per_layer)
