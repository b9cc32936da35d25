"""Upper bounds on what a spec or a data file may ask for, each refused with one line.

Two kinds of bound live here, one source for each:

- Resource caps (``CAPS``): sizes that a machine may or may not hold. A user raises one
  with the environment variable ``NNCHAIN_LIMITS``, e.g. ``NNCHAIN_LIMITS="n_samples=5000000,
  width=8192"``. The variable is read where the check runs, so a sweep's workers see the
  driver's value when they inherit its environment (a local Ray does).
- Facts (the ``MAX_*`` and ``INT64_*`` constants): what a float64 or an int64 holds, what
  standardisation survives, how big a spec is. They are not overridable.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from nnchain.errors import SpecError

ENV = "NNCHAIN_LIMITS"

CAPS: Mapping[str, int] = {
    "n_samples": 1_000_000,  # rows of a generated dataset or of a data file
    "columns": 10_000,  # input columns (features) of a data file
    "classes": 1_000,  # distinct labels of a classification target
    "width": 4_096,  # units of one hidden layer
    "layers": 64,  # hidden layers
    "epochs": 100_000,  # training epochs
    "trials": 100_000,  # trials of one sweep: the largest --max-trials
}
DEFAULT_MAX_TRIALS = 10_000  # --max-trials when not given: a guard, not a resource cap

# Config keys whose values a cap bounds (model.hidden: each width, and its length).
FIELD_CAPS: Mapping[str, str] = {
    "data.n_samples": "n_samples",
    "data.classes": "classes",
    "train.epochs": "epochs",
}

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# |x| below this keeps sums of n_samples squares finite when standardising (1e100**2 * 1e6
# is far under float64's 1.8e308); also the largest noise a generator takes.
MAX_MAGNITUDE = 1e100
MAX_SPEC_BYTES = 1_000_000  # a spec file or a --set value
MAX_YAML_DEPTH = 50  # nested collections in one YAML document
MAX_YAML_NODES = 100_000  # nodes of a YAML document with every alias expanded
MAX_NPZ_MEMBERS = 1_024  # arrays in one .npz


def caps() -> dict[str, int]:
    """The caps in force: ``CAPS`` with ``NNCHAIN_LIMITS`` applied (a bad value is a SpecError)."""
    current = dict(CAPS)
    text = os.environ.get(ENV, "").strip()
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in CAPS:
            raise SpecError(ENV, f"must be comma-separated name=N with names among "
                                 f"{', '.join(CAPS)}, got {item[:60]!r}")
        value = value.strip()
        if not value.isdigit() or len(value) > 18 or int(value) < 1:
            raise SpecError(ENV, f"{name} must be a whole number >= 1, got {value[:30]!r}")
        current[name] = int(value)
    return current


def check_cap(name: str, value: int, field: str, what: str = "") -> int:
    """``value`` if it is within the cap ``name``, else a SpecError on ``field`` saying how to
    raise the cap; ``what`` names the counted thing ("classes in column 'label'")."""
    cap = caps()[name]
    if value > cap:
        rule = f"must have at most {cap:,} {what}" if what else f"must be <= {cap:,}"
        given = f"{value:,}" if value.bit_length() <= 128 else f"{_digits(value)} digits"
        raise SpecError(field, f"{rule} (the {name} limit; raise it with {ENV}={name}=N), "
                               f"got {given}")
    return value


def check_max_trials(value: int, field: str = "--max-trials") -> int:
    """``value`` if the trials cap allows it, else a SpecError naming ``field``."""
    return check_cap("trials", value, field)


def check_field_caps(path: str, value: object) -> None:
    """Apply the caps that bound config key ``path`` to its checked value."""
    if path == "model.hidden" and isinstance(value, list):
        check_cap("layers", len(value), path)
        widest = max(value, default=0)
        if widest > caps()["width"]:
            check_cap("width", widest, f"{path}[{value.index(widest)}]")
    elif path in FIELD_CAPS and isinstance(value, int):
        check_cap(FIELD_CAPS[path], value, path)
    elif path == "data.noise" and isinstance(value, float) and value > MAX_MAGNITUDE:
        raise SpecError(path, f"must be <= {MAX_MAGNITUDE:g} so that standardising the "
                              f"data cannot overflow, got {value:g}")


def check_int64(field: str, value: int) -> int:
    """An int that fits an int64, else a SpecError naming the field and the digits given."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise SpecError(field, f"must fit a 64-bit integer (|value| < 2**63), got an integer "
                               f"of {_digits(value)} digits")
    return value


def as_float64(field: str, value: int | float) -> float:
    """``float(value)`` for a finite number that fits a float64, else a SpecError by name."""
    try:
        number = float(value)
    except OverflowError:
        raise SpecError(field, f"must fit a 64-bit float (|value| < 1.8e308), got an integer "
                               f"of {_digits(value)} digits") from None
    if not math.isfinite(number):
        raise SpecError(field, f"must be a finite number, got {number!r}")
    return number


def _digits(value: int) -> str:
    """About how many decimal digits an int has, without converting it to a string."""
    return f"about {int(abs(value).bit_length() * math.log10(2)) + 1:,}"
