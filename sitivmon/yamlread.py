"""Reading YAML from outside without trusting it: size, alias expansion, nesting and duplicate keys are
checked on the node graph before a single value is built.

Shared by every YAML file sitivmon reads (the main config, profile files, the allocation file), so a
1.3 KB "billion laughs" or a duplicated key is refused the same way, with its line, wherever it is.
Depends on nothing else of sitivmon.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml


def format_loc(loc: Iterable[str | int]) -> str:
    """How a place in a document is written in error messages: `links[3].commune`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    loc: Loc
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = format_loc(self.loc) or "<root>"
        suffix = f" (line {self.line})" if self.line else ""
        return f"{where}: {self.message}{suffix}"


MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
MAX_EXPANDED_NODES = 1_000_000  # a config of 10,000 links is about 150,000 nodes


class DocumentRefused(Exception):
    """The document is refused before validation, with every located reason."""

    def __init__(self, *issues: ConfigIssue) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = list(issues)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, limit: int = MAX_EXPANDED_NODES) -> None:
    """Refuse a document whose aliases expand it beyond `limit` nodes, or that refers to itself.

    Each distinct node is visited once (iteratively: no recursion limit to hit) and its expanded
    size is memoised, so a bomb is measured in the time of its text, not of its expansion.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(size[id(c)] for c in _children(node))
            if total > limit:
                line = node.start_mark.line + 1
                message = f"aliases expand the document beyond {limit:,} values: write them out or nest fewer aliases"
                raise DocumentRefused(ConfigIssue((), message, line))
            size[key] = total
            continue
        if key in size:
            continue
        if key in on_path:
            line = node.start_mark.line + 1
            message = "an alias refers to the node that contains it (recursive YAML)"
            raise DocumentRefused(ConfigIssue((), message, line))
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in size)


def _walk(root: yaml.Node) -> tuple[dict[Loc, int], list[ConfigIssue]]:
    """Line of every location (each node once: an aliased subtree is located at its alias's key)
    and the duplicate keys of every mapping."""
    lines: dict[Loc, int] = {(): root.start_mark.line + 1}
    duplicates: list[ConfigIssue] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    later: list[tuple[yaml.Node, Loc]] = []
    while stack:
        node, loc = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else str(key.tag)
                line = key.start_mark.line + 1
                if isinstance(key, yaml.ScalarNode) and name in first:
                    duplicates.append(ConfigIssue(
                        (*loc, name), f"duplicate key (first at line {first[name]}): YAML would keep only the last",
                        line,
                    ))  # fmt: skip
                    continue
                first[name] = line
                lines.setdefault((*loc, name), line)
                later.append((value, (*loc, name)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault((*loc, i), item.start_mark.line + 1)
                later.append((item, (*loc, i)))
        stack.extend(reversed(later))  # document order: a shared node is walked where its anchor is
        later.clear()
    duplicates.sort(key=lambda issue: issue.line or 0)
    return lines, duplicates


def read_yaml(text: str, loader_class: type[yaml.SafeLoader] = yaml.SafeLoader) -> tuple[Any, dict[Loc, int]]:
    """Parse once, bounded: size, alias expansion, nesting and duplicate keys are checked on the
    node graph before a value is built from it. Returns the data and the line of every location;
    raises `yaml.YAMLError` (syntax) or `DocumentRefused` (located issues). Meant for every YAML
    file sitivmon reads; `loader_class` is a SafeLoader subclass (the allocation file reads floats as
    Decimal)."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise DocumentRefused(ConfigIssue((), f"the file is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB"))
    loader = loader_class(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None, {}
            _check_expansion(node)
            lines, duplicates = _walk(node)
            if duplicates:
                raise DocumentRefused(*duplicates)
            return loader.construct_document(node), lines
        except RecursionError:
            raise DocumentRefused(ConfigIssue((), "the document is nested too deeply")) from None
    finally:
        loader.dispose()
