"""Rows checked against a Frictionless Table Schema file (such as the national
schema of digital-mediation places), driven by the schema file itself.

Only the schema's own types and constraints are applied: nothing is copied
from it by hand. A schema that uses a type, format or constraint this module
does not know is refused at load, so a new version of the standard can never
be applied half-checked in silence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from imager.errors import UsageError

TYPES = ("string", "number", "integer", "date")
CONSTRAINTS = ("required", "unique", "pattern", "minLength", "maxLength", "enum",
               "minimum", "maximum")
# A pattern made of `|`-separated choices, as the standard writes its lists:
# (?:(?:^|\|)(A|B|C))+$ — then a bad value is named item by item.
_CHOICES = re.compile(r"^\(\?:\(\?:\^\|\\\|\)\((?P<alts>.*)\)\)\+\$$")


@dataclass(frozen=True)
class Field:
    """One column of the schema: its name, title, type and constraints."""

    name: str
    title: str
    type: str
    constraints: Mapping[str, Any]

    @property
    def required(self) -> bool:
        return bool(self.constraints.get("required", False))

    def check(self, value: str) -> str | None:
        """Why `value` breaks this field's type or constraints, or None.
        An empty value is a missing value: only `required` applies to it."""
        if value == "":
            return "missing: this column is required" if self.required else None
        typed = _typed(self.type, value)
        if isinstance(typed, str) and self.type != "string":
            return typed
        for name, limit in self.constraints.items():
            why = _constraint(name, limit, value, typed)
            if why:
                return why
        return None


def _typed(kind: str, value: str) -> Any:
    """`value` as the field's type, or a str saying why it is not one."""
    try:
        if kind == "number":
            return float(value)
        if kind == "integer":
            return int(value)
        if kind == "date":
            return date.fromisoformat(value)
    except ValueError:
        example = {"number": "43.52609", "integer": "12", "date": "2024-04-02"}[kind]
        return f"{value!r} is not a {kind} (expected e.g. {example})"
    return value


def _constraint(name: str, limit: Any, value: str, typed: Any) -> str | None:
    if name == "pattern" and not re.fullmatch(limit, value):
        return _pattern_why(limit, value)
    if name == "maxLength" and len(value) > limit:
        return f"{len(value)} characters, {limit} at most: shorten it"
    if name == "minLength" and len(value) < limit:
        return f"{len(value)} characters, {limit} at least"
    if name == "enum" and value not in limit:
        return f"{value!r} is not one of: {', '.join(map(str, limit))}"
    if name == "minimum" and typed < limit:
        return f"{value} is below the minimum {limit}"
    if name == "maximum" and typed > limit:
        return f"{value} is above the maximum {limit}"
    return None


def _pattern_why(pattern: str, value: str) -> str:
    found = _CHOICES.match(pattern)
    if found:
        choices = [re.sub(r"\\(.)", r"\1", alt) for alt in found["alts"].split("|")]
        wrong = [item for item in value.split("|") if item not in choices]
        if wrong:
            return (f"unknown item(s) {', '.join(map(repr, wrong))}: separate items with '|' "
                    f"and choose among: {'; '.join(choices)}")
    return f"{value!r} does not match the pattern {pattern}"


@dataclass(frozen=True)
class TableSchema:
    """A Table Schema's fields (in order), its primary key and where it was read."""

    source: str
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...]

    @classmethod
    def from_file(cls, path: Path) -> TableSchema:
        """Read `path`; UsageError when it is not a Table Schema this module can apply."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"table schema {path} cannot be read: {exc}") from exc
        fields = tuple(_field(str(path), spec) for spec in raw.get("fields", []))
        key = raw.get("primaryKey", ())
        missing = raw.get("missingValues", [""])
        if list(missing) != [""]:
            raise UsageError(f"table schema {path}: missingValues {missing!r} is not supported "
                             "(only the default [\"\"]): update imager/profile/welcome/"
                             "tableschema.py")
        return cls(str(path), fields, (key,) if isinstance(key, str) else tuple(key))

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def header_problems(self, header: list[str]) -> list[str]:
        """What is wrong with a CSV's header: required columns missing, unknown ones."""
        problems = [f"missing required column {f.name!r} ({f.title}): add it to the header"
                    for f in self.fields if f.required and f.name not in header]
        known = {f.name for f in self.fields}
        problems += [f"unknown column {name!r}: the schema's columns are "
                     f"{', '.join(f.name for f in self.fields)}"
                     for name in header if name not in known]
        return problems

    def unique_fields(self) -> tuple[str, ...]:
        """The columns whose values may appear only once."""
        names = [f.name for f in self.fields if f.constraints.get("unique")]
        return tuple(dict.fromkeys([*names, *self.primary_key]))


def _field(source: str, spec: Mapping[str, Any]) -> Field:
    name = str(spec.get("name", ""))
    kind = spec.get("type", "string")
    fmt = spec.get("format", "default")
    constraints = dict(spec.get("constraints", {}))
    unknown = [c for c in constraints if c not in CONSTRAINTS]
    if kind not in TYPES or fmt != "default" or unknown or not name:
        what = (f"type {kind!r}" if kind not in TYPES else f"format {fmt!r}"
                if fmt != "default" else f"constraint(s) {unknown}" if unknown else "no name")
        raise UsageError(f"table schema {source}: field {name!r} uses {what}, which imager "
                         "does not check: update imager/profile/welcome/tableschema.py")
    return Field(name, str(spec.get("title", name)), kind, constraints)
