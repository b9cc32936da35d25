"""YAML reading that refuses bad input with one line, and reads ``1e-3`` as a float.

PyYAML follows YAML 1.1, where a float needs a dot (``1e-3`` would be the
string "1e-3"); users of sweep tools expect a number, so the float resolver is
widened the way YAML 1.2 reads it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from nnchain.errors import SpecError

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats; never constructs Python objects."""


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes one SpecError line naming the source and line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(source, f"must be valid YAML, parse error{where}: {problem}") from None


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(str(path), "spec file must exist, it was not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), f"spec file must be readable UTF-8 text: {exc}") from None
    data = parse_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(str(path), f"top level must be a mapping, got {type(data).__name__}")
    return data


def parse_value(text: str) -> Any:
    """Read a ``--set key=value`` override's value as YAML (``0.3``, ``[16, 16]``, ``null``)."""
    return parse_yaml(text, "--set value") if text.strip() else ""
