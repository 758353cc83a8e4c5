"""The YAML documents of the project: profiles, welcome content, erase policy,
triage rules.

`read(text, source)` parses a document into a `Document`: its value, the 1-based
line of every key path (`sections[2].fr.title`), its scalars as written (before
YAML turns 1.10 into a number) and the keys given twice, so that every problem
names `file:line`. `Kind` adds the common header of the shipped documents (name,
version, no unknown top key) and refuses a bad one with every problem at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imager.errors import UsageError

YAML_FIX = "fix the indentation or quoting on that line"


class InvalidYaml(UsageError):
    """A document that is not YAML: `line` is where the parser stopped (None if unknown)."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source, self.line, self.problem = source, line, problem
        self.at = source if line is None else f"{source}:{line}"
        super().__init__(f"{self.at}: not valid YAML ({problem}): {YAML_FIX}")


@dataclass(frozen=True)
class Document:
    """A YAML document read from `source`: its value, the line of each key path,
    each scalar as written, and the keys given twice (path, line of the repeat).
    Where a key is given twice, its lines are those of the last, whose value YAML keeps."""

    value: Any
    source: str
    lines: dict[str, int] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)
    twice: tuple[tuple[str, int], ...] = ()

    def line(self, path: str) -> int:
        """The line of `path`, or of its nearest parent that has one (else 1)."""
        while path and path not in self.lines:
            path = parent(path)
        return self.lines.get(path, 1)

    def where(self, path: str) -> str:
        """`file:line: path` of `path` (`file:line` for the whole document)."""
        at = f"{self.source}:{self.line(path)}"
        return f"{at}: {path}" if path else at


def parent(path: str) -> str:
    """The key path holding `path`: `a.b[2]` -> `a.b` -> `a` -> ``."""
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def join(path: str, key: object) -> str:
    """The path of `key` under `path`."""
    return f"{path}.{key}" if path else str(key)


def read(text: str, source: str) -> Document:
    """The document in `text`, read from `source`, with its lines; InvalidYaml
    naming the line when it is not YAML."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        value = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _invalid(exc, text, source) from exc
    finally:
        loader.dispose()
    index = _Index()
    if node is not None:
        index.node(node, "")
    return Document(value, source, index.lines, index.written, tuple(index.twice))


def _invalid(exc: yaml.YAMLError, text: str, source: str) -> InvalidYaml:
    """Where the parser stopped; at the end of the text (an unclosed quote or
    bracket), where the unclosed thing opened."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return InvalidYaml(source, None, str(exc))
    mark = exc.problem_mark
    if mark is None or (mark.index >= len(text.rstrip()) and exc.context_mark is not None):
        mark = exc.context_mark
    said = ": ".join(x for x in (exc.context, exc.problem) if x) or str(exc)
    return InvalidYaml(source, None if mark is None else mark.line + 1, said)


class _Index:
    """The lines, scalars as written and repeated keys of a composed document."""

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}
        self.written: dict[str, str] = {}
        self.twice: list[tuple[str, int]] = []

    def node(self, node: yaml.Node, path: str) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            self.written[path] = str(node.value)
        elif isinstance(node, yaml.MappingNode):
            self.mapping(node.value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.node(item, f"{path}[{i}]")

    def mapping(self, pairs: Iterable[tuple[yaml.Node, yaml.Node]], path: str) -> None:
        last: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key, value in pairs:
            sub = join(path, key.value)
            if sub in last:
                self.twice.append((sub, key.start_mark.line + 1))
            last[sub] = (key, value)
        for sub, (key, value) in last.items():
            self.lines[sub] = key.start_mark.line + 1
            self.node(value, sub)


class Problems(list[str]):
    """Every problem of a document, each with its place: `media.nvme[2]: ...`, or
    `file:line: media.nvme[2]: ...` when the problems are those of `document`."""

    def __init__(self, found: Iterable[str] = (), *, document: Document | None = None,
                 ) -> None:
        super().__init__(found)
        self.document = document

    def add(self, where: str, message: str) -> None:
        place = self.document.where(where) if self.document is not None else where
        self.append(f"{place}: {message}")


def text(value: Any) -> str | None:
    """A non-blank string, stripped; None otherwise."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def sha256(document: str) -> str:
    return hashlib.sha256(document.encode("utf-8")).hexdigest()


def label(name: str, version: int, digest: str) -> str:
    """How a checked document names itself on plans and reports."""
    return f"{name} v{version} (sha256:{digest[:16]})"


@dataclass(frozen=True)
class Kind:
    """What the documents are called in messages: "erase policy" (singular) or
    "triage rules" (plural), and how to fix a missing file."""

    noun: str
    plural: bool
    missing_fix: str

    def _is(self, singular: str, plural: str) -> str:
        return plural if self.plural else singular

    def read(self, path: Path | str | None, shipped: Path) -> tuple[str, str]:
        """The text at `path` (else the shipped file) and where it came from."""
        where = Path(path) if path else shipped
        try:
            return where.read_text(encoding="utf-8"), str(where)
        except FileNotFoundError as exc:
            raise UsageError(f"{self.noun} {where} {self._is('does', 'do')} not exist: "
                             f"{self.missing_fix}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{self.noun} {where} cannot be read: {exc}") from exc

    def document(self, text: str, source: str) -> Document:
        """`text` read as a document whose value is a mapping (UsageError otherwise)."""
        try:
            document = read(text, source)
        except InvalidYaml as exc:
            raise UsageError(f"{self.noun} {exc.at} {self._is('is', 'are')} not valid YAML "
                             f"({exc.problem}): {YAML_FIX}") from exc
        if not isinstance(document.value, dict):
            raise UsageError(f"{self.noun} {source}: expected a mapping at the top")
        return document

    def header(self, raw: dict[str, Any], top_keys: set[str], problems: Problems,
               ) -> tuple[str, int]:
        """Unknown top keys, `name` and `version` checked; (name, version)."""
        for key in sorted(set(raw) - top_keys):
            problems.add(key, f"unknown key (allowed: {', '.join(sorted(top_keys))})")
        name, version = text(raw.get("name")), raw.get("version")
        if name is None:
            problems.add("name", f"missing: give the {self.noun.split()[-1]} a name")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            problems.add("version", f"expected a whole number >= 1, not {version!r}")
            version = 0
        return name or "", int(version)

    def check(self, problems: Problems, source: str) -> None:
        if problems:
            raise UsageError(f"{self.noun} {source} {self._is('has', 'have')} "
                             f"{len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
