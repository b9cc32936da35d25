"""Checks of the numbers a data spec holds, each raising SpecError on the field it names."""

from __future__ import annotations

import math
import numbers

from nnchain.errors import SpecError


def check_int(value: object, minimum: int, field: str) -> int:
    """An integer (not a bool, not 4.0) that is at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SpecError(field, f"must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_noise(value: object, field: str = "data.noise") -> float:
    """A finite real number >= 0."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value < 0):
        raise SpecError(field, f"must be a finite number >= 0, got {value!r}")
    return float(value)


def check_fraction(value: object, field: str = "data.val_fraction") -> float:
    """A real number in [0, 1)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0 <= value < 1):
        raise SpecError(field, f"must be a number with 0 <= value < 1, got {value!r}")
    return float(value)
