"""Safe YAML loading that remembers where every value came from.

PyYAML's composer gives nodes with start marks; we build plain Python values from
them ourselves so that each value (and each mapping key) keeps its line and column
for error messages. Only the safe YAML types are constructed. Alias expansion is
bounded so an "anchor bomb" is an error, not an out-of-memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

try:  # libyaml is much faster; the pure-Python loader gives the same nodes.
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

STR_TAG = "tag:yaml.org,2002:str"
MAX_MANIFEST_BYTES = 256 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 64

Loc = tuple[str | int, ...]


class Position(NamedTuple):  # one per value of every manifest: a tuple is cheaper to make
    line: int  # 1-based
    column: int  # 1-based


class YamlError(Exception):
    def __init__(self, message: str, position: Position | None, loc: Loc = ()):
        super().__init__(message)
        self.message = message
        self.position = position
        self.loc = loc


@dataclass
class YamlDocument:
    """The values, and where each value and key was written: the parser's marks, turned into
    positions only for the few a problem points at."""

    data: Any
    value_marks: dict[Loc, yaml.Mark] = field(default_factory=dict)
    key_marks: dict[Loc, yaml.Mark] = field(default_factory=dict)

    def position_of(self, loc: Loc) -> Position | None:
        """Where the value at `loc` is, or the closest enclosing value that exists."""
        loc = tuple(loc)
        while loc and loc not in self.value_marks:
            loc = loc[:-1]
        mark = self.value_marks.get(loc)
        return _position(mark) if mark is not None else None

    def key_position_of(self, loc: Loc) -> Position | None:
        """Where the key naming `loc` is written (for unknown or misplaced keys)."""
        mark = self.key_marks.get(tuple(loc))
        return _position(mark) if mark is not None else self.position_of(loc)


def _position(mark: yaml.Mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self) -> None:
        self.document = YamlDocument(data=None)
        self.node_count = 0
        self.scalars = SafeConstructor()

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.node_count += 1
        if self.node_count > MAX_NODES:
            raise YamlError(
                f"document expands to more than {MAX_NODES} values (an alias/anchor bomb?)",
                _position(node.start_mark),
                loc,
            )
        if len(loc) > MAX_DEPTH:
            raise YamlError(f"values are nested more than {MAX_DEPTH} levels deep", _position(node.start_mark), loc)
        self.document.value_marks.setdefault(loc, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        if node.tag == STR_TAG and isinstance(node, yaml.ScalarNode):
            return node.value  # what SafeConstructor gives for a string, without its dispatch
        try:
            return self.scalars.construct_object(node, deep=True)
        except ConstructorError as error:
            raise YamlError(str(error.problem or error), _position(node.start_mark), loc) from None
        except Exception:  # noqa: BLE001 - e.g. `!!int abc`, `!!bool maybe`, a bad date
            raise YamlError(f"cannot read {node.value!r} as {node.tag}", _position(node.start_mark), loc) from None

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError("merge keys (<<) are not supported in manifests", _position(key_node.start_mark), loc)
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError("mapping keys must be plain strings", _position(key_node.start_mark), loc)
            key = self._scalar(key_node, loc)
            if not isinstance(key, str):
                raise YamlError(f"mapping key {key!r} must be a string (quote it)", _position(key_node.start_mark), loc)
            if key in result:
                raise YamlError(f"duplicate key {key!r}", _position(key_node.start_mark), loc + (key,))
            self.document.key_marks[loc + (key,)] = key_node.start_mark
            result[key] = self.build(value_node, loc + (key,))
        return result


def load_yaml(text: str | bytes) -> YamlDocument:
    """Parse one YAML document, raising YamlError with a position on any problem."""
    if len(text) > MAX_MANIFEST_BYTES:
        raise YamlError(f"file is {len(text)} bytes; manifests are limited to {MAX_MANIFEST_BYTES} bytes", None)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise YamlError(f"file is not UTF-8 text ({error.reason} at byte {error.start})", None) from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        position = Position(mark.line + 1, mark.column + 1) if mark else None
        raise YamlError(f"invalid YAML: {error.problem or error}", position) from None
    except yaml.YAMLError as error:
        raise YamlError(f"invalid YAML: {error}", None) from None
    except RecursionError:
        raise YamlError(f"invalid YAML: nested more than {MAX_DEPTH} levels deep", None) from None
    if node is None:
        return YamlDocument(data=None)
    builder = _Builder()
    builder.document.data = builder.build(node, ())
    return builder.document
