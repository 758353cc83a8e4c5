"""A station's push, checked whole before anything of it is stored.

Who (`Receiver.authenticate`): the request's proof (imager.protocol.proof, scheme
PUSH_SCHEME, a nonce never seen within the window) by the Ed25519 key of the
certificate the CHAIN header carries first, that certificate chaining to the network
CA the portal is configured with (`chain.validate_chain`, through `Trust`). The
station is then known by its key's fingerprint: the signer its documents and its
ledger name. A station whose certificate a network CA did not issue, or another
CA, is refused (403) before its body is read.

What (`Receiver.push`), refused whole (`Refused`, nothing stored) when one thing is
wrong:
- a ledger batch: its signed head (imager/ledger-head/1) is signed by this station;
  a head whose seq is lower than the one stored goes backwards, a head or an entry
  at a known seq with another hash forks; the new entries follow the stored head
  with no gap, every one signed by this station, and the chain from entry 1 to the
  new head is verified again (`ledger.verify_chain`) and ends at the signed head;
- each new entry's files: the signed JSON hashes as the entry says, verifies
  against the network CA (`verify.check_signed`: signature, chain, schema) with
  this station's key, and sits at its entry's position (`verify.check_ledger`); the
  PDF hashes as the entry says, its PAdES signature verifies and carries that very
  JSON; a donation certificate's CSV hashes as its record says;
- donations and their drives' states: well-formed (imager.protocol.push), stored as
  this station's (they replace what it sent before).

Several stations push to one portal; each push is serialised per station (a row
lock on PostgreSQL, the write lock on SQLite). Every push, stored or refused, is
logged (portal_pushes) with why.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imager.certify.canonical import sha256_hex
from imager.certify.chain import subject
from imager.certify.ledger import ZERO_HASH, read_signed_head, verify_chain
from imager.certify.pades import verify_pdf
from imager.certify.public import public_fields
from imager.certify.signing import Checks, Trust, VerificationFailed
from imager.certify.verify import LedgerSource, check_ledger, check_signed
from imager.portal import models as m
from imager.portal.db import PortalDb
from imager.protocol.events import describe_errors
from imager.protocol.proof import PUSH_SCHEME, BadProof, Proof, Replays, key_id, public_hex
from imager.protocol.push import CHAIN, DonationState, Files, Push, digest, read_chain
from imager.store.db import utcnow

log = logging.getLogger(__name__)


class Refused(Exception):
    """A push the portal does not store: `reason` (a word the station can act on),
    the message (what is wrong and what to do), the HTTP status."""

    def __init__(self, reason: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.reason, self.status = reason, status


@dataclass(frozen=True)
class Caller:
    """An authenticated station."""

    key: str                   # sha256:<SPKI hash> of its station key
    name: str                  # its certificate's subject
    certificates: tuple[str, ...]


@dataclass(frozen=True)
class Checked:
    """One new entry's files, verified."""

    entry: dict[str, Any]
    json_text: str
    pdf: bytes | None
    csv: bytes | None
    record: dict[str, Any]


@dataclass
class Stored:
    """What a push added (what was there already is not counted)."""

    entries: int = 0
    documents: int = 0
    donations: int = 0
    head: dict[str, Any] = field(default_factory=lambda: {"seq": 0, "hash": ZERO_HASH})

    def to_dict(self) -> dict[str, Any]:
        return {"head": self.head, "stored": {"entries": self.entries,
                                              "documents": self.documents,
                                              "donations": self.donations}}


# --------------------------------------------------------------------------
# The ledger: pure checks


def new_entries(stored: Sequence[Mapping[str, Any]], pushed: Sequence[Mapping[str, Any]],
                head: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    """The entries of `pushed` the portal does not hold yet, once the batch and its
    signed `head` are found to extend `stored` (the station's ledger as the portal
    holds it, verified, from seq 1): Refused saying how they do not."""
    known = len(stored)
    seq, hash_ = head["seq"], head["hash"]
    if seq < known:
        raise Refused("backwards", f"le registre recule : la tête signée n° {seq} est avant "
                      f"celle que le portail garde (n° {known}) / the ledger goes backwards: "
                      f"the signed head seq {seq} is below the one the portal holds (seq "
                      f"{known}); ask the portal's state and push from there")
    at_seq = stored[seq - 1]["hash"] if 0 < seq <= known else ZERO_HASH if seq == 0 else None
    if at_seq is not None and at_seq != hash_:
        raise Refused("fork", f"registre divergent : la tête signée n° {seq} n'a pas "
                      f"l'empreinte que le portail garde / the ledger forks: the signed head "
                      f"seq {seq} has hash {hash_[:16]}…, the portal holds {at_seq[:16]}… "
                      "for that seq (a ledger rewritten or restarted on this station)")
    fresh = []
    for entry in pushed:
        number = entry.get("seq")
        if isinstance(number, int) and 0 < number <= known:
            if dict(entry) != dict(stored[number - 1]):
                raise Refused("fork", f"registre divergent à l'entrée n° {number} : ce n'est "
                              f"pas celle que le portail garde / the ledger forks at seq "
                              f"{number}: another entry than the one the portal holds")
            continue
        fresh.append(dict(entry))
    numbers = [e.get("seq") for e in fresh]
    if numbers != list(range(known + 1, seq + 1)):
        raise Refused("gap", f"les entrées envoyées ne mènent pas de la tête gardée (n° "
                      f"{known}) à la tête signée (n° {seq}) / the entries sent do not lead "
                      f"from the held head (seq {known}) to the signed head (seq {seq}): "
                      f"got seqs {numbers[:5]}{'…' if len(numbers) > 5 else ''}")
    problems = verify_chain([*stored, *fresh])
    if problems:
        raise Refused("chain", "registre rompu / broken ledger: "
                      + "; ".join(map(str, problems[:5])))
    if fresh and fresh[-1]["hash"] != hash_:
        raise Refused("fork", f"la tête signée n'est pas la dernière entrée envoyée / the "
                      f"signed head is not the last entry sent (seq {seq})")
    others = sorted({e["signer"] for e in fresh} - {key})
    if others:
        raise Refused("other-station", f"des entrées sont signées par une autre clé que "
                      f"celle de cette station / entries are signed by another key than this "
                      f"station's ({key}): {', '.join(others)}", 403)
    return fresh


# --------------------------------------------------------------------------
# Documents: each file verified


def _bytes(text: str | None, what: str, doc_id: str) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise Refused("document", f"{doc_id}: {what} n'est pas du base64 / is not base64 "
                      f"({exc})", 422) from exc


def check_files(entry: Mapping[str, Any], files: Files, trust: Trust, station: Caller
                ) -> Checked:
    """The files of the new ledger `entry`, each verified (see the module)."""
    doc_id = entry["doc_id"]
    data = files.signed.encode("utf-8")
    pdf, csv = _bytes(files.pdf, "pdf", doc_id), _bytes(files.csv, "csv", doc_id)
    checks = Checks()
    try:
        if sha256_hex(data) != entry["json_sha256"]:
            raise checks.fail("le JSON n'est pas celui que le registre inscrit / the JSON is "
                              "not the file the ledger recorded")
        record, signer = check_signed(data, trust, checks)
        if signer != station.key:
            raise Refused("other-station", f"{doc_id} est signé par une autre station / is "
                          f"signed by another station ({signer}), not by {station.key}: a "
                          "station pushes its own documents only", 403)
        if record["id"] != doc_id or record["kind"] != entry["kind"]:
            raise checks.fail(f"l'entrée nomme {entry['kind']} {doc_id}, le fichier "
                              f"{record['kind']} {record['id']} / the entry and the file "
                              "name different documents")
        source = LedgerSource({doc_id: dict(entry)}, f"registre de / ledger of {station.name}",
                              station.key)
        check_ledger(record, entry["json_sha256"], entry["pdf_sha256"], source, checks,
                     signer=station.key)
        _check_pdf(entry, pdf, data, trust, checks)
        _check_csv(record, csv, checks)
    except VerificationFailed as exc:
        raise Refused("document", f"{doc_id} : {exc}", 422) from exc
    return Checked(dict(entry), files.signed, pdf, csv, record)


def _check_pdf(entry: Mapping[str, Any], pdf: bytes | None, data: bytes, trust: Trust,
               checks: Checks) -> None:
    if entry["pdf_sha256"] is None:
        if pdf is not None:
            raise checks.fail("un PDF est joint mais le registre n'en inscrit pas / a PDF is "
                              "sent but the ledger records none")
        return
    if pdf is None or sha256_hex(pdf) != entry["pdf_sha256"]:
        raise checks.fail("le PDF manque ou n'est pas celui que le registre inscrit / the PDF "
                          "is missing or not the file the ledger recorded")
    carried = [v for k, v in verify_pdf(pdf, trust, checks).items() if k.endswith(".json")]
    if carried != [data]:
        raise checks.fail("le PDF ne porte pas ce JSON signé / the PDF does not carry this "
                          "signed JSON")


def _check_csv(record: Mapping[str, Any], csv: bytes | None, checks: Checks) -> None:
    wanted = record.get("csv_sha256") if record["kind"] == "donation" else None
    if wanted is None and csv is None:
        return
    if wanted is None or csv is None or sha256_hex(csv) != wanted:
        raise checks.fail("le CSV manque ou n'est pas celui que le certificat de don signe / "
                          "the CSV is missing or not the one the donation certificate signed")


# --------------------------------------------------------------------------
# The receiver


class Receiver:
    """Checks and stores the pushes of the network's stations."""

    def __init__(self, db: PortalDb, trust: Trust) -> None:
        self.db, self.trust = db, trust
        self.replays = Replays()

    def authenticate(self, headers: Mapping[str, str], method: str, target: str,
                     body: bytes) -> Caller:
        """The station that signed this request (Refused 401/403 otherwise)."""
        try:
            proof = Proof.read(dict(headers))
            pems = read_chain(headers.get(CHAIN.lower()))
        except (BadProof, ValueError) as exc:
            raise Refused("unsigned", str(exc), 401) from exc
        try:
            public, fingerprint, _ = self.trust.signer_key(pems)
        except VerificationFailed as exc:
            raise Refused("not-in-network", f"station hors du réseau / not a station of the "
                          f"network: {exc}", 403) from exc
        try:
            if proof.key_id != key_id(public_hex(public)):
                raise BadProof("the proof is signed by another key than the certificate's")
            proof.check(public_hex(public), method, target, body, scheme=PUSH_SCHEME)
            self.replays.check(proof)
        except BadProof as exc:
            raise Refused("unsigned", str(exc), 401) from exc
        name = subject(x509.load_pem_x509_certificate(pems[0].encode("ascii")))
        return Caller(fingerprint, name, pems)

    def state(self, caller: Caller) -> dict[str, Any]:
        """What the portal holds of `caller`: its head, its donations' digests."""
        with self.db.session(readonly=True) as s:
            row = s.scalar(select(m.Station).where(m.Station.key == caller.key))
            donations = {} if row is None else dict(s.execute(
                select(m.Donation.reference, m.Donation.digest)
                .where(m.Donation.station_id == row.id)).tuples().all())
            head = {"seq": row.head_seq, "hash": row.head_hash} if row else \
                {"seq": 0, "hash": ZERO_HASH}
        return {"station": caller.key, "known": row is not None, "head": head,
                "donations": donations}

    def push(self, caller: Caller, body: bytes, address: str | None = None) -> Stored:
        """Check and store `body` (a Push) from `caller`; Refused (logged) otherwise."""
        try:
            stored = self._push(caller, body)
        except Refused as exc:
            self._log(caller.key, address, "refused", exc.reason, str(exc))
            raise
        self._log(caller.key, address, "stored", None, None, stored)
        return stored

    def _push(self, caller: Caller, body: bytes) -> Stored:
        try:
            push = Push.model_validate_json(body)
        except ValidationError as exc:
            raise Refused("format", f"envoi mal formé / malformed push: "
                          f"{describe_errors(exc.errors(), within='push')}", 422) from exc
        head, checked, entries = None, {}, []
        if push.ledger is not None:
            head = self._signed_head(push.ledger.head, caller)
            entries = [e.model_dump() for e in push.ledger.entries]
            by_id = {e["doc_id"]: e for e in entries}
            unexpected = sorted(set(push.documents) - set(by_id))
            if unexpected:
                raise Refused("document", f"fichiers sans entrée dans le lot / files without an "
                              f"entry in the batch: {', '.join(unexpected[:5])}", 422)
            checked = {doc_id: check_files(by_id[doc_id], files, self.trust, caller)
                       for doc_id, files in push.documents.items()}
        elif push.documents:
            raise Refused("document", "des fichiers sans registre / files without ledger "
                          "entries: send them with their entries and head", 422)
        try:
            with self.db.session() as s:
                station = self._station(s, caller)
                stored = Stored()
                if push.ledger is not None and head is not None:
                    self._ledger(s, station, entries, push.ledger.head, head, checked, stored)
                stored.donations = self._donations(s, station, push.donations)
                station.last_push_at = utcnow()
                stored.head = {"seq": station.head_seq, "hash": station.head_hash}
                return stored
        except IntegrityError as exc:      # two first pushes of one station at once
            raise Refused("busy", "envoi concurrent, réessayez / a concurrent push, try "
                          "again", 409) from exc

    def _signed_head(self, text: str, caller: Caller) -> dict[str, Any]:
        try:
            head, signer = read_signed_head(text.encode("utf-8"), self.trust, Checks())
        except VerificationFailed as exc:
            raise Refused("head", f"tête signée refusée / signed head refused: {exc}",
                          422) from exc
        if signer != caller.key:
            raise Refused("other-station", f"la tête est signée par une autre station / the "
                          f"head is signed by another station ({signer})", 403)
        return head

    def _station(self, s: Session, caller: Caller) -> m.Station:
        """The caller's row, locked until the end of the transaction (made at first)."""
        query = select(m.Station).where(m.Station.key == caller.key)
        if s.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        row = s.scalar(query)
        if row is None:
            row = m.Station(key=caller.key, name=caller.name, first_seen_at=utcnow(),
                            certificates="".join(caller.certificates), head_seq=0,
                            head_hash=ZERO_HASH)
            s.add(row)
            s.flush()
        row.name, row.certificates = caller.name, "".join(caller.certificates)
        return row

    def _ledger(self, s: Session, station: m.Station, pushed: list[dict[str, Any]],
                head_text: str, head: dict[str, Any], checked: dict[str, Checked],
                stored: Stored) -> None:
        rows = s.scalars(select(m.LedgerEntry).where(m.LedgerEntry.station_id == station.id)
                         .order_by(m.LedgerEntry.seq))
        fresh = new_entries([r.to_dict() for r in rows], pushed, head, station.key)
        missing = [e["doc_id"] for e in fresh if e["doc_id"] not in checked]
        if missing:
            raise Refused("document", f"fichiers absents pour les entrées / files missing for "
                          f"the entries: {', '.join(missing[:5])}", 422)
        now = utcnow()
        for entry in fresh:
            s.add(m.LedgerEntry(station_id=station.id, **entry))
            done = checked[entry["doc_id"]]
            record = done.record
            s.add(m.Document(
                station_id=station.id, id=entry["doc_id"], kind=record["kind"],
                issued_at=record["issued_at"], json_text=done.json_text, pdf=done.pdf,
                csv=done.csv, public=public_fields(record), received_at=now,
                donation=(record.get("donation") or {}).get("reference")))
        stored.entries = stored.documents = len(fresh)
        if head["seq"] > station.head_seq:
            station.head_seq, station.head_hash = head["seq"], head["hash"]
            station.head_signed = head_text

    def _donations(self, s: Session, station: m.Station,
                   donations: Sequence[DonationState]) -> int:
        changed = 0
        for state in donations:
            changed += _donation(s, station, state)
        return changed

    def _log(self, key: str | None, address: str | None, outcome: str, reason: str | None,
             detail: str | None, stored: Stored | None = None) -> None:
        done = stored or Stored()
        with self.db.session() as s:
            s.add(m.PushLog(at=utcnow(), station_key=key, address=address, outcome=outcome,
                            reason=reason, detail=detail, entries=done.entries,
                            documents=done.documents, donations=done.donations))
        if outcome == "refused":
            log.warning("push refused (%s) from %s: %s", reason, key, detail)


def _donation(s: Session, station: m.Station, state: DonationState) -> int:
    """Store one donation's state as `station` sent it; 1 if it changed."""
    sent = digest(state)
    row = s.scalar(select(m.Donation).where(m.Donation.station_id == station.id,
                                            m.Donation.reference == state.reference))
    if row is not None and row.digest == sent:
        return 0
    now = utcnow()
    if row is None:
        row = m.Donation(station_id=station.id, reference=state.reference)
        s.add(row)
    row.donor_ref, row.donor_kind = state.donor.ref, state.donor.kind
    row.donor_name, row.donor_siret = state.donor.name, state.donor.siret
    row.received_on, row.intake_site = state.received_on, state.intake_site
    row.documents, row.digest, row.updated_at = list(state.documents), sent, now
    s.flush()
    drives = {d.identity: d for d in s.scalars(select(m.Drive).where(
        m.Drive.station_id == station.id,
        m.Drive.identity.in_([d.identity for d in state.drives])))}
    for drive in state.drives:
        found = drives.get(drive.identity)
        if found is None:
            found = m.Drive(station_id=station.id, identity=drive.identity)
            s.add(found)
        found.donation_id, found.model, found.serial = row.id, drive.model, drive.serial
        found.state, found.documents, found.updated_at = drive.state, list(drive.documents), now
        found.machine_model, found.machine_serial = drive.machine_model, drive.machine_serial
    return 1
