"""YAML read with the line of every value, so that a problem names `file:line`.

`imager.yamldoc` reads the shipped YAML documents; this adds what the welcome
content needs on top: where each value sits in its file (PyYAML's composed
nodes carry their marks), keyed by a dotted path such as `sections[2].fr.title`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from imager.errors import UsageError


@dataclass(frozen=True)
class Located:
    """A YAML document's value and the 1-based line of each path in it."""

    value: Any
    source: str
    lines: dict[str, int]

    def where(self, path: str) -> str:
        """`file:line: path` of `path`, or of its nearest parent that has a line."""
        here = path
        while here and here not in self.lines:
            here = _parent(here)
        line = self.lines.get(here, 1)
        return f"{self.source}:{line}: {path}" if path else f"{self.source}:{line}"


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def _walk(node: yaml.Node, path: str, lines: dict[str, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = f"{path}.{key.value}" if path else str(key.value)
            lines[name] = key.start_mark.line + 1
            _walk(value, name, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, f"{path}[{index}]", lines)


def load(text: str, source: str) -> Located:
    """The document in `text` (read from `source`) with its lines; UsageError
    naming the line when it is not valid YAML."""
    try:
        value = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{source}:{mark.line + 1}" if mark is not None else source
        raise UsageError(f"{at}: not valid YAML ({getattr(exc, 'problem', exc)}): fix the "
                         "indentation or quoting on that line") from exc
    lines: dict[str, int] = {}
    if node is not None:
        _walk(node, "", lines)
    return Located(value, source, lines)
