"""Name lookups in the registries, failing with a SpecError that lists the known names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from nnchain.errors import SpecError

T = TypeVar("T")


def lookup(registry: Mapping[str, T], name: str, field: str) -> T:
    """registry[name], or SpecError(field) naming the choices."""
    try:
        return registry[name]
    except (KeyError, TypeError):
        choices = ", ".join(sorted(registry))
        raise SpecError(field, f"must be one of {choices}, but got {name!r}") from None
