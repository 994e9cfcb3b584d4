"""YAML policy source: plain data plus the line of every key, so errors can name lines.

PyYAML's ``safe_load`` forgets where values came from and silently keeps the last of two
duplicate keys. Here the node tree is walked by hand: every mapping key and sequence item
is recorded with its line, duplicate keys are errors, and alias expansion is capped so an
"billion laughs" document cannot exhaust memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from rlmbox.errors import PolicyError

Path = tuple[str | int, ...]

MAX_SOURCE_BYTES = 1024 * 1024   # a policy is a small hand-written file
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
MAX_NODES = 100_000              # after alias expansion; bounds memory and time


def format_path(path: Sequence[str | int]) -> str:
    """``('rules', 3, 'when', 'model')`` -> ``rules[3].when.model``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class SourceMap:
    """Line numbers (1-based) of the YAML nodes, keyed by data path."""

    def __init__(self) -> None:
        self.lines: dict[Path, int] = {}

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """The line of the longest known prefix of ``path``."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return None


class _Walker:
    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.source = SourceMap()
        self.errors: list[str] = []
        self.nodes = 0

    def walk(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise PolicyError(
                f"policy document too large: more than {MAX_NODES} nodes after aliases",
                [f"{format_path(path)}: too many nodes (line {node.start_mark.line + 1})"])
        self.source.lines.setdefault(path, node.start_mark.line + 1)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
            # e.g. !!python/object: never constructed, and not silently ignored either
            self.errors.append(f"{format_path(path)}: unsupported YAML tag {node.tag} "
                               f"(line {node.start_mark.line + 1})")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.errors.append(
                    f"{format_path(path)}: merge keys ('<<') are not supported (line {line})")
                continue
            key = (self.loader.construct_object(key_node, deep=True)
                   if isinstance(key_node, yaml.ScalarNode) else None)
            if not isinstance(key, str):
                self.errors.append(
                    f"{format_path(path)}: keys must be strings, got {key_node.tag} (line {line})")
                continue
            if key in out:
                self.errors.append(
                    f"{format_path((*path, key))}: duplicate key '{key}' (line {line})")
                continue
            self.source.lines[(*path, key)] = line
            out[key] = self.walk(value_node, (*path, key))
        return out


def parse_yaml(data: bytes | str) -> tuple[Any, SourceMap]:
    """Parses one YAML document into plain data and its source map.

    Raises:
        PolicyError: the text is not one well-formed YAML document, is too large, or has
            duplicate or non-string keys.
    """
    size = len(data.encode() if isinstance(data, str) else data)
    if size > MAX_SOURCE_BYTES:
        raise PolicyError(f"policy source is {size} bytes; the limit is {MAX_SOURCE_BYTES}",
                          [f"(top level): source too large ({size} bytes)"])
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError("policy source is not UTF-8",
                              [f"(top level): not UTF-8 at byte {exc.start}"]) from exc
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(data)   # the reader refuses control characters here
        node = loader.get_single_node()
        if node is None:
            raise PolicyError("policy source is empty", ["(top level): empty document"])
        walker = _Walker(loader)
        value = walker.walk(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1})" if mark is not None else ""
        detail = f"(top level): YAML syntax: {exc.problem or exc.context}{where}"
        raise PolicyError("policy source is not valid YAML", [detail]) from exc
    except yaml.YAMLError as exc:
        raise PolicyError("policy source is not valid YAML", [f"(top level): {exc}"]) from exc
    except RecursionError as exc:
        raise PolicyError("policy source nests too deeply",
                          ["(top level): nesting too deep"]) from exc
    finally:
        if loader is not None:
            loader.dispose()
    if walker.errors:
        raise PolicyError(f"policy has {len(walker.errors)} error(s)", walker.errors)
    return value, walker.source
