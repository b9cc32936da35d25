"""``--where KEY OP VALUE``: parsing a filter expression and testing a trial against it.

``OP`` is one of ``= != < <= > >=`` (``==`` is read as ``=``). When the trial's value and
``VALUE`` are both numbers they are compared as numbers (``train.lr<=0.01``,
``val_cost.min<0.1``); otherwise as text, the value written as an MLflow param is
(``model.activation=relu``, ``model.hidden=[16, 16]``, ``data.standardize=true``). A
trial without a value (a metric not recorded, a param that does not apply) reads as
``null``: ``val_accuracy=null`` finds them, and ``<``, ``>`` never hold for them.
``state`` (or ``status``) takes a trial state, in any case, with ``=`` or ``!=``.
Any other run of ``=!<>`` characters (``>>``, ``=<``, ``<>``) is refused, never read
as part of the value; a value that starts with one of them is quoted (``reason='<x'``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nnchain.config import did_you_mean, param_value
from nnchain.errors import SpecError
from nnchain.ledger.states import TRIAL_STATES
from nnchain.report.keys import Catalog, Key

OPTION = "--where"
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_EXPRESSION = re.compile(r"^(?P<key>[^=!<>]*?)\s*(?P<op>!=|<=|>=|==|=|<|>)\s*(?P<value>.*)$",
                         re.S)
_FORM = ("must look like KEY OP VALUE with OP one of = != < <= > >= "
         "(train.lr<=0.01, model.activation=relu, state=FINISHED)")


@dataclass(frozen=True)
class Condition:
    """One parsed ``--where`` expression."""

    key: Key
    op: str  # a key of OPERATORS
    text: str  # the value, normalised the way params are written
    number: float | None  # the value as a number, when it is one

    def holds(self, row: dict[str, Any]) -> bool:
        value = self.key.value(row)
        compare = OPERATORS[self.op]
        if value is None:
            return self.op in ("=", "!=") and compare("null", self.text)
        if self.number is not None and _is_number(value):
            return compare(float(value), self.number)
        if isinstance(value, bool):
            return compare(param_value(value), self.text.lower())
        return compare(param_value(value), self.text)


def parse_where(expression: str, catalog: Catalog) -> Condition:
    """Parse ``KEY OP VALUE``; a malformed expression or unknown key raises ``SpecError``."""
    match = _EXPRESSION.match(expression.strip())
    if match is None or not match["key"].strip():
        raise SpecError(OPTION, f"{_FORM}, got {expression!r}")
    extra = re.match(r"[=!<>]*", match["value"].lstrip())[0]
    if extra:  # '>>', '=<', '=>', '<>', '===': no operator, and not part of the value
        written = match["op"] + extra
        raise SpecError(OPTION, f"OP must be one of {' '.join(OPERATORS)}, got {written!r} "
                                f"in {expression!r}")
    op = "=" if match["op"] == "==" else match["op"]
    if op not in ("=", "!=") and not match["value"].strip():
        raise SpecError(OPTION, f"{_FORM}, and {op} needs a value after it, got {expression!r}")
    key = catalog.resolve(match["key"], OPTION, given=expression)
    text = _normalise(match["value"])
    if key.path == "state":
        return _state_condition(key, op, text, expression)
    return Condition(key, op, text, _number(text))


def where_all(conditions: list[Condition]) -> Callable[[dict[str, Any]], bool]:
    """A predicate that holds when every condition holds (no conditions: always)."""
    return lambda row: all(condition.holds(row) for condition in conditions)


def _state_condition(key: Key, op: str, text: str, expression: str) -> Condition:
    if op not in ("=", "!="):
        raise SpecError(OPTION, f"state takes = or != (state!=FAILED), got {expression!r}")
    state = text.upper()
    if state not in TRIAL_STATES:
        raise SpecError(OPTION, f"state must be one of {', '.join(TRIAL_STATES)}, got "
                                f"{text!r} in {expression!r}"
                                f"{did_you_mean(state, TRIAL_STATES)}")
    return Condition(key, op, state, None)


def _normalise(text: str) -> str:
    """Strip quotes; write a list as params are written (``[16,16]`` -> ``[16, 16]``)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.startswith("[") and text.endswith("]"):
        items = [item.strip() for item in text[1:-1].split(",") if item.strip()]
        return "[" + ", ".join(items) + "]"
    return text


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return None if math.isnan(number) else number


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
