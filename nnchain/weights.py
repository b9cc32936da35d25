"""The weights file format: a plain numeric ``.npz`` with keys ``W1, b1, W2, b2, ...``.

``W{i}`` has shape (inputs, outputs) and ``b{i}`` shape (outputs,) for the i-th dense
layer. Files are read with ``allow_pickle=False``, so a file holding pickled objects
is refused without running any of it.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nnchain.errors import SpecError

_KEY = re.compile(r"^[Wb][1-9][0-9]*$")


def save_weights(path: str | Path, weights: Mapping[str, np.ndarray]) -> Path:
    """Write weights as an uncompressed ``.npz`` (the suffix is added by numpy if missing)."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{key: np.asarray(value) for key, value in weights.items()})
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_weights(path: str | Path, field: str = "--init-weights") -> dict[str, np.ndarray]:
    """Read a weights file; anything but numeric arrays under ``W<i>``/``b<i>`` is refused."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(field, f"weights file must exist, got '{path}'")
    try:
        with np.load(path, allow_pickle=False) as archive:
            weights = {key: archive[key] for key in archive.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise SpecError(field, f"must hold numeric arrays only, '{path}' holds pickled "
                                   "objects (refused, not loaded)") from None
        raise SpecError(field, f"must be a valid .npz file, '{path}': {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise SpecError(field, f"must be a valid .npz file, '{path}' is not "
                               f"({type(exc).__name__})") from None
    bad = sorted(key for key in weights if not _KEY.match(key))
    if bad:
        raise SpecError(field, f"keys must be W1, b1, W2, b2, ..., got {', '.join(bad)}")
    for key, value in weights.items():
        if value.dtype.kind not in "fiu":
            raise SpecError(field, f"{key} must be a numeric array, got dtype {value.dtype}")
    return weights
