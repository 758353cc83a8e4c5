"""The record schemas (certificates/schema/*.schema.json) and their check.

A record that does not match its schema is never signed, and a signed file
whose record does not match is refused by `imager cert verify`.

Two validators, one schema: fastjsonschema (the schema compiled to Python,
~20x faster, used for the yes/no answer: verifying 10,000 certificates must
take seconds) and jsonschema (to list every problem with its place when the
answer is no). The schemas are written in draft 2020-12; the fast one gets
the same text in draft-07 spelling ($defs -> definitions).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from imager.errors import UsageError

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "certificates" / "schema"
SCHEMAS = {
    "imager/drive-record/1": "drive-record.schema.json",
    "imager/donation-record/1": "donation-record.schema.json",
    "imager/withdrawal-record/1": "withdrawal-record.schema.json",
}


@cache
def _registry() -> tuple[Registry, dict[str, dict[str, Any]]]:
    loaded = {sid: json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
              for sid, name in SCHEMAS.items()}
    registry = Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in loaded.values())
    return registry, loaded


@cache
def validator(schema_id: str) -> Draft202012Validator:
    registry, loaded = _registry()
    Draft202012Validator.check_schema(loaded[schema_id])
    return Draft202012Validator(loaded[schema_id], registry=registry)


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(record)"


def _draft7(schema: dict[str, Any], embed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`schema` in draft-07 spelling, the schemas it refers to (`embed`, by $id)
    copied under definitions/<n> and the references rewritten to point there."""
    text = json.dumps(schema).replace('"$defs"', '"definitions"').replace(
        "#/$defs/", "#/definitions/")
    defs = {}
    for n, (uri, other) in enumerate(embed.items()):
        inner = json.dumps(other).replace('"$defs"', '"definitions"').replace(
            '"#/$defs/', f'"#/definitions/ext{n}/definitions/').replace(
            '"#/properties/', f'"#/definitions/ext{n}/properties/')
        defs[f"ext{n}"] = json.loads(inner)
        text = text.replace(f'"{uri}#/$defs/', f'"#/definitions/ext{n}/definitions/').replace(
            f'"{uri}#/definitions/', f'"#/definitions/ext{n}/definitions/').replace(
            f'"{uri}#/', f'"#/definitions/ext{n}/')
    out: dict[str, Any] = json.loads(text)
    out.setdefault("definitions", {}).update(defs)
    out["$schema"] = "http://json-schema.org/draft-07/schema#"
    return out


@cache
def fast_validator(schema_id: str) -> Callable[[Any], Any]:
    _, loaded = _registry()
    me = loaded[schema_id]
    others = {s["$id"]: s for sid, s in loaded.items() if sid != schema_id
              and s["$id"] in json.dumps(me)}
    return fastjsonschema.compile(_draft7(me, others))


def problems(record: Any) -> list[str]:
    """Every schema violation of `record`, each as `field: what is wrong`."""
    schema_id = record.get("schema") if isinstance(record, dict) else None
    if schema_id not in SCHEMAS:
        return [f"schema: unknown record schema {schema_id!r}; known: {', '.join(SCHEMAS)}"]
    try:
        fast_validator(schema_id)(record)
        return []
    except fastjsonschema.JsonSchemaException:
        pass
    v = validator(schema_id)
    errors = sorted(v.iter_errors(record), key=lambda e: list(e.absolute_path))
    out = []
    for err in errors:
        leaf = best_match([err]) if err.context else err
        out.append(f"{_where(leaf.absolute_path)}: {leaf.message}")
    return out


def check(record: dict[str, Any]) -> None:
    """Raise UsageError listing every problem when `record` does not match its schema."""
    found = problems(record)
    if found:
        raise UsageError(f"enregistrement refusé / record refused ({record.get('id', '?')}): "
                         + "; ".join(found) + " — see certificates/schema/ for the fields")
