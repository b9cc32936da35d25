"""Search spaces of one sweep parameter: ``{values: [...]}``, ``{value: x}`` or a distribution.

A parameter maps a dotted config key to one of three spaces. ``Values`` and ``Value``
serve both grid and random search; a ``Distribution`` serves random search only and
draws from a ``numpy.random.Generator`` the caller owns (randomness is injected, never
global). Sampled floats keep 6 significant digits so that params read as ``0.0123457``,
not ``0.012345678901234567``, and stay inside ``[min, max]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nnchain.config import FIELDS, check_value, did_you_mean
from nnchain.errors import SpecError, shown
from nnchain.limits import as_float64, check_int64

CONTINUOUS = ("uniform", "log_uniform", "q_uniform", "q_log_uniform")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "q_uniform", "q_log_uniform")
PARAMETER_KEYS = ("values", "value", "distribution", "min", "max", "q")
NUMERIC_KINDS = ("int", "float")
SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True)
class Values:
    """A finite list of choices; a grid takes every one, random search draws uniformly."""

    values: tuple[Any, ...]

    @property
    def size(self) -> int:
        return len(self.values)

    def at(self, index: int) -> Any:
        return self.values[index]


@dataclass(frozen=True)
class Value:
    """One fixed value: a single-point space (counts 1 in the grid size)."""

    value: Any

    @property
    def size(self) -> int:
        return 1

    def at(self, index: int) -> Any:
        return self.value


@dataclass(frozen=True)
class Distribution:
    """A random-search distribution over ``[min, max]`` (bounds inclusive for integers).

    ``int_uniform`` is a finite space (``size`` counts it); the other kinds are
    continuous or quantised and are sampled with ``sample``. ``integer`` says whether
    the config key takes integers, so a quantised draw is returned as ``int``.
    """

    kind: str
    min: float
    max: float
    q: float | None = None
    integer: bool = False

    @property
    def size(self) -> int | None:
        """The number of points for ``int_uniform``; ``None`` for the continuous kinds."""
        return int(self.max) - int(self.min) + 1 if self.kind == "int_uniform" else None

    def at(self, index: int) -> int:
        """The ``index``-th integer of an ``int_uniform`` space."""
        return int(self.min) + index

    def sample(self, rng: np.random.Generator) -> Any:
        """One draw from the distribution."""
        if self.kind == "int_uniform":
            return int(rng.integers(int(self.min), int(self.max), endpoint=True))
        if self.kind in ("log_uniform", "q_log_uniform"):
            draw = math.exp(rng.uniform(math.log(self.min), math.log(self.max)))
        else:
            draw = float(rng.uniform(self.min, self.max))
        if self.q is None:
            return min(max(_round_significant(draw), self.min), self.max)
        return self._quantise(draw)

    def _quantise(self, draw: float) -> Any:
        """Round to a multiple of ``q`` that lies in ``[min, max]`` (W&B's ``q_*`` rounding)."""
        low, high = math.ceil(self.min / self.q - 1e-9), math.floor(self.max / self.q + 1e-9)
        steps = min(max(round(draw / self.q), low), high)
        if self.integer:
            return int(round(steps * self.q))
        return _round_significant(steps * self.q, 12)


Space = Values | Value | Distribution


def _round_significant(x: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    return float(f"{x:.{digits}g}")


def parse_parameter(path: str, raw: Any) -> Space:
    """Read one ``parameters`` entry for config key ``path``.

    Errors name the field ``parameters.<path>``, as the user wrote it.
    """
    field = f"parameters.{path}"
    if not isinstance(raw, Mapping):
        hint = f"; write {{values: {shown(raw)}}}" if isinstance(raw, list) else ""
        raise SpecError(field, f"must be a mapping with one of values, value or distribution, "
                               f"got {shown(raw)}{hint}")
    for key in raw:
        if key not in PARAMETER_KEYS:
            hint = did_you_mean(str(key), PARAMETER_KEYS)
            raise SpecError(field, f"unknown key {shown(key)}, expected values, value or "
                                   f"distribution with min, max, q{hint}")
    given = [key for key in ("values", "value", "distribution") if key in raw]
    if len(given) != 1:
        which = ", ".join(given) if given else "none"
        raise SpecError(field, f"exactly one of values, value or distribution must be given, "
                               f"got {which}")
    if given[0] != "distribution":
        extra = [key for key in ("min", "max", "q") if key in raw]
        if extra:
            raise SpecError(field, f"{', '.join(extra)} only apply to a distribution, "
                                   f"got them with {given[0]}")
    if "value" in raw:
        return Value(raw["value"])
    if "values" in raw:
        values = raw["values"]
        if not isinstance(values, list) or not values:
            raise SpecError(field, f"values must be a non-empty list, got {shown(values)}")
        return Values(tuple(values))
    return _parse_distribution(path, field, raw)


def _parse_distribution(path: str, field: str, raw: Mapping[str, Any]) -> Distribution:
    kind = raw["distribution"]
    if kind not in DISTRIBUTIONS:
        hint = did_you_mean(kind, DISTRIBUTIONS) if isinstance(kind, str) else ""
        raise SpecError(field, f"distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                               f"got {shown(kind)}{hint}")
    config_field = FIELDS[path]
    if config_field.kind not in NUMERIC_KINDS:
        raise SpecError(field, f"a distribution needs a numeric config key, {path} takes "
                               f"{config_field.kind.replace('_', ' ')} values; use values: [...]")
    bounds = {}
    for bound in ("min", "max"):
        if bound not in raw:
            raise SpecError(field, f"{bound} is required for distribution {kind}")
        bounds[bound] = _number(field, bound, raw[bound])
    low, high = bounds["min"], bounds["max"]
    if not low <= high:
        raise SpecError(field, f"min <= max must hold, got min={low}, max={high}")
    if kind.startswith(("log", "q_log")) and not low > 0:
        raise SpecError(field, f"min > 0 must hold for {kind}, got min={low}")
    integer = config_field.kind == "int"
    if kind == "int_uniform":
        for bound, number in bounds.items():
            if not float(number).is_integer():
                raise SpecError(field, f"{bound} must be an integer for int_uniform, got {number}")
    elif integer and "q" not in raw:
        raise SpecError(field, f"{path} takes integers; use int_uniform or a q_* distribution "
                               f"with an integer q, got {kind}")
    q = None
    if kind.startswith("q_"):
        if "q" not in raw:
            raise SpecError(field, f"q is required for {kind} (the step values are rounded to)")
        q = _number(field, "q", raw["q"])
        if not q > 0:
            raise SpecError(field, f"q > 0 must hold, got q={q}")
        if integer and not float(q).is_integer():
            raise SpecError(field, f"q must be an integer since {path} takes integers, got q={q}")
        if math.floor(high / q + 1e-9) < math.ceil(low / q - 1e-9):
            raise SpecError(field, f"[min, max] must hold a multiple of q, got min={low}, "
                                   f"max={high}, q={q}")
    elif "q" in raw:
        raise SpecError(field, f"q only applies to q_uniform and q_log_uniform, got {kind}")
    for bound, number in bounds.items():
        try:
            check_value(path, int(number) if integer or kind == "int_uniform" else number)
        except SpecError as exc:
            raise SpecError(field, f"{bound} {exc.message}") from None
    if kind == "int_uniform":
        low, high = int(low), int(high)
    return Distribution(kind, low, high, q, integer)


def _number(field: str, name: str, value: Any) -> float:
    """A finite number; an int stays an int (int_uniform bounds) and must fit an int64."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(field, f"{name} must be a finite number, got {shown(value)}")
    if isinstance(value, int):
        return check_int64(f"{field}.{name}", value)
    return as_float64(f"{field}.{name}", value)


def is_finite(space: Space) -> bool:
    """Whether the space is a finite set sampled uniformly (values, value, int_uniform)."""
    return space.size is not None
