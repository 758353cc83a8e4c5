"""The public verification, answered from what the stations pushed: the same
questions and answers as a station's page (imager.certify.public), for every
workshop of the network at once.

- `look_up(doc_id, sha256)`: the id and the hash (of the JSON or of the PDF) must
  match one pushed ledger entry together, else None: one query that asks for both,
  so an unknown id and a known id with another hash find nothing alike. That query
  reads the ledger only (the entry, and its withdrawal's if any); the stored signed
  JSON is read and verified again against the network CA (signature, chain,
  schema) before anything is said of it, then its public fields are kept by the
  file's hash (the entry's) for AGAIN seconds. The withdrawal is the ledger's
  (`withdrawal.document_status`: the withdrawal record's reason and date).
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

from sqlalchemy import Connection, Engine, Select, bindparam, create_engine, or_, select
from sqlalchemy.exc import DBAPIError
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
CACHE = 50_000        # documents whose public fields are kept (a few hundred bytes each)
AGAIN = 3600.0        # seconds before a kept verdict is checked again (dates of the chain)
Public = dict[str, Any]


class PublicLookup:
    """The portal's answers to the public verification page."""

    def __init__(self, db: PortalDb, trust: Trust) -> None:
        self.db, self.trust = db, trust
        self.engine = _engine(db)
        self._kept: dict[str, tuple[float, Public | None, bytes | None]] = {}  # by sha256
        self._lock = threading.Lock()

    def look_up(self, doc_id: str, sha256: str) -> Answer | None:
        """The answer for the id and hash of a QR code; None when they do not match a
        pushed ledger entry together."""
        doc_id, sha256 = doc_id.strip(), sha256.strip().lower()
        if not DOC_ID.fullmatch(doc_id) or len(sha256) != 64 or not set(sha256) <= _HEX:
            return None
        asked = {"doc_id": doc_id, "sha256": sha256, "withdrawal": withdrawal_id(doc_id)}
        for attempt in (1, 2):
            try:
                with self.engine.connect() as conn:
                    return self._answer(conn, doc_id, sha256, asked)
            except DBAPIError as exc:     # a connection the server dropped: once more
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        return None

    def _answer(self, conn: Connection, doc_id: str, sha256: str,
                asked: dict[str, str]) -> Answer | None:
        row = conn.execute(_FIND, asked).first()
        if row is None:
            return None
        found = row._mapping
        station = found["station_id"]
        entry = {name: found[f"e_{name}"] for name in FIELDS}
        public = self._verified(conn, station, entry)[0]
        entries, files = {doc_id: entry}, {}
        if found["w_seq"] is not None:
            gone = {name: found[f"w_{name}"] for name in FIELDS}
            entries[gone["doc_id"]] = gone
            files[gone["doc_id"]] = self._verified(conn, station, gone)[1] or b""
        status = document_status(doc_id, sha256, entries, files)
        if status.state == "unknown" or public is None:
            return Answer("unconfirmed")       # what the portal stored does not verify
        if status.withdrawal is not None:
            return Answer("withdrawn", public,
                          {"at": status.withdrawal.at, "reason": status.withdrawal.reason or ""})
        return Answer("genuine", public)

    def _verified(self, conn: Connection, station: int, entry: dict[str, Any]
                  ) -> tuple[Public | None, bytes | None]:
        """The public fields of the signed file of ledger `entry` (None: it is not the
        file its entry records, or it does not verify), and a withdrawal record's
        bytes (the reason is in them); kept by the file's hash."""
        expected, now = entry["json_sha256"], time.monotonic()
        with self._lock:
            kept = self._kept.get(expected)
        if kept is not None and now - kept[0] < AGAIN:
            return kept[1], kept[2]
        text = conn.execute(_FILE, {"station": station, "doc_id": entry["doc_id"]}).scalar()
        data = str(text or "").encode("utf-8")
        public: Public | None = None
        if sha256_hex(data) == expected:
            try:
                public = public_fields(check_signed(data, self.trust, Checks())[0])
            except VerificationFailed:
                public = None
        withdrawal = public is not None and public.get("kind") == "withdrawal"
        kept = (now, public, data if withdrawal else None)
        with self._lock:
            if len(self._kept) >= CACHE:
                self._kept.clear()
            self._kept[expected] = kept
        return kept[1], kept[2]

    def close(self) -> None:
        if self.engine is not self.db.readonly_engine:
            self.engine.dispose()

    def check_upload(self, data: bytes) -> Answer:
        """The answer for a file someone sent: a PDF (by its first bytes) or a signed
        JSON record (a donation's CSV is checked with its JSON, not alone)."""
        name = Path("upload.pdf" if data.startswith(b"%PDF") else "upload.json")
        verdict = verify_data(data, name, self.trust)
        if not verdict.ok or verdict.record is None:
            return Answer("not_genuine")
        found = self.look_up(str(verdict.record["id"]), sha256_hex(data))
        return found or Answer("signed", public_fields(verdict.record))


def _engine(db: PortalDb) -> Engine:
    """The lookups' connections. On PostgreSQL a pool of their own, in autocommit (a
    lookup is one SELECT: no BEGIN and ROLLBACK around it), that does not ping the
    server before each query (with those, half a lookup's time): a connection the
    server dropped fails one query, asked again on a new connection (`look_up`)."""
    if db.engine.dialect.name != "postgresql":
        return db.readonly_engine
    return create_engine(db.engine.url, pool_size=8, max_overflow=16, pool_recycle=900,
                         isolation_level="AUTOCOMMIT")


def _find() -> Select[Any]:
    """One query for a QR code's id and hash: its ledger entry, and its withdrawal's
    entry if any (same station)."""
    entry, gone = aliased(m.LedgerEntry), aliased(m.LedgerEntry)
    columns = [getattr(entry, n).label(f"e_{n}") for n in FIELDS] \
        + [getattr(gone, n).label(f"w_{n}") for n in FIELDS]
    return (select(entry.station_id, *columns).select_from(entry)
            .outerjoin(gone, (gone.station_id == entry.station_id)
                       & (gone.doc_id == bindparam("withdrawal")))
            .where(entry.doc_id == bindparam("doc_id"),
                   or_(entry.json_sha256 == bindparam("sha256"),
                       entry.pdf_sha256 == bindparam("sha256")))
            .limit(1))


_FIND = _find()
_FILE = select(m.Document.json_text).where(m.Document.station_id == bindparam("station"),
                                           m.Document.id == bindparam("doc_id"))
