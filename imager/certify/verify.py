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
    verdict = Verdict(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    checks = verdict.checks
    try:
        pdf_sha = None
        if data.startswith(b"%PDF"):
            files = verify_pdf(data, trust, checks)
            signed = [v for k, v in files.items() if k.endswith(".json")]
            if len(signed) != 1:
                raise checks.fail("le PDF ne porte pas son enregistrement signé / the PDF does "
                                  "not carry its signed record")
            data, pdf_sha = signed[0], sha256_hex(data)
        elif path.suffix.lower() == ".csv":
            verdict.record = _check_csv(path, data, trust, checks)
            verdict.summary = describe(verdict.record)
            return verdict
        verdict.record, signer = check_signed(data, trust, checks)
        note = ledger.not_for(signer) if ledger is not None else None
        if ledger is not None and ledger.given and note is not None:
            raise checks.fail(note)
        verdict.ledger_note = note
        if ledger is not None and note is None:
            check_ledger(verdict.record, sha256_hex(data), pdf_sha, ledger, checks,
                         signer=signer)
            verdict.ledger_checked = True
    except VerificationFailed:
        pass
    if verdict.ok and verdict.record is not None:
        verdict.summary = describe(verdict.record)
    return verdict


def _check_csv(path: Path, data: bytes, trust: Trust, checks: Checks) -> dict[str, Any]:
    sibling = path.with_suffix(".json")
    if not sibling.exists():
        raise checks.fail(f"un export CSV se vérifie avec son certificat de don / a CSV export "
                          f"is verified with its donation record: {sibling} is missing")
    record = check_json(sibling.read_bytes(), trust, checks)
    if record.get("kind") != "donation" or record.get("csv_sha256") != sha256_hex(data):
        raise checks.fail(f"le CSV ne correspond pas à {sibling.name} (modifié ?) / the CSV is "
                          f"not the one {sibling.name} signed (altered?)")
    checks.ok(f"CSV signé par / signed by {sibling.name} (sha256 {sha256_hex(data)})")
    return record




def describe(record: dict[str, Any]) -> list[str]:
    """What a verified document says, in two lines, for the person verifying it."""
    head = (f"{record['id']} ({KIND_FR.get(record['kind'], record['kind'])}), émis le / "
            f"issued {record['issued_at']} par / by {record['issuer']['organisation']}")
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
