"""The YAML documents shipped in profiles/ (erase policy, triage rules).

One way to read them, check their common header (name, version, no unknown
top key) and refuse a bad one with every problem and its place at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from imager.errors import UsageError


class Problems(list[str]):
    """Every problem of a document, each with its place (`media.nvme[2]: ...`)."""

    def add(self, where: str, message: str) -> None:
        self.append(f"{where}: {message}")


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

    def mapping(self, document: str, source: str) -> dict[str, Any]:
        try:
            raw = yaml.safe_load(document)
        except yaml.YAMLError as exc:
            raise UsageError(f"{self.noun} {source} {self._is('is', 'are')} not valid YAML: "
                             f"{exc}") from exc
        if not isinstance(raw, dict):
            raise UsageError(f"{self.noun} {source}: expected a mapping at the top")
        return raw

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
