"""Checks of the numbers a data spec holds, each raising SpecError on the field it names."""

from __future__ import annotations

import math
import numbers

from nnchain.errors import SpecError, shown
from nnchain.limits import MAX_MAGNITUDE, check_int64


def check_int(value: object, minimum: int, field: str) -> int:
    """An integer (not a bool, not 4.0) that is at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SpecError(field, f"must be an integer >= {minimum}, got {shown(value)}")
    return check_int64(field, int(value))


def check_noise(value: object, field: str = "data.noise") -> float:
    """A finite real number in [0, MAX_MAGNITUDE] (more would overflow standardising)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0 <= value <= MAX_MAGNITUDE or not math.isfinite(value)):
        raise SpecError(field, f"must be a finite number with 0 <= value <= {MAX_MAGNITUDE:g}, "
                               f"got {shown(value)}")
    return float(value)


def check_fraction(value: object, field: str = "data.val_fraction") -> float:
    """A real number in [0, 1)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not 0 <= value < 1):
        raise SpecError(field, f"must be a number with 0 <= value < 1, got {shown(value)}")
    return float(value)
