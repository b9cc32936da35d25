"""The weights file format: a plain numeric ``.npz`` with keys ``W1, b1, W2, b2, ...``.

``W{i}`` has shape (inputs, outputs) and ``b{i}`` shape (outputs,) for the i-th dense
layer. Files are read with ``allow_pickle=False``, so a file holding pickled objects
is refused without running any of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nnchain.errors import SpecError, shown
from nnchain.limits import caps, check_cap
from nnchain.npz import Member, open_npz

_KEY = re.compile(r"^[Wb][1-9][0-9]*$")


def save_weights(path: str | Path, weights: Mapping[str, np.ndarray]) -> Path:
    """Write weights as an uncompressed ``.npz`` (the suffix is added by numpy if missing)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{key: np.asarray(value) for key, value in weights.items()})
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_weights(path: str | Path, field: str = "--init-weights") -> dict[str, np.ndarray]:
    """Read a weights file; anything but numeric arrays under ``W<i>``/``b<i>`` is refused.

    Keys, dtypes and shapes are checked from the ``.npy`` headers before any array is read:
    layers chain (``W{i}`` is (inputs, outputs), ``b{i}`` is (outputs,), one layer's outputs
    are the next one's inputs) and every size is within the caps of ``nnchain/limits.py``,
    so a small file that declares gigabytes is refused without reading them.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(field, f"weights file must exist, got '{path}'")
    with open_npz(path, field, f"'{path}'") as archive:
        _check_members(archive.members, field)
        return {key: archive.load(key) for key in archive.members}


def _check_members(members: Mapping[str, Member], field: str) -> None:
    """Keys W1, b1, ..., Wn, bn; numeric dtypes; every size within the caps, then shapes
    that chain."""
    bad = sorted(key for key in members if not _KEY.match(key))
    if bad:
        raise SpecError(field, f"keys must be W1, b1, W2, b2, ..., got "
                               f"{shown(', '.join(bad))}")
    cap = caps()
    layers = max((int(key[1:]) for key in members), default=0)
    if layers > cap["layers"] + 1:
        check_cap("layers", layers - 1, f"{field} (hidden layers)")
    for key, member in members.items():
        if member.dtype.kind not in "fiu":
            raise SpecError(field, f"{key} must be a numeric array, got dtype {member.dtype}")
        ndim, form = (2, "(inputs, outputs)") if key[0] == "W" else (1, "(outputs,)")
        if len(member.shape) != ndim:
            raise SpecError(field, f"{key} must be {form}, got shape {member.shape}")
        outputs = member.shape[-1]
        if outputs > max(cap["width"], cap["classes"]):
            check_cap("width", outputs, f"{field} {key}", "outputs")
        if key == "W1":
            check_cap("columns", member.shape[0], f"{field} W1", "inputs")
        elif key[0] == "W":
            check_cap("width", member.shape[0], f"{field} {key}", "inputs")
    for index in range(1, layers + 1):
        for key in (f"W{index}", f"b{index}"):
            if key not in members:
                raise SpecError(field, f"must hold W1, b1, ... W{layers}, b{layers} in pairs, "
                                       f"{key} is missing")
        weight, bias = members[f"W{index}"].shape, members[f"b{index}"].shape
        if bias[0] != weight[1]:
            raise SpecError(field, f"b{index} must have shape ({weight[1]},) like W{index}'s "
                                   f"outputs, got {bias}")
        if index > 1 and weight[0] != members[f"W{index - 1}"].shape[1]:
            raise SpecError(field, f"W{index} must have as many rows as W{index - 1} has "
                                   f"columns ({members[f'W{index - 1}'].shape[1]}), got "
                                   f"{weight}")
