"""`load_dataset`: one entry point for named sets (synthetic or bundled) and files."""

from __future__ import annotations

import difflib

import numpy as np

from nnchain.data.bundled import BUNDLED
from nnchain.data.dataset import Dataset
from nnchain.data.files import load_file
from nnchain.data.synthetic import GENERATORS
from nnchain.errors import SpecError, shown

DATASET_NAMES: tuple[str, ...] = tuple(sorted({**GENERATORS, **BUNDLED}))


def load_dataset(*, name: str | None = None, path: str | None = None, target: str | None = None,
                 n_samples: int = 500, noise: float = 0.1, classes: int = 2,
                 rng: np.random.Generator) -> Dataset:
    """Load exactly one of a named dataset or a file (.csv with `target`, or .npz).

    n_samples, noise and classes shape the synthetic generators only (`classes` only
    spirals and blobs); bundled sets and files ignore them. `target` names the CSV label
    column and is refused elsewhere. Every user mistake is a SpecError on its field.
    """
    if (name is None) == (path is None):
        given = "both" if name is not None else "neither"
        raise SpecError("data", f"exactly one of 'name' or 'path' must be given, got {given}")
    if path is not None:
        if not isinstance(path, str) or not path:
            raise SpecError("data.path", f"must be a file path, got {shown(path)}")
        return load_file(path, target)
    if not isinstance(name, str) or name not in DATASET_NAMES:
        raise SpecError("data.name", _unknown_name_message(name))
    if target is not None:
        raise SpecError("data.target", f"only applies to CSV files, got {shown(target)} for "
                                       f"dataset {shown(name)}")
    if name in BUNDLED:
        return BUNDLED[name]()
    return GENERATORS[name](n_samples=n_samples, noise=noise, classes=classes, rng=rng)


def _unknown_name_message(name: object) -> str:
    message = f"must be one of {', '.join(DATASET_NAMES)}, got {shown(name)}"
    if isinstance(name, str):
        close = difflib.get_close_matches(name, DATASET_NAMES, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
    return message
