"""Withdrawal of an issued document: a signed record of its own, never an edit.

A document (EFF-, NEF-, DES-, DON-…) is withdrawn by issuing a withdrawal
record `RET-<its id>` (certificates/schema/withdrawal-record.schema.json: what
it withdraws, with the hashes the ledger keeps, why, who decided, when), signed
like every document and appended to the ledger as an entry of kind
"withdrawal". The id is derived from the withdrawn document's, so

- the ledger alone says whether a document was withdrawn, and when (the
  entry's time): a verifier holding a signed export needs no other file;
- the ledger's unique doc_id refuses a second withdrawal of the same document.

Why, and who decided, are in the record; a signed ledger export carries the
records of its withdrawals, each bound to its entry by its sha256.

`withdrawal_of` and `document_status` are pure: they read ledger entries (the
station's ledger or a verified export: the caller checks the chain) and the
withdrawal records' signed files. `cert verify`, the verification page and the
portal say what they answer.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from imager.certify.canonical import sha256_hex
from imager.certify.record import iso

KIND = "withdrawal"
SCHEMA = "imager/withdrawal-record/1"
PREFIX = "RET-"

Entries = Mapping[str, Mapping[str, Any]]     # ledger entries by doc_id


def withdrawal_id(doc_id: str) -> str:
    """The id of the withdrawal record of `doc_id`."""
    return PREFIX + doc_id


def withdrawal_record(withdrawn: Mapping[str, Any], *, issued_at: str, reason: str, by: str,
                      issuer: dict[str, Any], ledger: dict[str, Any],
                      issued: datetime | None = None) -> dict[str, Any]:
    """The record withdrawing the document of ledger entry `withdrawn`, issued at
    `issued_at`, for `reason`, decided by `by`."""
    return {
        "schema": SCHEMA, "kind": KIND, "id": withdrawal_id(withdrawn["doc_id"]),
        "issued_at": iso(issued or datetime.now(UTC)), "issuer": issuer, "ledger": ledger,
        "withdraws": {"id": withdrawn["doc_id"], "kind": withdrawn["kind"],
                      "sha256": withdrawn["json_sha256"],
                      "pdf_sha256": withdrawn["pdf_sha256"], "seq": withdrawn["seq"],
                      "issued_at": issued_at},
        "reason": reason, "decided_by": {"name": by},
    }


def record_problem(record: Mapping[str, Any]) -> str | None:
    """What the schema cannot say is wrong with a withdrawal record (None: nothing)."""
    if record["id"] != withdrawal_id(record["withdraws"]["id"]):
        return (f"l'identifiant {record['id']} ne nomme pas le document retiré "
                f"{record['withdraws']['id']} / the id does not name the withdrawn document "
                f"(expected {withdrawal_id(record['withdraws']['id'])})")
    return None


@dataclass(frozen=True)
class Withdrawal:
    """A withdrawal as the ledger records it; `reason` and `by` come from its record
    (None when the record's file was not available, or is not the one recorded)."""

    id: str            # RET-…
    document: str      # the withdrawn document's id
    seq: int           # the withdrawal's ledger entry
    at: str            # when it was decided (the record's issued_at, else the entry's time)
    reason: str | None
    by: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line, French first, the reason whole."""
        why = f"« {self.reason} »" if self.reason is not None else (
            f"motif non fourni avec ce registre : voir {self.id}.json / reason not given with "
            f"this ledger: see {self.id}.json")
        who = f" — décidé par / decided by {self.by}" if self.by else ""
        return (f"{self.document} retiré le / withdrawn on {self.at} : {why}{who} "
                f"({self.id}, registre n° / ledger entry {self.seq})")


def _record(data: bytes | None, entry: Mapping[str, Any], doc_id: str) -> dict[str, Any] | None:
    """The withdrawal record in the signed file `data`, if it is the one `entry` records
    and withdraws `doc_id` (its hash is in the ledger: no signature check is needed)."""
    from imager.certify import schema  # jsonschema loads slowly: only when there is one
    if data is None or sha256_hex(data) != entry.get("json_sha256"):
        return None
    try:
        document = json.loads(data).get("document")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    if schema.problems(document) or document["kind"] != KIND \
            or document["withdraws"]["id"] != doc_id:
        return None
    return dict(document)


def withdrawal_of(doc_id: str, entries: Entries, files: Mapping[str, bytes]) -> Withdrawal | None:
    """The withdrawal of `doc_id` in `entries` (by doc_id), None if it was not withdrawn;
    `files` holds withdrawal records' signed files by id."""
    rid = withdrawal_id(doc_id)
    entry = entries.get(rid)
    if entry is None or entry.get("kind") != KIND:
        return None
    record = _record(files.get(rid), entry, doc_id)
    if record is None:
        return Withdrawal(rid, doc_id, int(entry["seq"]), str(entry["at"]), None, None)
    return Withdrawal(rid, doc_id, int(entry["seq"]), str(record["issued_at"]),
                      str(record["reason"]), str(record["decided_by"]["name"]))


State = Literal["genuine", "withdrawn", "unknown"]


@dataclass(frozen=True)
class DocumentStatus:
    """What a ledger says of one file of one document."""

    state: State
    doc_id: str
    seq: int | None                    # the document's ledger entry
    withdrawal: Withdrawal | None
    detail: str                        # a sentence, French first

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["withdrawal"] = self.withdrawal.to_dict() if self.withdrawal else None
        return out


def document_status(doc_id: str, sha256: str, entries: Entries,
                    files: Mapping[str, bytes]) -> DocumentStatus:
    """genuine, withdrawn (with why, who and when) or unknown: the document `doc_id`
    whose JSON or PDF file hashes to `sha256`, in ledger `entries` (by doc_id, from a
    chain the caller verified) and the withdrawal records' `files` (by id)."""
    entry = entries.get(doc_id)
    if entry is None:
        return DocumentStatus("unknown", doc_id, None, None,
                              f"{doc_id} n'est pas au registre / is not in the ledger")
    seq = int(entry["seq"])
    if not _same_hash(sha256, entry.get("json_sha256"), entry.get("pdf_sha256")):
        return DocumentStatus("unknown", doc_id, seq, None,
                              f"ce fichier n'est pas celui que le registre garde pour {doc_id} "
                              f"(modifié ?) / this file is not the one the ledger keeps for "
                              f"{doc_id} (altered?)")
    withdrawal = withdrawal_of(doc_id, entries, files)
    if withdrawal is not None:
        return DocumentStatus("withdrawn", doc_id, seq, withdrawal, withdrawal.describe())
    return DocumentStatus("genuine", doc_id, seq, None,
                          f"{doc_id} est au registre (n° {seq}) et n'a pas été retiré / is in "
                          f"the ledger (entry {seq}) and was not withdrawn")


def _same_hash(given: str, *recorded: str | None) -> bool:
    """Whether `given` is one of the `recorded` hashes, compared in constant time (a public
    page asks this of hashes anyone types)."""
    sent = given.encode("utf-8")
    return any([hmac.compare_digest(sent, r.encode("utf-8")) for r in recorded if r])


def withdrawal_files(entries: Iterable[Mapping[str, Any]], documents_dir: Path,
                     ) -> dict[str, bytes]:
    """The signed files of the withdrawals among `entries`, read from `documents_dir`
    (a missing one is left out: `ledger verify` names it)."""
    out = {}
    for entry in entries:
        if entry.get("kind") == KIND:
            try:
                out[str(entry["doc_id"])] = (documents_dir / f"{entry['doc_id']}.json").read_bytes()
            except OSError:
                continue
    return out
