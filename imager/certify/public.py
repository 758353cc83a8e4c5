"""What anyone may learn of a document of this station, without an account: the
answer of the public verification page (imager.station.web.verify).

Two questions, one answer (`Answer`):
- `look_up(doc_id, sha256)`: the form printed on every certificate (its QR code).
  Only when the id AND the hash (of its JSON or its PDF) match one entry of the
  ledger (`document_status`) is anything said; otherwise None, the same for an
  unknown id and for a known id with another hash, found in the same few
  microseconds (a dictionary look-up, hashes compared in constant time), so that
  the answer tells nothing about which ids exist.
- `check_upload(data)`: a PDF or signed JSON file someone holds, verified like
  `imager cert verify` does (imager.certify.verify), against the station's trust
  and ledger.

Either way the document is verified by `verify_data`/`verify_file`, the one place
that verifies documents, and only `public_fields` of its record are shown: the
kind, the date, the issuer (the workshop), the method class, the drive model and
the outcome; the donor's kind, and the donor's name only when the donor is an
organisation. Never the serial number, WWN or station identifier of the drive,
the name of a private donor, contacts, the technician, the witness or who
decided a withdrawal (a withdrawal shows its date and its reason).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from imager.certify.ledger import DOC_ID
from imager.certify.local import Local
from imager.certify.record import DRIVE_KINDS
from imager.certify.verify import Verdict, verify_data, verify_file
from imager.certify.withdrawal import KIND as WITHDRAWAL
from imager.certify.withdrawal import document_status
from imager.errors import UsageError

State = Literal["genuine", "withdrawn", "signed", "unconfirmed", "not_genuine"]
# Donors whose name may be shown: organisations. A private person's never is, nor
# that of a donor of a kind not listed here.
NAMED_DONORS = ("town_hall", "company", "association")


@dataclass(frozen=True)
class Answer:
    """What the page says: the state, and the public fields of a verified document.

    genuine: signed by this station and in its ledger, not withdrawn;
    withdrawn: genuine, but withdrawn (`withdrawal`: its date and reason);
    signed: a valid signature from the network's trust, but another station's
        document: only its station's ledger says whether it was withdrawn;
    unconfirmed: this station's own files or ledger do not verify (its fault);
    not_genuine: an uploaded file that does not verify (altered, or not ours)."""

    state: State
    document: dict[str, Any] | None = None
    withdrawal: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def public_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a verified `record` anyone may see (the module says which)."""
    kind = record.get("kind")
    out: dict[str, Any] = {"id": record.get("id"), "kind": kind,
                           "issued_at": record.get("issued_at"),
                           "issuer": (record.get("issuer") or {}).get("organisation")}
    if kind in DRIVE_KINDS:
        media, method = record.get("media") or {}, record.get("sanitization") or {}
        out.update({"method_class": method.get("method_type"),
                    "drive_model": media.get("model"),
                    "outcome": (record.get("outcome") or {}).get("result")})
    if kind == WITHDRAWAL:
        out["withdraws"] = (record.get("withdraws") or {}).get("id")
        return out
    donor = record.get("donor") or {}
    out["donor_kind"] = donor.get("kind")
    out["donor"] = donor.get("name") if donor.get("kind") in NAMED_DONORS else None
    if kind == "donation":
        summary = record.get("summary") or {}
        out["drives"] = {k: summary.get(k) for k in ("drives", "erased", "not_erased",
                                                     "destroyed")}
    return out


def answer(verdict: Verdict, local: Local) -> Answer:
    """What the page says of a verdict of `verify_file`/`verify_data` against `local`."""
    record = verdict.record
    if verdict.withdrawn is not None and record is not None:
        gone = verdict.withdrawn
        return Answer("withdrawn", public_fields(record),
                      {"at": gone.at, "reason": gone.reason or ""})
    if verdict.ok and record is not None:
        return Answer("genuine" if verdict.ledger_checked else "signed", public_fields(record))
    if record is not None and local.ledger.problem is not None:
        return Answer("unconfirmed")          # its signature holds; our ledger does not
    return Answer("not_genuine")


def look_up(doc_id: str, sha256: str, local: Local, documents_dir: Path) -> Answer | None:
    """The answer for the id and hash of a certificate's QR code; None when they do not
    match an entry of the ledger together (an unknown id, or another hash)."""
    doc_id, sha256 = doc_id.strip(), sha256.strip().lower()
    status = document_status(doc_id, sha256, local.ledger.entries, local.ledger.withdrawals)
    if status.state == "unknown":
        return None
    if local.trust is None or not DOC_ID.fullmatch(doc_id):
        return Answer("unconfirmed")
    try:
        verdict = verify_file(documents_dir / f"{doc_id}.json", local.trust, local.ledger)
    except UsageError:                       # its file is missing: this station's fault
        return Answer("unconfirmed")
    found = answer(verdict, local)
    # The ledger matched: a stored file that does not verify is this station's fault.
    return found if found.state in ("genuine", "withdrawn") else Answer("unconfirmed")


def check_upload(data: bytes, local: Local) -> Answer:
    """The answer for a file someone sent: a PDF (by its first bytes) or a signed JSON
    record. A donation's CSV is not taken: it is checked with its JSON beside it."""
    if local.trust is None:
        return Answer("not_genuine")         # a station without keys issued nothing
    name = Path("upload.pdf" if data.startswith(b"%PDF") else "upload.json")
    return answer(verify_data(data, name, local.trust, local.ledger), local)
