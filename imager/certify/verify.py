"""`imager cert verify FILE`: check a signed JSON record, a signed PDF or a
donation CSV, offline, with only the station's certificate.

What is checked, in order, and printed:
1. JSON: the bytes are the canonical form that was signed; the document hash;
   the signer certificate is the trusted one (or issued by the trusted CA);
   the Ed25519 signature; the record against its schema.
   PDF: the PAdES signature covers the whole file and chains to the trusted
   certificate; then the signed JSON it carries, as above.
   CSV: its hash is the one the donation record (same name, .json) signed.
2. Ledger inclusion: against a signed ledger export (--ledger) or, on the
   station, its own ledger: the entry for this document holds this file's
   hash at the position the record states, in an intact chain. A ledger is
   only consulted for a document signed by a key of its station (the station
   that kept or exported it, or a signer of its entries). This station's own
   ledger, consulted without being asked, says nothing of another station's
   document: it is said "not consulted", with why. A ledger export the user
   gave (--ledger) that is not the signer's fails the verdict: the inclusion
   asked for cannot be checked with it.
3. Withdrawal: when the ledger was consulted, whether it holds a withdrawal of
   the document (imager.certify.withdrawal): a withdrawn document is not
   valid, and the verdict says when, why and who decided. A withdrawal record
   (RET-…) verifies like any document and says what it withdraws; a donation
   certificate that lists a withdrawn certificate gets a note. Without the
   signer's ledger, the verdict says withdrawal was not checked.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from imager.certify import schema
from imager.certify.canonical import sha256_hex
from imager.certify.keys import load_cert
from imager.certify.pades import verify_pdf
from imager.certify.record import KIND_FR
from imager.certify.signing import (
    Checks,
    Trust,
    VerificationFailed,
    read_envelope,
    verify_envelope,
)
from imager.certify.withdrawal import KIND as WITHDRAWAL
from imager.certify.withdrawal import Withdrawal, record_problem, withdrawal_of
from imager.errors import UsageError

PER_WORKER = 500   # below this many files per core, one process is faster


@dataclass
class Verdict:
    path: Path
    checks: Checks = field(default_factory=Checks)
    record: dict[str, Any] | None = None
    ledger_checked: bool = False
    ledger_note: str | None = None    # why the ledger given was not consulted
    summary: list[str] = field(default_factory=list)   # describe(record) once verified
    kind: str | None = None           # the record's kind, once its signature is checked
    withdrawn: Withdrawal | None = None                # the ledger holds its withdrawal
    notes: list[str] = field(default_factory=list)     # worth knowing, not failing

    @property
    def ok(self) -> bool:
        return all(good for good, _ in self.checks.lines)


def trust_from(paths: list[Path]) -> Trust:
    certs = [c for p in paths for c in load_cert(p)]
    return Trust(certs)


def check_json(data: bytes, trust: Trust, checks: Checks) -> dict[str, Any]:
    """The signed record in `data`, after every check of step 1."""
    return check_signed(data, trust, checks)[0]


def check_signed(data: bytes, trust: Trust, checks: Checks) -> tuple[dict[str, Any], str]:
    """`check_json`, and the fingerprint of the key that signed the record."""
    envelope = read_envelope(data, checks)
    record = verify_envelope(envelope, trust, checks)
    found = schema.problems(record)
    if not found and record["kind"] == WITHDRAWAL and (wrong := record_problem(record)):
        found = [wrong]
    if found:
        raise checks.fail("enregistrement non conforme au schéma / record does not match its "
                          "schema: " + "; ".join(found))
    checks.ok(f"schéma / schema {record['schema']} respecté / valid")
    return record, str(envelope["signature"]["key"])


@dataclass(frozen=True)
class LedgerSource:
    """Where ledger entries come from: a signed export file or the station's ledger."""

    entries: dict[str, dict[str, Any]]      # by doc_id
    what: str
    owner: str | None = None       # key of the station that kept or exported it, if known
    problem: str | None = None     # why its entries cannot be trusted (said when consulted)
    given: bool = False            # named by the user (--ledger): it must be the signer's
    withdrawals: dict[str, bytes] = field(default_factory=dict)  # signed RET- records, by id
    as_of: str = ""                # when these entries were read (an export: its date)

    def withdrawal(self, doc_id: str) -> Withdrawal | None:
        """The withdrawal of `doc_id` this ledger holds, if any."""
        return withdrawal_of(doc_id, self.entries, self.withdrawals)

    @cached_property
    def signer_keys(self) -> frozenset[str]:
        """The keys whose documents this ledger records: its station's and its signers'."""
        found = {str(e.get("signer")) for e in self.entries.values()}
        return frozenset(found | ({self.owner} if self.owner else set()))

    def not_for(self, signer: str) -> str | None:
        """Why this ledger says nothing about a document signed by `signer` (None: it does)."""
        if signer in self.signer_keys:
            return None
        whose = ", ".join(sorted(self.signer_keys)) or "aucune / none"
        if self.given:
            return (f"le registre donné n'est pas celui du signataire, l'inscription ne peut pas "
                    f"être vérifiée / the ledger given is not the signer's, so the ledger "
                    f"inclusion cannot be checked ({self.what}: keys {whose}; document signed "
                    f"by {signer}): donnez --ledger l'export signé de la station signataire / "
                    f"give --ledger the signing station's signed export (`imager ledger "
                    f"export` on the station of key {signer})")
        return (f"registre non consulté, ce n'est pas celui du signataire / ledger not "
                f"consulted, it is not the signer's ({self.what}: keys {whose}; signer "
                f"{signer}): pour vérifier l'inscription, donnez --ledger l'export signé de la "
                f"station signataire / to check the ledger inclusion, give --ledger the signing "
                f"station's signed export (`imager ledger export`)")


def check_ledger(record: dict[str, Any], json_sha: str, pdf_sha: str | None,
                 ledger: LedgerSource, checks: Checks, *, signer: str | None = None) -> None:
    if ledger.problem is not None:
        raise checks.fail(ledger.problem)
    entry = ledger.entries.get(record["id"])
    if entry is None:
        raise checks.fail(f"{record['id']} absent du registre / not in the ledger ({ledger.what})")
    pos = record["ledger"]
    if entry["json_sha256"] != json_sha:
        raise checks.fail(f"le registre garde une autre empreinte pour {record['id']} / the ledger "
                          f"holds another hash for it: {entry['json_sha256']}")
    if pdf_sha is not None and entry.get("pdf_sha256") != pdf_sha:
        raise checks.fail(f"le registre garde une autre empreinte de PDF / the ledger holds "
                          f"another PDF hash: {entry.get('pdf_sha256')}")
    if entry["seq"] != pos["seq"] or entry["prev"] != pos["prev"]:
        raise checks.fail(f"position dans le registre différente / ledger position differs: "
                          f"record says {pos['seq']}, ledger has {entry['seq']}")
    if signer is not None and entry.get("signer") != signer:
        raise checks.fail(f"le registre inscrit {record['id']} au nom d'une autre clé / the "
                          f"ledger records {record['id']} as signed by another key: "
                          f"{entry.get('signer')}, the document by {signer}")
    checks.ok(f"inscrit au registre / in the ledger: entrée / entry {entry['seq']}, "
              f"chaîne intacte / chain intact ({ledger.what})")


def verify_file(path: Path, trust: Trust, ledger: LedgerSource | None = None) -> Verdict:
    """Every check of `path`; never raises for a bad document (the verdict says)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    return verify_data(data, path, trust, ledger)


def verify_data(data: bytes, path: Path, trust: Trust,
                ledger: LedgerSource | None = None) -> Verdict:
    """`verify_file` for the bytes `data`, already read (an upload): a PDF by its first
    bytes, else a signed JSON record, or a donation CSV when `path` ends in .csv (checked
    with the .json beside `path`). Never raises for a bad document (the verdict says)."""
    verdict = Verdict(path)
    checks = verdict.checks
    try:
        pdf_sha, csv = None, None
        if data.startswith(b"%PDF"):
            files = verify_pdf(data, trust, checks)
            signed = [v for k, v in files.items() if k.endswith(".json")]
            if len(signed) != 1:
                raise checks.fail("le PDF ne porte pas son enregistrement signé / the PDF does "
                                  "not carry its signed record")
            data, pdf_sha = signed[0], sha256_hex(data)
        elif path.suffix.lower() == ".csv":
            csv, data = data, _donation_json(path, checks)
        verdict.record, signer = check_signed(data, trust, checks)
        verdict.kind = verdict.record["kind"]
        if csv is not None:
            _check_csv(path, csv, verdict.record, checks)
        note = ledger.not_for(signer) if ledger is not None else None
        if ledger is not None and ledger.given and note is not None:
            raise checks.fail(note)
        verdict.ledger_note = note
        if ledger is not None and note is None:
            check_ledger(verdict.record, sha256_hex(data), pdf_sha, ledger, checks,
                         signer=signer)
            verdict.ledger_checked = True
            _check_withdrawal(verdict, ledger)
    except VerificationFailed:
        pass
    if verdict.record is not None and (verdict.ok or verdict.withdrawn is not None):
        verdict.summary = describe(verdict.record)
    return verdict


def _check_withdrawal(verdict: Verdict, ledger: LedgerSource) -> None:
    """Step 3, once the document is found in `ledger`."""
    record, checks = verdict.record, verdict.checks
    assert record is not None
    verdict.withdrawn = ledger.withdrawal(record["id"])
    if verdict.withdrawn is not None:
        raise checks.fail(f"RETIRÉ / WITHDRAWN: {verdict.withdrawn.describe()}")
    if record["kind"] == WITHDRAWAL:
        _check_withdrawn(record, ledger, checks)
        return
    checks.ok(f"non retiré au / not withdrawn as of {ledger.as_of} ({ledger.what})")
    for line in record.get("drives", []) if record["kind"] == "donation" else []:
        listed = ledger.withdrawal(line["certificate"])
        if listed is not None:
            verdict.notes.append(f"un document de ce don a été retiré / a document this "
                                 f"donation lists was withdrawn: {listed.describe()}")


def _check_withdrawn(record: dict[str, Any], ledger: LedgerSource, checks: Checks) -> None:
    """A withdrawal record names a document of its ledger, by the hash the ledger keeps."""
    target = record["withdraws"]
    entry = ledger.entries.get(target["id"])
    if entry is None or entry.get("json_sha256") != target["sha256"]:
        raise checks.fail(f"le document retiré {target['id']} n'est pas au registre avec cette "
                          f"empreinte / the withdrawn document {target['id']} is not in the "
                          f"ledger with this hash ({ledger.what})")
    checks.ok(f"retire / withdraws {target['id']}, inscrit au registre / in the ledger: entrée "
              f"/ entry {entry['seq']} (sha256 {target['sha256'][:16]}…)")


def _donation_json(path: Path, checks: Checks) -> bytes:
    """The signed donation record a CSV export is verified with (same name, .json)."""
    sibling = path.with_suffix(".json")
    try:
        return sibling.read_bytes()
    except OSError as exc:
        raise checks.fail(f"un export CSV se vérifie avec son certificat de don / a CSV export "
                          f"is verified with its donation record: {sibling} cannot be read "
                          f"({exc.strerror})") from exc


def _check_csv(path: Path, data: bytes, record: dict[str, Any], checks: Checks) -> None:
    sibling = path.with_suffix(".json")
    if record.get("kind") != "donation" or record.get("csv_sha256") != sha256_hex(data):
        raise checks.fail(f"le CSV ne correspond pas à {sibling.name} (modifié ?) / the CSV is "
                          f"not the one {sibling.name} signed (altered?)")
    checks.ok(f"CSV signé par / signed by {sibling.name} (sha256 {sha256_hex(data)})")


def describe(record: dict[str, Any]) -> list[str]:
    """What a verified document says, in two lines, for the person verifying it."""
    head = (f"{record['id']} ({KIND_FR.get(record['kind'], record['kind'])}), émis le / "
            f"issued {record['issued_at']} par / by {record['issuer']['organisation']}")
    if record["kind"] == WITHDRAWAL:
        target = record["withdraws"]
        return [head, f"retire / withdraws {target['id']} ({KIND_FR[target['kind']]}, sha256 "
                f"{target['sha256']}) : « {record['reason']} » — décidé par / decided by "
                f"{record['decided_by']['name']}"]
    donor = (record.get("donor") or {}).get("name") or "-"
    if record["kind"] == "donation":
        s = record["summary"]
        return [head, f"don / donation {record['donation']['reference']} de / from {donor}: "
                f"{s['drives']} supports, {s['erased']} effacés / erased, {s['not_erased']} non "
                f"effacés / not erased, {s['destroyed']} détruits / destroyed"]
    m, san = record["media"], record["sanitization"]
    return [head, f"support / drive {m['model'] or '?'} n° {m['serial'] or m['identity']}: "
            f"{record['outcome']['result']}, {san['method_type'] or '-'} ({san['technique']}); "
            f"donateur / donor {donor}"]


def _verify_chunk(args: tuple[list[Path], list[bytes], LedgerSource | None]) -> list[Verdict]:
    paths, anchors, ledger = args
    trust = Trust([x509.load_der_x509_certificate(a) for a in anchors])
    out = []
    for path in paths:
        v = verify_file(path, trust, ledger)
        v.record = None  # the description is all the caller prints: less to send back
        out.append(v)
    return out


def verify_many(paths: list[Path], trust: Trust, ledger: LedgerSource | None = None,
                workers: int | None = None) -> list[Verdict]:
    """`verify_file` for many files, on every core when there are many."""
    workers = workers or min(os.cpu_count() or 1, max(1, len(paths) // PER_WORKER))
    if workers <= 1:
        return [verify_file(p, trust, ledger) for p in paths]
    anchors = [a.public_bytes(serialization.Encoding.DER) for a in trust.anchors]
    size = -(-len(paths) // workers)
    chunks = [(paths[i:i + size], anchors, ledger) for i in range(0, len(paths), size)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return [v for part in pool.map(_verify_chunk, chunks) for v in part]
