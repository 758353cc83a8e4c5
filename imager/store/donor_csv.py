"""Import donors from a CSV file saved by a spreadsheet.

Accepted: UTF-8 with or without BOM; `;`, `,` or tab as separator (chosen
from the header line); column names in French or English, any case, with or
without accents (``nom``/``name``, ``type``/``kind``, ``contact``,
``courriel``/``email``, ``téléphone``/``phone``, ``adresse``/``address``,
``siret``); bilingual headers such as ``Nom / Name`` too. Unknown columns are
ignored and reported.

`parse_donors_csv` is pure: it returns the valid rows and, for every bad line,
its number, the column and how to fix it. The import is all-or-nothing: one
bad line and nothing is imported. Re-importing a file does not duplicate
donors: a donor is matched on kind + name (case-insensitive), and only its
empty fields are completed from the file.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.errors import UsageError
from imager.store.db import utcnow
from imager.store.models import Donor
from imager.store.people import DONOR_FIELD_CHECKS, name_key

FIELDS = ("kind", "name", "contact_name", "email", "phone", "address", "siret")
REQUIRED = ("name", "kind")
MAX_LISTED_ERRORS = 20

HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "name": ("nom", "name", "nom du donateur", "donateur", "donor", "donor name",
             "raison sociale", "denomination", "structure", "organisme"),
    "kind": ("type", "kind", "type de donateur", "donor type", "donor kind", "categorie",
             "category", "nature"),
    "contact_name": ("contact", "contact name", "nom du contact", "interlocuteur", "referent",
                     "personne a contacter"),
    "email": ("email", "e mail", "mail", "courriel", "mel", "adresse email", "adresse e mail",
              "adresse mail", "adresse courriel", "email address"),
    "phone": ("telephone", "tel", "phone", "phone number", "portable", "mobile",
              "numero de telephone", "no de telephone", "n de telephone"),
    "address": ("adresse", "address", "adresse postale", "postal address"),
    "siret": ("siret", "n siret", "no siret", "numero siret", "num siret", "siret number"),
}
_ALIAS_TO_FIELD = {alias: f for f, aliases in HEADER_ALIASES.items() for alias in aliases}
_COLUMN_HELP = "nom;type;contact;courriel;téléphone;adresse;siret"
_COLUMN_HELP_EN = "name,kind,contact,email,phone,address,siret"


def _msg(fr: str, en: str) -> str:
    return f"{fr} / {en}"


@dataclass(frozen=True)
class LineError:
    """What is wrong on one line of the file (line 1 is the header)."""

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        if self.column is None:
            where = f"ligne {self.line} / line {self.line}"
        else:
            where = (f"ligne {self.line}, colonne « {self.column} » / "
                     f"line {self.line}, column '{self.column}'")
        return f"{where} : {self.message}"


@dataclass(frozen=True)
class DonorRow:
    """One valid donor line, normalised (kind canonical, text NFC)."""

    line: int
    kind: str
    name: str
    contact_name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    siret: str | None = None

    def fields(self) -> dict[str, str | None]:
        """The donor attributes of this row."""
        return {f: getattr(self, f) for f in FIELDS}


@dataclass
class ParseResult:
    """The rows and errors of a parsed file, and how its columns were read."""

    rows: list[DonorRow] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)
    delimiter: str = ";"
    columns: dict[str, str] = field(default_factory=dict)  # header as written -> field
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class ImportResult:
    """What an import did."""

    created: list[Donor] = field(default_factory=list)
    completed: list[Donor] = field(default_factory=list)
    unchanged: list[Donor] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------
# Decoding


def _save_as_utf8_hint(source: str) -> str:
    return _msg(
        f"« {source} » n'est pas enregistré en UTF-8 : dans Excel, « Enregistrer sous » puis "
        "choisissez le type « CSV UTF-8 (délimité par des virgules) » ; dans LibreOffice, "
        "cochez « Éditer les paramètres du filtre » et choisissez « Unicode (UTF-8) »",
        f"'{source}' is not saved as UTF-8: in Excel use 'Save As' and choose "
        "'CSV UTF-8 (Comma delimited)'; in LibreOffice tick 'Edit filter settings' and "
        "choose 'Unicode (UTF-8)'",
    )


def decode_csv(data: bytes, source: str = "fichier") -> str:
    """The text of a UTF-8 CSV (BOM removed); UsageError for any other encoding."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UsageError(_save_as_utf8_hint(source) + " (UTF-16)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start]
        raise UsageError(
            f"{_save_as_utf8_hint(source)} (ligne {line} : octet 0x{byte:02X} / "
            f"line {line}: byte 0x{byte:02X})"
        ) from exc


# --------------------------------------------------------------------------
# Parsing


def header_field(header: str) -> str | None:
    """The donor field a column header names, or None ("Nom / Name" works too)."""
    for part in [header, *header.split("/")]:
        key = unicodedata.normalize("NFKD", part)
        key = "".join(c for c in key if not unicodedata.combining(c)).casefold()
        key = re.sub(r"\(.*?\)", " ", key)
        key = re.sub(r"[^0-9a-z]+", " ", key).strip()
        if key in _ALIAS_TO_FIELD:
            return _ALIAS_TO_FIELD[key]
    return None


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line
    return ""


def sniff_delimiter(text: str) -> str:
    """The separator whose header split names the most known columns (`;` on a tie)."""
    header = _first_line(text)
    best, best_score = ";", (-1, -1)
    for delimiter in (";", ",", "\t"):
        cells = next(csv.reader([header], delimiter=delimiter), [])
        known = sum(1 for cell in cells if header_field(cell))
        score = (known, len(cells))
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _map_header(cells: list[str], result: ParseResult) -> dict[int, str]:
    """Column index -> field; records header errors in `result`."""
    mapping: dict[int, str] = {}
    seen: dict[str, str] = {}
    for index, cell in enumerate(cells):
        header = cell.strip()
        target = header_field(header) if header else None
        if target is None:
            if header:
                result.ignored_columns.append(header)
            continue
        if target in seen:
            result.errors.append(LineError(1, header, _msg(
                f"colonne en double avec « {seen[target]} » : gardez-en une seule",
                f"duplicate of column '{seen[target]}': keep only one")))
            continue
        seen[target] = header
        mapping[index] = target
        result.columns[header] = target
    for required in REQUIRED:
        if required not in seen:
            result.errors.append(LineError(1, None, _msg(
                f"colonne « {'nom' if required == 'name' else 'type'} » absente : la première "
                f"ligne doit nommer les colonnes, par exemple {_COLUMN_HELP}",
                f"column '{required}' missing: the first line must name the columns, "
                f"e.g. {_COLUMN_HELP_EN}")))
    return mapping


def _parse_line(
    line: int, cells: list[str], mapping: dict[int, str], headers: list[str], delimiter: str
) -> tuple[DonorRow | None, list[LineError]]:
    if len(cells) > len(headers) and any(c.strip() for c in cells[len(headers):]):
        shown = "tabulation" if delimiter == "\t" else delimiter
        return None, [LineError(line, None, _msg(
            f"{len(cells)} valeurs pour {len(headers)} colonnes : une valeur contient "
            f"sans doute « {shown} », entourez-la de guillemets",
            f"{len(cells)} values for {len(headers)} columns: a value probably contains "
            f"'{shown}', put it in double quotes"))]
    values: dict[str, Any] = {}              # each field checked by its DONOR_FIELD_CHECKS
    errors: list[LineError] = []
    for index, target in mapping.items():
        raw = cells[index] if index < len(cells) else ""
        try:
            values[target] = DONOR_FIELD_CHECKS[target](raw)
        except UsageError as exc:
            errors.append(LineError(line, headers[index].strip(), str(exc)))
    if errors:
        return None, errors
    return DonorRow(line=line, **values), []


def parse_donors_csv(text: str) -> ParseResult:
    """Parse the text of a donor CSV: valid rows plus per-line errors (pure)."""
    result = ParseResult(delimiter=sniff_delimiter(text))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=result.delimiter)
    headers: list[str] | None = None
    mapping: dict[int, str] = {}
    first_seen: dict[tuple[str, str], int] = {}
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            result.errors.append(LineError(line, None, _msg(
                f"ligne illisible ({exc}) : vérifiez les guillemets",
                f"unreadable line ({exc}): check the double quotes")))
            break
        if not any(cell.strip() for cell in cells):
            continue
        if headers is None:
            headers, mapping = cells, _map_header(cells, result)
            if result.errors:
                return result
            continue
        row, errors = _parse_line(line, cells, mapping, headers, result.delimiter)
        result.errors.extend(errors)
        if row is not None:
            _add_unique(result, row, first_seen)
    if headers is None:
        result.errors.append(LineError(1, None, _msg(
            f"fichier vide : la première ligne doit nommer les colonnes ({_COLUMN_HELP})",
            f"empty file: the first line must name the columns ({_COLUMN_HELP_EN})")))
    return result


def _add_unique(result: ParseResult, row: DonorRow, first_seen: dict[tuple[str, str], int]) -> None:
    key = (row.kind, name_key(row.name))
    if key in first_seen:
        result.errors.append(LineError(row.line, None, _msg(
            f"« {row.name} » figure déjà ligne {first_seen[key]} : supprimez ou fusionnez "
            "les deux lignes",
            f"'{row.name}' is already on line {first_seen[key]}: delete or merge the two lines")))
        return
    first_seen[key] = row.line
    result.rows.append(row)


def read_donors_csv(path: Path) -> ParseResult:
    """Read, decode and parse a donor CSV file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(_msg(
            f"impossible de lire « {path} » ({exc.strerror}) : vérifiez le chemin",
            f"cannot read '{path}' ({exc.strerror}): check the path")) from exc
    return parse_donors_csv(decode_csv(data, str(path)))


def errors_message(source: str, errors: list[LineError]) -> str:
    """One message listing the errors of a file (at most MAX_LISTED_ERRORS)."""
    count = len(errors)
    head = _msg(
        f"« {source} » : {count} erreur{'s' if count > 1 else ''}, rien n'a été importé ; "
        "corrigez le fichier puis relancez l'import",
        f"'{source}': {count} error{'s' if count > 1 else ''}, nothing was imported; "
        "fix the file and import it again",
    )
    lines = [f"  {error}" for error in errors[:MAX_LISTED_ERRORS]]
    if count > MAX_LISTED_ERRORS:
        more = count - MAX_LISTED_ERRORS
        lines.append(f"  … et {more} autres / and {more} more")
    return "\n".join([head, *lines])


# --------------------------------------------------------------------------
# Importing


def import_donors(session: Session, rows: list[DonorRow]) -> ImportResult:
    """Create the donors of `rows` that do not exist; complete the empty fields of
    those that do (matched on kind + name, case-insensitive)."""
    existing: dict[tuple[str, str], Donor] = {}
    for known in session.scalars(select(Donor).order_by(Donor.id)):
        existing.setdefault((known.kind, name_key(known.name)), known)
    result = ImportResult()
    for row in rows:
        donor = existing.get((row.kind, name_key(row.name)))
        if donor is None:
            donor = Donor(**row.fields(), created_at=utcnow())
            session.add(donor)
            existing[(row.kind, name_key(row.name))] = donor
            result.created.append(donor)
        elif _complete(donor, row):
            result.completed.append(donor)
        else:
            result.unchanged.append(donor)
    session.flush()
    return result


def _complete(donor: Donor, row: DonorRow) -> bool:
    """Fill the empty fields of `donor` from `row`; True if one was filled."""
    changed = False
    for name, value in row.fields().items():
        if value is not None and getattr(donor, name) in (None, ""):
            setattr(donor, name, value)
            changed = True
    return changed


def import_donors_file(session: Session, path: Path) -> ImportResult:
    """Import a donor CSV file, all or nothing: UsageError lists every bad line."""
    parsed = read_donors_csv(path)
    if parsed.errors:
        raise UsageError(errors_message(str(path), parsed.errors))
    result = import_donors(session, parsed.rows)
    result.ignored_columns = list(parsed.ignored_columns)
    return result
