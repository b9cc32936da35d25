"""Config values as MLflow params: dotted keys and the text of a value, without numpy.

``nnchain.config`` re-exports these; they live apart so that the commands which only read
and print recorded params (``nnchain compare``) do not import the engine's registries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def param_value(value: Any) -> str:
    """How a resolved value is written as an MLflow param (lists as ``[16, 16]``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


# Left out of a resolved config at their defaults (so trial keys stay what they were before
# these keys existed), yet recorded as params: a run shows the order it trained with.
PARAM_DEFAULTS = {"train.update_order": "simultaneous"}
