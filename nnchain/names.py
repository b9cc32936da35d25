"""The one rule for the names a user gives: sweeps (spec ``name``, ``--name``), experiments.

A name is typed after commands (``nnchain compare NAME``), becomes an MLflow experiment
or run name and a path part of artifacts and job files, so it is kept to characters that
need no quoting in a shell or a path: 1-100 letters, digits, '.', '_' or '-', starting
with a letter or digit (so never a hidden file or a bare dots path), without '..'.
"""

from __future__ import annotations

import re

from nnchain.errors import SpecError, shown

NAME_MAX_LENGTH = 100
NAME_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{NAME_MAX_LENGTH - 1}}}")
NAME_RULE = (f"1-{NAME_MAX_LENGTH} letters, digits, '.', '_' or '-', starting with a letter "
             "or digit, without '..' (no spaces or path separators)")


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and bool(NAME_PATTERN.fullmatch(name)) and ".." not in name


def check_name(field: str, name: object) -> str:
    """Return ``name`` if it keeps the rule, else raise ``SpecError(field)`` saying it."""
    if not is_valid_name(name):
        raise SpecError(field, f"must be {NAME_RULE}, got {shown(name)}")
    return name  # type: ignore[return-value]
