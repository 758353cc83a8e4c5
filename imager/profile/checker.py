"""Reading a profile document field by field: each bad value becomes a problem
placed as `file:line key.path: what is wrong and how to fix it`, and reading
goes on, so that one run lists every problem of the file."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import urlsplit

from imager import yamldoc


def nearest(word: str, known: Iterable[str]) -> str | None:
    """The known word closest to `word` (a typo's fix), if any is close."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _one_of(value: object, known: Collection[str]) -> str:
    """`value` is not among `known`: the nearest one, and all of them."""
    near = nearest(value, known) if isinstance(value, str) else None
    hint = f"did you mean {near!r}? " if near else ""
    return f"{value!r} is not known: {hint}use one of {', '.join(known)}"


class Checker:
    """Problems of one document, each placed as `file:line key.path`; keys given
    twice are problems from the start."""

    def __init__(self, document: yamldoc.Document) -> None:
        self.document, self.source, self.written = document, document.source, document.written
        self.found: list[tuple[int, str]] = []
        for key, line in document.twice:
            self.add(key, "this key appears twice: keep one (YAML would silently keep the "
                          "last)", line=line)

    def line(self, path: str) -> int:
        """The line of `path`, or of its nearest parent."""
        return self.document.line(path)

    def add(self, path: str, message: str, *, line: int | None = None) -> None:
        """A problem at `path` (at `line` if given)."""
        line = line or self.line(path)
        self.found.append((line, f"{self.source}:{line} {path or '(top)'}: {message}"))

    def problems(self) -> yamldoc.Problems:
        """The problems found, in the file's order."""
        return yamldoc.Problems(text for _, text in sorted(self.found, key=lambda f: f[0]))

    def mapping(self, raw: Any, path: str, allowed: Collection[str], *,
                required: Collection[str] = (), example: str = "") -> dict[str, Any] | None:
        """`raw` as a mapping: unknown keys refused (nearest known key suggested),
        required keys present."""
        if raw is None:
            return None     # reported as missing by the mapping above
        if not isinstance(raw, dict):
            self.add(path, f"expected a mapping{' such as ' + example if example else ''}, "
                           f"not {raw!r}")
            return None
        for key in raw:
            if key not in allowed:
                near = nearest(str(key), allowed)
                fix = f"did you mean {near!r}?" if near else "remove it"
                self.add(yamldoc.join(path, key), f"unknown key {key!r}: {fix} "
                                                  f"(allowed here: {', '.join(allowed)})")
        for key in required:
            if raw.get(key) is None:
                self.add(yamldoc.join(path, key), f"missing: add `{key}:` under "
                                                  f"{path or 'the top of the file'}")
        return raw

    def text(self, raw: Any, path: str, *, pattern: re.Pattern[str] | None = None,
             rule: str = "", default: str | None = None) -> str:
        """A non-blank string (matching `pattern`, explained by `rule`), else ''."""
        if raw is None and default is not None:
            return default
        if raw is None:
            return ""   # a missing required key is reported by `mapping`
        if not isinstance(raw, str) or not raw.strip():
            as_written = self.written.get(path, repr(raw))
            hint = f' (write it in quotes: "{as_written}")' \
                if isinstance(raw, bool | int | float) else ""
            self.add(path, f"expected text, not {as_written}{hint}")
            return ""
        value = raw.strip()
        if pattern is not None and not pattern.fullmatch(value):
            self.add(path, f"{value!r} is not valid: {rule}")
            return ""
        return value

    def choice(self, raw: Any, path: str, known: Collection[str], *, why: str = "",
               default: str | None = None) -> str:
        """One of `known`, else '' (the nearest suggested, `why` saying what they mean)."""
        value = self.text(raw, path, default=default)
        if value and value not in known:
            self.add(path, _one_of(value, known) + (f" ({why})" if why else ""))
            return ""
        return value

    def url(self, raw: Any, path: str, *, default: str | None = None) -> str:
        """A full http(s) address, else ''."""
        value = self.text(raw, path, default=default)
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.netloc):
            self.add(path, f"{value!r} is not a web address: write it in full, "
                           "e.g. https://www.example.fr/")
            return ""
        return value

    def items(self, raw: Any, path: str, *, what: str) -> list[tuple[str, Any]]:
        """(path of item, item) for a list; a problem if it is not a list."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.add(path, f"expected a list of {what} (lines starting with `- `), "
                           f"not {raw!r}")
            return []
        for i in (i for i, item in enumerate(raw) if item is None):
            self.add(f"{path}[{i}]", "an empty item: fill it in or remove its `-` line")
        return [(f"{path}[{i}]", item) for i, item in enumerate(raw) if item is not None]

