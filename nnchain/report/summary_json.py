"""summary.json written a group at a time into a file, in ``json.dumps(data, indent=1)``'s
own layout.

``json.dumps`` with an indent encodes in Python, a call per value: most of a large sweep's
report. The groups' curves (lists of numbers, most of the file) are written here a list
at a time instead, into the same text; anything else goes through ``json.dumps``.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from typing import Any, BinaryIO

import numpy as np

from nnchain.report.summary import Group, SweepSummary, final_value

INDENT = "  "  # a group's lines in summary.json: inside the top object and its "groups"
# Groups whose curves summary.json holds, best first; the others have their final figures
# only (every run's curves stay in MLflow). A random search makes every trial a group:
# reading all their curves again was most of a large sweep's report.
MAX_GROUPS_WITH_CURVES = 1000


class SummaryJson:
    """summary.json written into ``out`` a group at a time: the text
    ``json.dumps(data, indent=1)`` gives for the whole, without holding every group's
    curves (or the file) at once."""

    def __init__(self, summary: SweepSummary, out: BinaryIO) -> None:
        best = summary.best
        head = {
            "sweep": summary.sweep.name, "sweep_id": summary.sweep.id,
            "metric": summary.metric, "goal": summary.goal, "status": summary.sweep.status,
            "counts": summary.counts, "trials": sum(summary.counts.values()),
            "group_by": summary.group_by,
            "groups_with_curves": min(len(summary.groups), MAX_GROUPS_WITH_CURVES),
            "best": None if best is None else {
                "value": final_value(best, summary.metric), "index": best["index"],
                "run_id": best["run_id"], "name": summary.names.get(best["run_id"], "")},
            "groups": []}  # the last key: its items are written by add()
        text = json.dumps(head, indent=1, allow_nan=False)
        opening, closing = text.rsplit("[]", 1)
        self._closing = closing.encode()
        self._out = out
        self._out.write(opening.encode() + b"[")
        self._count = 0

    def add(self, group: Group) -> None:
        entry = {"label": group.label, "values": group.values, "trials": len(group.rows),
                 "final": group.final,
                 "curves": {key: {"mean": _finite(c.mean), "std": _finite(c.std),
                                  "count": c.count.tolist()}
                            for key, c in group.curves.items()}}
        self._out.write((",\n" if self._count else "\n").encode())
        self._out.write((INDENT + indented(entry, INDENT)).encode())
        self._count += 1

    def close(self) -> None:
        self._out.write((f"\n{INDENT[:-1]}]" if self._count else "]").encode() + self._closing)


def indented(value: Any, pad: str = "") -> str:
    """``json.dumps(value, indent=1, allow_nan=False)`` with its lines after the first
    indented by ``pad``: dicts and lists laid out here (a list of numbers in one join),
    every other value by ``json.dumps``' C encoder."""
    inner = pad + " "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{encode_basestring_ascii(key) if type(key) is str else _key(key)}: "
                 f"{indented(item, inner)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        texts = _numbers(value)
        if texts is None:
            texts = [indented(item, inner) for item in value]
        return "[\n" + inner + f",\n{inner}".join(texts) + f"\n{pad}]"
    return json.dumps(value, allow_nan=False)


def _numbers(values: list) -> list[str] | None:
    """The JSON texts of a list of finite floats, ints and None; None for any other list."""
    texts = []
    for value in values:
        kind = type(value)
        if kind is float and math.isfinite(value):
            texts.append(float.__repr__(value))
        elif kind is int:
            texts.append(int.__repr__(value))
        elif value is None:
            texts.append("null")
        else:
            return None
    return texts


def _key(key: Any) -> str:
    """A dict key that is not a string, as ``json.dumps`` writes it (``"1"``, ``"true"``)."""
    return json.dumps({key: 0})[1:-4]


def _finite(values: np.ndarray) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values.tolist()]


def summary_json(summary: SweepSummary) -> str:
    """The whole summary.json as text (a summary whose groups still hold their curves)."""
    import io

    out = io.BytesIO()
    written = SummaryJson(summary, out)
    for group in summary.groups:
        written.add(group)
    written.close()
    return out.getvalue().decode()
