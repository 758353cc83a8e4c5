"""The public verification, answered from what the stations pushed: the same
questions and answers as a station's page (imager.certify.public), for every
workshop of the network at once.

- `look_up(doc_id, sha256)`: the id and the hash (of the JSON or of the PDF) must
  match one pushed ledger entry together, else None: one query that asks for both,
  so an unknown id and a known id with another hash find nothing alike. The stored
  signed JSON is verified again against the network CA (signature, chain, schema)
  before anything is said, once per file (the verdict is kept by the file's hash,
  which must be the ledger entry's); the withdrawal is the ledger's
  (`withdrawal.document_status`, the withdrawal record's reason and date).
- `check_upload(data)`: a PDF or signed JSON file someone holds, verified like
  `imager cert verify` does against the network CA, then looked up as above by its
  id and its own hash: a good signature the portal holds no entry for is "signed"
  (its workshop has not sent it yet).

Only `public_fields` are shown: never a serial number, a private donor's name, a
technician or a witness.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Select, bindparam, or_, select
from sqlalchemy.orm import aliased

from imager.certify.canonical import sha256_hex
from imager.certify.ledger import DOC_ID, FIELDS
from imager.certify.public import Answer, public_fields
from imager.certify.signing import Checks, Trust, VerificationFailed
from imager.certify.verify import check_signed, verify_data
from imager.certify.withdrawal import document_status, withdrawal_id
from imager.portal import models as m
from imager.portal.db import PortalDb

_HEX = frozenset("0123456789abcdef")
CACHE = 20_000        # verified files kept (a few kB each)
AGAIN = 3600.0        # seconds before a kept verdict is checked again (dates of the chain)


class PublicLookup:
    """The portal's answers to the public verification page."""

    def __init__(self, db: PortalDb, trust: Trust) -> None:
        self.db, self.trust = db, trust
        self._verified: dict[str, tuple[float, dict[str, Any]]] = {}   # by file sha256
        self._lock = threading.Lock()

    def look_up(self, doc_id: str, sha256: str) -> Answer | None:
        """The answer for the id and hash of a QR code; None when they do not match a
        pushed ledger entry together."""
        doc_id, sha256 = doc_id.strip(), sha256.strip().lower()
        if not DOC_ID.fullmatch(doc_id) or len(sha256) != 64 or not set(sha256) <= _HEX:
            return None
        with self.db.readonly_engine.connect() as conn:
            row = conn.execute(_FIND, {"doc_id": doc_id, "sha256": sha256,
                                       "withdrawal": withdrawal_id(doc_id)}).first()
        if row is None:
            return None
        found = row._mapping
        entry = {name: found[f"e_{name}"] for name in FIELDS}
        text = found["e_json"]
        entries, files = {doc_id: entry}, {}
        if found["w_seq"] is not None:
            gone = {name: found[f"w_{name}"] for name in FIELDS}
            entries[gone["doc_id"]] = gone
            files[gone["doc_id"]] = str(found["w_json"]).encode("utf-8")
        status = document_status(doc_id, sha256, entries, files)
        record = self._record(text.encode("utf-8"), entry["json_sha256"])
        if status.state == "unknown" or record is None:
            return Answer("unconfirmed")       # what the portal stored does not verify
        if status.withdrawal is not None:
            return Answer("withdrawn", public_fields(record),
                          {"at": status.withdrawal.at, "reason": status.withdrawal.reason or ""})
        return Answer("genuine", public_fields(record))

    def check_upload(self, data: bytes) -> Answer:
        """The answer for a file someone sent: a PDF (by its first bytes) or a signed
        JSON record (a donation's CSV is checked with its JSON, not alone)."""
        name = Path("upload.pdf" if data.startswith(b"%PDF") else "upload.json")
        verdict = verify_data(data, name, self.trust)
        if not verdict.ok or verdict.record is None:
            return Answer("not_genuine")
        found = self.look_up(str(verdict.record["id"]), sha256_hex(data))
        return found or Answer("signed", public_fields(verdict.record))

    def _record(self, data: bytes, expected: str) -> dict[str, Any] | None:
        """The record of a stored signed file, verified (kept by its hash); None when
        the file is not the one its entry records, or does not verify."""
        sha = sha256_hex(data)
        if sha != expected:
            return None
        now = time.monotonic()
        with self._lock:
            kept = self._verified.get(sha)
        if kept is not None and now - kept[0] < AGAIN:
            return kept[1]
        try:
            record = check_signed(data, self.trust, Checks())[0]
        except VerificationFailed:
            return None
        with self._lock:
            if len(self._verified) >= CACHE:
                self._verified.clear()
            self._verified[sha] = (now, record)
        return record


def _find() -> Select[Any]:
    """One query for a QR code's id and hash: its ledger entry and signed file, and its
    withdrawal's, if any (same station)."""
    entry, doc = aliased(m.LedgerEntry), aliased(m.Document)
    gone, gone_doc = aliased(m.LedgerEntry), aliased(m.Document)
    same = {"entry": (doc, entry), "withdrawal": (gone_doc, gone)}
    on = {k: (d.station_id == e.station_id) & (d.id == e.doc_id) for k, (d, e) in same.items()}
    columns = [getattr(entry, n).label(f"e_{n}") for n in FIELDS] \
        + [getattr(gone, n).label(f"w_{n}") for n in FIELDS] \
        + [doc.json_text.label("e_json"), gone_doc.json_text.label("w_json")]
    return (select(*columns).select_from(entry).join(doc, on["entry"])
            .outerjoin(gone, (gone.station_id == entry.station_id)
                       & (gone.doc_id == bindparam("withdrawal")))
            .outerjoin(gone_doc, on["withdrawal"])
            .where(entry.doc_id == bindparam("doc_id"),
                   or_(entry.json_sha256 == bindparam("sha256"),
                       entry.pdf_sha256 == bindparam("sha256")))
            .limit(1))


_FIND = _find()
