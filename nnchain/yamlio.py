"""YAML reading that refuses bad input with one line, and reads ``1e-3`` as a float.

PyYAML follows YAML 1.1, where a float needs a dot (``1e-3`` would be the
string "1e-3"); users of sweep tools expect a number, so the float resolver is
widened the way YAML 1.2 reads it.

A document is bounded before it is built: at most ``MAX_SPEC_BYTES`` of text,
``MAX_YAML_DEPTH`` nested collections and ``MAX_YAML_NODES`` nodes with every alias
expanded (``nnchain/limits.py``). Anchors and aliases stay usable within that budget; a
"billion laughs" file is refused as it is read, before any value is built or shown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from nnchain.errors import SpecError
from nnchain.limits import MAX_SPEC_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 floats and bounded depth and expanded size; never constructs
    Python objects."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> its nodes with aliases expanded

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._sizes:
                raise _refused("an alias must not refer to a collection that holds it", mark)
            return node
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _refused(f"collections must nest at most {MAX_YAML_DEPTH} deep", mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        size = 1 + sum(self._sizes[id(child)] for child in _children(node))
        if size > MAX_YAML_NODES:
            raise _refused(f"a document must have at most {MAX_YAML_NODES:,} values with its "
                           f"aliases expanded, this collection has more", mark)
        self._sizes[id(node)] = size
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


def _refused(problem: str, mark: yaml.Mark) -> yaml.YAMLError:
    return yaml.composer.ComposerError(None, None, problem, mark)


_Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error becomes one SpecError line naming the source and line."""
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(source, f"must be at most {MAX_SPEC_BYTES:,} characters of YAML, "
                                f"got {len(text):,}")
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except ValueError as exc:  # an integer longer than Python converts (4,300 digits)
        raise SpecError(source, f"must be valid YAML, got a value Python cannot read: "
                                f"{str(exc).splitlines()[0][:120]}") from None
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
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(str(path), f"spec file must be at most {MAX_SPEC_BYTES:,} bytes, "
                                       f"got {size:,}")
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
