"""Issuing documents: build the record, check it, sign it, render and sign the
PDF, file it, and append it to the ledger — all or nothing.

Files go to <data dir>/documents/<id>.json|.pdf (|.csv for a donation); the
registry keeps one `documents` row per issued document, the ledger one entry.
A withdrawal (`Issuer.withdraw`) is issued the same way: a signed record
RET-<id> (JSON only), a `documents` row of kind "withdrawal" whose `line` says
what it withdraws, why, who and when, and a ledger entry of kind "withdrawal".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.certify import schema
from imager.certify.canonical import sha256_hex
from imager.certify.donation import donation_record, drive_line
from imager.certify.identity import load_profile
from imager.certify.keys import station_keys
from imager.certify.ledger import Ledger
from imager.certify.pades import sign_pdf
from imager.certify.parties import issuer_block, parties
from imager.certify.record import (
    DRIVE_KINDS,
    destruction_record,
    erasure_record,
    hidden_areas_check,
    iso,
    record_kind,
)
from imager.certify.signing import check_signing_keys, sign_document
from imager.certify.withdrawal import KIND as WITHDRAWAL
from imager.certify.withdrawal import withdrawal_id, withdrawal_record
from imager.errors import NotFound, UsageError
from imager.host.files import private_dir, write_atomic
from imager.model import EraseReport
from imager.registry import items
from imager.registry.decisions import hidden_areas_acceptance, who_and_why
from imager.registry.items import find_drive, follow_document
from imager.settings import Settings
from imager.store.db import Registry
from imager.store.models import Document, Donation, Drive, Job, LedgerEntry
from imager.store.people import find_donation, find_technician

DOCUMENT_WITHDRAWN = "document_withdrawn"   # the drive event when its document is withdrawn
PDF_REASON = {"erasure": "Certificat d'effacement / Certificate of erasure",
              "non-erasure": "Constat de non-effacement / Record of failed erasure",
              "destruction": "Procès-verbal de destruction / Destruction record",
              "donation": "Certificat de don / Donation certificate"}


@dataclass(frozen=True)
class Issued:
    kind: str
    id: str
    sha256: str                 # of the signed JSON file
    json_path: Path
    pdf_path: Path | None       # None: a withdrawal record, JSON only
    csv_path: Path | None = None
    seq: int = 0
    existing: bool = False      # already issued before: nothing new was written


class Issuer:
    """Issues every kind of document for one station."""

    def __init__(self, settings: Settings, registry: Registry, *,
                 issued: Callable[[Issued], None] | None = None) -> None:
        self.settings, self.registry = settings, registry
        self.issued = issued          # told of every document once it is filed
        self.profile = load_profile(settings)
        self.keys = station_keys(settings, self.profile)
        self.ledger = Ledger(registry)
        self.out = settings.documents_dir

    # -- the one path every document takes --------------------------------

    def _issue(self, build: Callable[[dict[str, Any]], dict[str, Any]],
               files: Callable[[dict[str, Any], bytes, str], dict[str, bytes]],
               row: Callable[[dict[str, Any], str], Document], *,
               inside: Callable[[Session, dict[str, Any]], None] | None = None) -> Issued:
        """`build(ledger)` makes the record; `files(record, signed, sha)` the
        extra files (the unsigned PDF under "pdf", if any, and e.g. "csv");
        `inside(session, record)` checks and writes more under the ledger's lock."""
        check_signing_keys(self.keys)     # no document a verifier would refuse at once
        private_dir(self.out)
        written: list[Path] = []
        try:
            with self.ledger.reserve() as slot:
                record = build({"seq": slot.seq, "prev": slot.prev})
                schema.check(record)
                if inside is not None:
                    inside(slot.session, record)
                kind = record["kind"]
                signed = sign_document(record, self.keys)
                sha = sha256_hex(signed)
                out = {"json": signed, **files(record, signed, sha)}
                if "pdf" in out:
                    out["pdf"] = sign_pdf(out["pdf"], self.keys, reason=PDF_REASON[kind],
                                          location=self.profile.location)
                doc = row(record, sha)
                slot.session.add(doc)
                follow_document(slot.session, kind, record["id"], doc.drive_id,
                                actor=_issuer_actor(record))
                entry = slot.commit(kind, record["id"], sha,
                                    sha256_hex(out["pdf"]) if "pdf" in out else None,
                                    self.keys.fingerprint)
                paths = {ext: self.out / f"{record['id']}.{ext}" for ext in out}
                # Written inside the ledger transaction: a failed write undoes the entry.
                for ext, data in out.items():
                    write_atomic(paths[ext], data)
                    written.append(paths[ext])
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        done = Issued(kind, record["id"], sha, paths["json"], paths.get("pdf"), paths.get("csv"),
                      entry.seq)
        if self.issued is not None:
            self.issued(done)
        return done

    def _render(self, record: dict[str, Any], signed: bytes, sha: str) -> bytes:
        from imager.certify.render import render_drive_pdf  # WeasyPrint loads slowly
        return render_drive_pdf(record, sha256=sha, verify_url=self.profile.verify_url,
                                attachments=[(f"{record['id']}.json", signed,
                                              "Enregistrement signé / signed record")])

    # -- drives -----------------------------------------------------------

    def for_job(self, job_id: int, *, destination: str = "reuse", language: str = "fr",
                confidentiality: tuple[str | None, str | None] = (None, None),
                again: bool = False) -> Issued:
        """The certificate of an erased job, or the non-erasure record of a failed one."""
        _check_language(language)
        with self.registry.session(readonly=True) as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFound(f"no job {job_id}: list them with `imager jobs list`")
            if job.kind != "erase":
                raise UsageError(f"job {job_id} is a {job.kind} job: only erase jobs get "
                                 "erasure certificates")
            if job.report is None:
                raise UsageError(f"job {job_id} is {job.state}: no document for an "
                                 f"unfinished erasure; resume it (`imager jobs resume "
                                 f"{job_id}`) or wait for it to end")
            existing = None if again else _latest(s, job_id=job_id)
            if existing is not None:
                _refuse_reissue_withdrawn(s, existing, f"imager cert issue {job_id} --again")
                return self._existing(existing)
            report = EraseReport.from_dict(job.report)
            accepted = hidden_areas_acceptance(s, job.drive_id, job_id)
            who = parties(s, self.profile, self.keys.fingerprint, job.drive, job.donation,
                          job.technician, job.agent_id)
            drive_id, donation_id = job.drive_id, job.donation_id or job.drive.donation_id

        def build(ledger: dict[str, Any]) -> dict[str, Any]:
            return erasure_record(report, who, ledger=ledger, destination=destination,
                                  language=language, confidentiality=confidentiality,
                                  hidden_accepted=accepted)

        # Refuse an unfinished job, or unchecked hidden areas nobody accepted,
        # before taking a ledger slot.
        record_kind(report)
        hidden_areas_check(report, accepted)
        return self._issue(build, lambda r, sg, sha: {"pdf": self._render(r, sg, sha)},
                           lambda r, sha: _row(r, sha, drive_id, job_id, donation_id))

    def destruction(self, drive_ref: str, *, technique: str, witness: str,
                    witness_title: str | None = None, technician: str | None = None,
                    donation: str | None = None, destroyed_at: datetime | None = None,
                    reason: str = "", language: str = "fr") -> Issued:
        """The record of a drive physically destroyed in front of a witness."""
        _check_language(language)
        with self.registry.session(readonly=True) as s:
            drive = find_drive(s, drive_ref)
            tech = find_technician(s, technician) if technician else None
            don = find_donation(s, donation) if donation else None
            who = parties(s, self.profile, self.keys.fingerprint, drive, don, tech)
            medium = _last_medium(s, drive)
            data = {"identity": drive.identity, "vendor": None, "model": drive.model,
                    "serial": drive.serial, "wwn": drive.wwn, "size": drive.size_bytes,
                    "transport": drive.transport, "rotational": drive.rotational}
            drive_id = drive.id
            donation_id = don.id if don else drive.donation_id
        when = destroyed_at or datetime.now(UTC)

        def build(ledger: dict[str, Any]) -> dict[str, Any]:
            return destruction_record(data, who, ledger=ledger, technique=technique,
                                      witness={"name": witness, "title": witness_title},
                                      destroyed_at=when, medium=medium, reason=reason,
                                      language=language)

        return self._issue(build,
                           lambda r, sg, sha: {"pdf": self._render(r, sg, sha)},
                           lambda r, sha: _row(r, sha, drive_id, None, donation_id))

    def _existing(self, doc: Document) -> Issued:
        return Issued(doc.kind, doc.id, doc.json_sha256, self.out / f"{doc.id}.json",
                      self.out / f"{doc.id}.pdf",
                      self.out / f"{doc.id}.csv" if doc.kind == "donation" else None,
                      existing=True)

    # -- donations ---------------------------------------------------------

    def donation(self, reference: str, *, language: str = "fr") -> Issued:
        """The donation certificate: every drive of the donation and its outcome."""
        from imager.certify.render import donation_csv, render_donation_pdf
        _check_language(language)
        with self.registry.session(readonly=True) as s:
            don = find_donation(s, reference)
            lines = donation_lines(s, don)
            who = parties(s, self.profile, self.keys.fingerprint, _any_drive(s, don), don, None)
            donation_id = don.id

        def build(ledger: dict[str, Any]) -> dict[str, Any]:
            rec = donation_record(who, lines, ledger=ledger, language=language)
            rec["csv_sha256"] = sha256_hex(donation_csv(rec))
            return rec

        def files(rec: dict[str, Any], signed: bytes, sha: str) -> dict[str, bytes]:
            csv = donation_csv(rec)
            pdf = render_donation_pdf(rec, sha256=sha, verify_url=self.profile.verify_url,
                                      attachments=[(f"{rec['id']}.json", signed,
                                                    "Enregistrement signé / signed record"),
                                                   (f"{rec['id']}.csv", csv, "Export CSV")])
            return {"pdf": pdf, "csv": csv}

        return self._issue(build, files,
                           lambda r, sha: _row(r, sha, None, None, donation_id))


    # -- withdrawals -------------------------------------------------------

    def withdraw(self, doc_id: str, *, reason: str, by: str) -> Issued:
        """Withdraw the document `doc_id` for `reason`, decided by `by`: a signed
        withdrawal record RET-<doc_id> and its ledger entry. The document itself, its
        files and its entry are not touched; verifying it now says it was withdrawn."""
        by, reason = who_and_why(by, reason, asking="who withdraws it?",
                                 printed="wherever the document is verified")
        doc_id = doc_id.strip()
        with self.registry.session(readonly=True) as s:
            target = _withdrawable(s, doc_id)
            issued_at, drive_id = iso(target.issued_at), target.drive_id
            donation_id = target.donation_id
        entry = self.ledger.find(doc_id)
        if entry is None:
            raise UsageError(f"{doc_id} n'est pas au registre / is not in the ledger: run "
                             "`imager ledger verify`")
        issuer = issuer_block(self.profile, self.keys.fingerprint)

        def build(ledger: dict[str, Any]) -> dict[str, Any]:
            return withdrawal_record(entry.to_dict(), issued_at=issued_at, reason=reason,
                                     by=by, issuer=issuer, ledger=ledger)

        def inside(s: Session, record: dict[str, Any]) -> None:
            _refuse_withdrawn(s, doc_id)          # again, under the ledger's lock
            drive = s.get(Drive, drive_id) if drive_id is not None else None
            if drive is not None:
                items.note(s, drive, DOCUMENT_WITHDRAWN, actor=by, reason=reason,
                           data={"document": doc_id, "withdrawal": record["id"]})

        def row(record: dict[str, Any], sha: str) -> Document:
            return Document(id=record["id"], kind=WITHDRAWAL, drive_id=drive_id, job_id=None,
                            donation_id=donation_id,
                            issued_at=datetime.fromisoformat(record["issued_at"]),
                            json_sha256=sha, line={"withdraws": doc_id, "reason": reason,
                                                   "by": by, "at": record["issued_at"]})

        return self._issue(build, lambda r, sg, sha: {}, row, inside=inside)

    def listing(self, doc_id: str) -> list[str]:
        """The donation certificates, not withdrawn, that list the drive document `doc_id`."""
        with self.registry.session(readonly=True) as s:
            ids = listed_in(s, self.out, doc_id)
            gone = withdrawals(s, ids)
        return [i for i in ids if i not in gone]


def listed_in(s: Session, documents_dir: Path, doc_id: str) -> list[str]:
    """The donation certificates (withdrawn or not) whose signed file lists the drive
    document `doc_id`: those of its donation, and of its drive's donation if it has
    one since."""
    doc = s.get(Document, doc_id)
    if doc is None or doc.kind not in DRIVE_KINDS:
        return []
    drive = s.get(Drive, doc.drive_id) if doc.drive_id is not None else None
    donations = {doc.donation_id, drive.donation_id if drive else None} - {None}
    ids = list(s.scalars(select(Document.id).where(
        Document.kind == "donation", Document.donation_id.in_(donations)).order_by(
        Document.issued_at, Document.id)))
    return [i for i in ids if doc_id in _listed(documents_dir / f"{i}.json")]


def withdrawals(s: Session, doc_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The withdrawn documents (of `doc_ids`, or all): {id: {withdrawal, at, by, reason}}."""
    q = select(Document).where(Document.kind == WITHDRAWAL)
    if doc_ids is not None:
        q = q.where(Document.id.in_([withdrawal_id(i) for i in doc_ids]))
    return {d.line["withdraws"]: {"withdrawal": d.id, **{k: d.line[k] for k in
                                                          ("at", "by", "reason")}}
            for d in s.scalars(q) if d.line}


def _listed(path: Path) -> set[str]:
    """The drive documents a donation certificate's file lists (none if unreadable)."""
    try:
        drives = json.loads(path.read_bytes())["document"]["drives"]
        return {str(line["certificate"]) for line in drives}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _said(doc_id: str, done: dict[str, Any]) -> str:
    return (f"{doc_id} retiré le / withdrawn on {done['at']} par / by {done['by']} : "
            f"« {done['reason']} » ({done['withdrawal']})")


def _withdrawable(s: Session, doc_id: str) -> Document:
    """The document `doc_id` of this station, if it can be withdrawn."""
    doc = s.get(Document, doc_id)
    if doc is None:
        raise NotFound(f"aucun document {doc_id!r} sur cette station / no document {doc_id!r} "
                       "on this station: list them with `imager cert list` (a document is "
                       "withdrawn on the station that issued it)")
    if doc.kind == WITHDRAWAL:
        raise UsageError(f"{doc_id} est un retrait, un retrait ne se retire pas / {doc_id} is "
                         f"a withdrawal record, it cannot itself be withdrawn (it withdraws "
                         f"{(doc.line or {}).get('withdraws')}): if the document should be "
                         "valid again, issue a new one (`imager cert issue JOB --again`)")
    _refuse_withdrawn(s, doc_id)
    return doc


def _refuse_withdrawn(s: Session, doc_id: str) -> None:
    done = withdrawals(s, [doc_id]).get(doc_id)
    if done is not None:
        raise UsageError(f"déjà retiré, un document ne se retire qu'une fois / already "
                         f"withdrawn, a document is withdrawn once: {_said(doc_id, done)}")
    seq = s.scalar(select(LedgerEntry.seq).where(LedgerEntry.doc_id == withdrawal_id(doc_id)))
    if seq is not None:
        raise UsageError(f"{doc_id} : le registre tient déjà son retrait / the ledger already "
                         f"holds its withdrawal (entry {seq}); run `imager ledger verify`")


def _issuer_actor(record: dict[str, Any]) -> str:
    """Who the item event names: the technician of the record (or who decided a
    withdrawal), else the station."""
    person = record.get("performed_by") or record.get("decided_by") or {}
    return person.get("name") or f"station {record['issuer']['station']}"


def _check_language(language: str) -> None:
    if language not in ("fr", "en"):
        raise UsageError(f"language {language!r}: use fr (default) or en")


def _row(record: dict[str, Any], sha: str, drive_id: int | None, job_id: int | None,
         donation_id: int | None) -> Document:
    line = drive_line(record, sha) if record["kind"] in DRIVE_KINDS else None
    return Document(id=record["id"], kind=record["kind"], drive_id=drive_id, job_id=job_id,
                    donation_id=donation_id, issued_at=datetime.fromisoformat(
                        record["issued_at"]), json_sha256=sha, line=line)


def _latest(s: Session, *, job_id: int | None = None, drive_id: int | None = None
            ) -> Document | None:
    q = select(Document).where(Document.kind.in_(DRIVE_KINDS))
    q = q.where(Document.job_id == job_id) if job_id is not None \
        else q.where(Document.drive_id == drive_id)
    return s.scalars(q.order_by(Document.issued_at.desc(), Document.id.desc())).first()


def _refuse_reissue_withdrawn(s: Session, doc: Document, again: str) -> None:
    """A withdrawn document is not handed out again as the one on record."""
    done = withdrawals(s, [doc.id]).get(doc.id)
    if done is not None:
        raise UsageError(f"le document de ce disque a été retiré / this drive's document was "
                         f"withdrawn: {_said(doc.id, done)} — to issue a new one: `{again}`")


def _last_medium(s: Session, drive: Drive) -> str | None:
    job = s.scalars(select(Job).where(Job.drive_id == drive.id).order_by(Job.id.desc())).first()
    return (job.plan or {}).get("medium") if job else None


def donation_drives(s: Session, don: Donation) -> list[Drive]:
    """The drives of a donation: given to it at intake, erased or documented for it."""
    ids = set(s.scalars(select(Drive.id).where(Drive.donation_id == don.id)))
    ids |= set(s.scalars(select(Job.drive_id).where(Job.donation_id == don.id)))
    ids |= set(s.scalars(select(Document.drive_id).where(
        Document.donation_id == don.id, Document.drive_id.is_not(None))))
    return [d for i in sorted(ids) if (d := s.get(Drive, i)) is not None]


def _any_drive(s: Session, don: Donation) -> Drive:
    drives = donation_drives(s, don)
    if not drives:
        raise UsageError(f"the donation {don.reference} has no drive yet: erase its drives "
                         f"with `imager erase --donation {don.reference} ...`")
    return drives[0]


def donation_lines(s: Session, don: Donation) -> list[dict[str, Any]]:
    """The latest document of every drive of the donation; refuses when one is missing."""
    lines, missing = [], []
    for drive in donation_drives(s, don):
        doc = _latest(s, drive_id=drive.id)
        if doc is None or doc.line is None:
            missing.append(drive.serial or drive.identity)
            continue
        _refuse_reissue_withdrawn(s, doc, f"imager cert issue {doc.job_id} --again" if doc.job_id
                                  else "imager cert destroy DRIVE ...")
        lines.append(doc.line)
    if missing:
        raise UsageError(
            f"{len(missing)} disque(s) du don {don.reference} sans document / drive(s) of the "
            f"donation without a document: {', '.join(missing[:10])}"
            + (" ..." if len(missing) > 10 else "")
            + f" — issue them first: `imager cert issue --donation {don.reference}` "
            "(finished jobs) or `imager cert destroy` (destroyed drives)")
    return lines


def finished_jobs(s: Session, reference: str) -> list[int]:
    """The last finished erase job of each drive of a donation."""
    don = find_donation(s, reference)
    last: dict[int, Job] = {}
    for job in s.scalars(select(Job).where(Job.donation_id == don.id).order_by(Job.id)):
        last[job.drive_id] = job
    return [j.id for j in last.values() if j.report is not None
            and j.state in ("erased", "failed", "unverified")]
