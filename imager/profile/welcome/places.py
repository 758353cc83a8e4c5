"""Digital-mediation places from a CSV in the national open-data schema
(LaMednum `standard-mediation-num`), kept to the network's area.

Every row is checked against the schema file shipped beside this module
(schema/standard-mediation-num.json, read by tableschema.py). A broken row is
reported (its line, the column, why) and skipped: it never stops the import.
A file whose header lacks a required column cannot be read at all: that one
is refused with the fix.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imager.errors import UsageError
from imager.profile.welcome import opening_hours
from imager.profile.welcome.phone import Phone, parse
from imager.profile.welcome.tableschema import TableSchema

if TYPE_CHECKING:
    from _csv import Reader

SCHEMA = Path(__file__).parent / "schema" / "standard-mediation-num.json"


@dataclass(frozen=True)
class Place:
    """A place where someone helps with digital tools, as the page shows it."""

    id: str
    name: str
    commune: str
    postcode: str
    address: str
    complement: str
    phone: Phone | None
    hours: str                      # OSM opening_hours text, as written ("" if none)
    services: tuple[str, ...]

    def hours_lines(self, lang: str = "fr") -> list[str] | None:
        """The hours in plain words, or None: then show `hours` as written."""
        return opening_hours.describe(self.hours, lang) if self.hours else None


@dataclass(frozen=True)
class RowProblem:
    """Why a row (or the header, line 1) was not taken."""

    source: str
    line: int
    field: str
    why: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.field}: {self.why}"


@dataclass(frozen=True)
class PlacesImport:
    """The places kept, the problems met, how many valid rows were outside the area."""

    source: str
    places: tuple[Place, ...]
    problems: tuple[RowProblem, ...]
    outside_area: int


def import_places(path: Path, *, departements: Sequence[str],
                  schema: TableSchema | None = None) -> PlacesImport:
    """The valid places of `path` in the départements `departements` ("05", "2A",
    "974"...). UsageError only when the file cannot be read as such a CSV."""
    schema = schema or TableSchema.from_file(SCHEMA)
    text = _read(path)
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if not header:
        raise UsageError(f"{path}: empty file: expected a header line with the columns of "
                         f"{SCHEMA.name}")
    fatal = [p for p in schema.header_problems(header) if p.startswith("missing")]
    if fatal:
        raise UsageError(f"{path}:1: " + "; ".join(fatal))
    problems = [RowProblem(str(path), 1, "header", p)
                for p in schema.header_problems(header) if not p.startswith("missing")]
    places, outside = _rows(reader, header, schema, str(path), departements, problems)
    return PlacesImport(str(path), tuple(places), tuple(problems), outside)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise UsageError(f"{path} does not exist: export the places as CSV (UTF-8) in the "
                         "standard-mediation-num schema to this path") from exc
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save "
                         "it again as « CSV UTF-8 »") from exc
    except OSError as exc:
        raise UsageError(f"{path} cannot be read: {exc.strerror}") from exc


def _rows(reader: Reader, header: list[str], schema: TableSchema, source: str,
          departements: Sequence[str], problems: list[RowProblem],
          ) -> tuple[list[Place], int]:
    places: list[Place] = []
    outside = 0
    seen: dict[tuple[str, str], int] = {}
    line = reader.line_num
    for values in reader:
        start, line = line + 1, reader.line_num
        if not any(v.strip() for v in values):
            continue
        found = _row_problems(values, header, schema, source, start, seen)
        if found:
            problems += found
            continue
        row = dict(zip(header, values, strict=True))
        if _in_area(row, departements):
            places.append(_place(row))
        else:
            outside += 1
    return places, outside


def _row_problems(values: list[str], header: list[str], schema: TableSchema, source: str,
                  line: int, seen: dict[tuple[str, str], int]) -> list[RowProblem]:
    if len(values) != len(header):
        return [RowProblem(source, line, "row", f"{len(values)} values for {len(header)} "
                           "columns: check the separators and quotes on this line")]
    row = dict(zip(header, values, strict=True))
    found = []
    for name, value in row.items():
        field = schema.field(name)
        why = field.check(value) if field else None
        if why:
            found.append(RowProblem(source, line, name, why))
    for name in schema.unique_fields():
        key = (name, row.get(name, ""))
        if key[1] and key in seen:
            found.append(RowProblem(source, line, name, f"{key[1]!r} is already used on line "
                                    f"{seen[key]}: each place needs its own {name}"))
        seen.setdefault(key, line)
    return found


def _in_area(row: dict[str, str], departements: Sequence[str]) -> bool:
    insee, postcode = row.get("code_insee", ""), row.get("code_postal", "")
    for code in departements:
        if insee and insee.startswith(code):
            return True
        if postcode.startswith("20" if code in ("2A", "2B") else code):
            return True
    return False


def _place(row: dict[str, str]) -> Place:
    return Place(id=row["id"], name=row["nom"].strip(), commune=row["commune"].strip(),
                 postcode=row["code_postal"], address=row["adresse"].strip(),
                 complement=row.get("complement_adresse", "").strip(),
                 phone=_phone(row.get("telephone", "").strip()),
                 hours=row.get("horaires", "").strip(),
                 services=tuple(s for s in row.get("services", "").split("|") if s))


def _phone(value: str) -> Phone | None:
    """The schema's +33/+590... number; a number of overseas France is shown as written."""
    return parse(value) or (Phone(value, value) if value else None)
