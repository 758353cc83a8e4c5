"""`imager cert issue|donation|destroy|withdraw|verify|list` and
`imager keys show|export|csr|install`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from imager.certify.identity import load_profile
from imager.certify.keys import csr, fingerprint, install, keys_dir, station_keys
from imager.certify.record import DESTINATIONS, DESTRUCTION_TECHNIQUES, KIND_FR
from imager.certify.withdrawal import KIND as WITHDRAWAL
from imager.cli.context import Context
from imager.cli.tls import register_keys as register_tls_keys
from imager.errors import UsageError
from imager.host.files import write_atomic
from imager.store.models import Document

if TYPE_CHECKING:
    from imager.certify.verify import LedgerSource, Verdict
    from imager.registry.issue import Issued

# imager.registry.issue / verify load pyHanko and cryptography (~0.7 s): they are
# imported inside the handlers so that other commands start fast.



def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cert", description="Certificats / certificates")
    csub = p.add_subparsers(dest="cert_command", metavar="ACTION", required=True)
    iss = csub.add_parser("issue", help="le document d'une tâche d'effacement terminée / the "
                          "document of finished erase jobs (certificate, or non-erasure record)")
    iss.add_argument("jobs", type=int, nargs="*", metavar="JOB")
    iss.add_argument("--donation", metavar="REF", help="every finished job of a donation")
    iss.add_argument("--destination", choices=[d for d in DESTINATIONS if d != "destruction"],
                     default="reuse", help="post-sanitization destination (default reuse)")
    iss.add_argument("--confidentiality-before", metavar="TEXT")
    iss.add_argument("--confidentiality-after", metavar="TEXT")
    iss.add_argument("--again", action="store_true", help="issue a new document even if one "
                     "exists")
    _common(iss)
    iss.set_defaults(func=cmd_issue)
    don = csub.add_parser("donation", help="le certificat d'un don / a donation certificate")
    don.add_argument("reference", metavar="REF")
    _common(don)
    don.set_defaults(func=cmd_donation)
    de = csub.add_parser("destroy", help="procès-verbal de destruction / destruction record")
    de.add_argument("drive", metavar="DRIVE", help="drive number, serial or WWN")
    de.add_argument("--technique", required=True, choices=DESTRUCTION_TECHNIQUES)
    de.add_argument("--witness", required=True, metavar="NAME")
    de.add_argument("--witness-title", metavar="TITLE")
    de.add_argument("--technician", metavar="NAME")
    de.add_argument("--donation", metavar="REF")
    de.add_argument("--date", metavar="YYYY-MM-DDTHH:MM", help="when (default now)")
    de.add_argument("--reason", default="")
    _common(de)
    de.set_defaults(func=cmd_destroy)
    ve = csub.add_parser("verify", help="vérifier un certificat, hors ligne / verify a document "
                         "offline (JSON, PDF or donation CSV)")
    ve.add_argument("files", type=Path, nargs="+", metavar="FILE")
    ve.add_argument("--trust", type=Path, action="append", metavar="CERT.pem",
                    help="the station (or network CA) certificate; default: this station's")
    ve.add_argument("--ledger", type=Path, metavar="LEDGER.json",
                    help="the signing station's signed ledger export (`imager ledger "
                    "export`; another station's fails the check); default: this station's "
                    "ledger when there is one, for this station's documents")
    ve.add_argument("--json", action="store_true")
    ve.set_defaults(func=cmd_verify)
    ac = csub.add_parser("accept-hidden", help="accepter de certifier un disque ATA (ou qui "
                         "peut l'être, derrière un adaptateur USB ou SAS) dont les zones cachées "
                         "n'ont pas pu être vérifiées / accept to certify an ATA drive (or one "
                         "that may be, behind a USB or SAS adapter) whose hidden areas "
                         "(HPA/DCO) could not be checked")
    ac.add_argument("job", type=int, metavar="JOB", help="the finished erase job")
    ac.add_argument("--by", required=True, metavar="NAME", help="who decides (printed)")
    ac.add_argument("--reason", required=True, metavar="TEXT", help="why (printed whole)")
    ac.set_defaults(func=cmd_accept_hidden)
    wd = csub.add_parser("withdraw", help="retirer un document émis, avec son motif / "
                         "withdraw an issued document, with its reason (a signed withdrawal "
                         "record and a ledger entry of its own; the document is not edited)")
    wd.add_argument("document", metavar="DOC_ID", help="EFF-…, NEF-…, DES-… or DON-…")
    wd.add_argument("--reason", required=True, metavar="TEXT",
                    help="why (10 to 500 characters, printed whole wherever it is verified)")
    wd.add_argument("--by", required=True, metavar="NAME", help="who decides (printed)")
    wd.add_argument("--json", action="store_true")
    wd.set_defaults(func=cmd_withdraw)
    ls = csub.add_parser("list", help="issued documents (withdrawn ones marked so)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    k = sub.add_parser("keys", description="Clés de la station / station keys")
    ksub = k.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    ksub.add_parser("show", help="fingerprint and certificate").set_defaults(func=cmd_keys_show)
    ex = ksub.add_parser("export", help="write the station certificate for donors")
    ex.add_argument("output", type=Path)
    ex.set_defaults(func=cmd_keys_export)
    cs = ksub.add_parser("csr", help="a signing request for a network CA")
    cs.add_argument("output", type=Path)
    cs.set_defaults(func=cmd_keys_csr)
    ins = ksub.add_parser("install", help="install the certificate a network CA issued")
    ins.add_argument("cert", type=Path)
    ins.set_defaults(func=cmd_keys_install)
    register_tls_keys(ksub)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lang", choices=("fr", "en"), default="fr", help="PDF language")
    p.add_argument("--json", action="store_true")


def _print_issued(docs: list[Issued], as_json: bool) -> None:
    if as_json:
        for d in docs:
            print(json.dumps({"id": d.id, "kind": d.kind, "sha256": d.sha256, "seq": d.seq,
                              "json": str(d.json_path),
                              "pdf": str(d.pdf_path) if d.pdf_path else None,
                              "csv": str(d.csv_path) if d.csv_path else None,
                              "existing": d.existing}, ensure_ascii=False))
        return
    for d in docs:
        again = " (déjà émis / already issued)" if d.existing else ""
        print(f"{d.id}: {KIND_FR[d.kind]} / {d.kind}{again}")
        if d.pdf_path:
            print(f"  PDF:  {d.pdf_path}")
        print(f"  JSON: {d.json_path}  (sha256 {d.sha256})")
        if d.csv_path:
            print(f"  CSV:  {d.csv_path}")
        if d.kind == "non-erasure":
            print("  NON EFFACÉ — À DÉTRUIRE / NOT ERASED — TO BE DESTROYED")


def cmd_issue(args: argparse.Namespace, ctx: Context) -> int:
    from imager.registry.issue import Issuer, finished_jobs
    jobs = list(args.jobs)
    if args.donation:
        with ctx.registry.session(readonly=True) as s:
            jobs += finished_jobs(s, args.donation)
    if not jobs:
        raise UsageError("give job numbers (`imager jobs list`) or --donation REF")
    issuer = Issuer(ctx.settings, ctx.registry)
    docs = [issuer.for_job(j, destination=args.destination, language=args.lang,
                           confidentiality=(args.confidentiality_before,
                                            args.confidentiality_after), again=args.again)
            for j in dict.fromkeys(jobs)]
    _print_issued(docs, args.json)
    return 0


def cmd_accept_hidden(args: argparse.Namespace, ctx: Context) -> int:
    from imager.registry.decisions import accept_hidden_areas
    decision = accept_hidden_areas(ctx.registry, args.job, by=args.by, reason=args.reason)
    print(f"Décision enregistrée / decision recorded: {decision['by']}, {decision['at']}\n"
          f"  « {decision['reason']} »\n"
          f"Ensuite / then: imager cert issue {args.job}")
    return 0


def cmd_donation(args: argparse.Namespace, ctx: Context) -> int:
    from imager.registry.issue import Issuer
    doc = Issuer(ctx.settings, ctx.registry).donation(args.reference, language=args.lang)
    _print_issued([doc], args.json)
    return 0


def cmd_destroy(args: argparse.Namespace, ctx: Context) -> int:
    from imager.registry.issue import Issuer
    when = None
    if args.date:
        try:
            when = datetime.fromisoformat(args.date).astimezone()
        except ValueError as exc:
            raise UsageError(f"--date {args.date!r}: use YYYY-MM-DDTHH:MM") from exc
    doc = Issuer(ctx.settings, ctx.registry).destruction(
        args.drive, technique=args.technique, witness=args.witness,
        witness_title=args.witness_title, technician=args.technician, donation=args.donation,
        destroyed_at=when, reason=args.reason, language=args.lang)
    _print_issued([doc], args.json)
    return 0


def cmd_withdraw(args: argparse.Namespace, ctx: Context) -> int:
    from imager.registry.issue import Issuer, withdrawals
    issuer = Issuer(ctx.settings, ctx.registry)
    doc = issuer.withdraw(args.document, reason=args.reason, by=args.by)
    target = args.document.strip()
    with ctx.registry.session(readonly=True) as s:
        done = withdrawals(s, [target])[target]
    listed = issuer.listing(target)
    if args.json:
        print(json.dumps({"id": doc.id, "kind": doc.kind, "withdraws": target, **done,
                          "sha256": doc.sha256, "seq": doc.seq, "json": str(doc.json_path),
                          "listed_in": listed}, ensure_ascii=False))
        return 0
    print(f"{doc.id}: retrait de / withdrawal of {target}")
    print(f"  motif / reason: « {done['reason']} »")
    print(f"  décidé par / decided by {done['by']}, le / on {done['at']}")
    print(f"  JSON: {doc.json_path}  (sha256 {doc.sha256}, registre n° / ledger entry "
          f"{doc.seq})")
    for don in listed:
        print(f"  ! le certificat de don {don} le cite : le retirer aussi, puis en émettre un "
              f"nouveau / the donation certificate {don} lists it: withdraw it too, then issue "
              f"a new one (`imager cert withdraw {don} ...`, `imager cert donation REF`)")
    print(f"Désormais `imager cert verify` dit {target} RETIRÉ ; donnez aux vérificateurs un "
          f"nouvel export du registre / from now on `imager cert verify` says {target} is "
          "WITHDRAWN; give verifiers a fresh ledger export: imager ledger export --output "
          "ledger.json")
    return 0


def _station_ledger(ctx: Context) -> LedgerSource | None:
    """This station's ledger, when the registry exists here (`station_ledger`)."""
    from imager.certify.local import station_ledger
    if ctx.settings.db_url is None and not (ctx.settings.data_dir / "registry.sqlite3").exists():
        return None
    return station_ledger(ctx.settings, ctx.registry)


def cmd_verify(args: argparse.Namespace, ctx: Context) -> int:
    from imager.certify.ledger import read_export
    from imager.certify.local import station_trust
    from imager.certify.signing import Checks, VerificationFailed
    from imager.certify.verify import LedgerSource, trust_from, verify_many
    trust = trust_from(args.trust) if args.trust else station_trust(ctx.settings)
    if trust is None:
        raise UsageError("give the station certificate with --trust station.pem (the "
                         "donor receives it with the certificates; `imager keys export`)")
    ledger: LedgerSource | None
    if args.ledger:
        checks = Checks()
        try:
            export = read_export(args.ledger.read_bytes(), trust, checks)
        except VerificationFailed as exc:
            raise UsageError(f"the ledger export {args.ledger} does not verify: {exc}") from exc
        ledger = LedgerSource({e["doc_id"]: e for e in export.entries},
                              f"export {args.ledger.name}", export.signer, given=True,
                              withdrawals=export.withdrawals, as_of=export.exported_at)
    else:
        ledger = _station_ledger(ctx)
    verdicts = verify_many(list(args.files), trust, ledger)
    for v in verdicts:
        _print_verdict(v, args.json, ledger is not None)
    return 0 if all(v.ok for v in verdicts) else 1


def _print_verdict(v: Verdict, as_json: bool, ledger_given: bool) -> None:
    if as_json:
        print(json.dumps({"file": str(v.path), "ok": v.ok, "ledger_checked": v.ledger_checked,
                          "ledger_note": v.ledger_note, "withdrawal_checked": v.ledger_checked,
                          "withdrawn": v.withdrawn.to_dict() if v.withdrawn else None,
                          "document": v.summary[0] if v.summary else None, "notes": v.notes,
                          "checks": [{"ok": ok, "check": t} for ok, t in v.checks.lines]},
                         ensure_ascii=False))
        return
    print(f"{v.path}:")
    for ok, text in v.checks.lines:
        print(f"  {'✔' if ok else '✘'} {text}")
    if not v.ok:
        print("  → NON VALIDE / NOT VALID" if v.withdrawn is None
              else f"  → RETIRÉ, NON VALIDE / WITHDRAWN, NOT VALID: {v.summary[0]}")
        for line in v.summary[1:]:
            print(f"    {line}")
        return
    if not ledger_given:
        print("  ? inscription au registre non vérifiée : donnez --ledger EXPORT.json / "
              "ledger inclusion not checked: give --ledger EXPORT.json")
    elif v.ledger_note is not None:
        print(f"  ? {v.ledger_note}")
    if not v.ledger_checked and v.kind != WITHDRAWAL:
        print("  ? retrait non vérifié : seul le registre du signataire dit si le document a "
              "été retiré / withdrawal not checked: only the signer's ledger says whether the "
              "document was withdrawn")
    for note in v.notes:
        print(f"  ! {note}")
    print(f"  → VALIDE / VALID: {v.summary[0]}")
    for line in v.summary[1:]:
        print(f"    {line}")


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    from imager.registry.issue import withdrawals
    with ctx.registry.session(readonly=True) as s:
        docs = list(s.scalars(select(Document).order_by(Document.issued_at, Document.id)))
        withdrawn = withdrawals(s)
        rows: list[dict[str, Any]] = [
            {"id": d.id, "kind": d.kind, "issued_at": d.issued_at.isoformat(),
             "job": d.job_id, "sha256": d.json_sha256, "withdrawn": withdrawn.get(d.id),
             **({"withdraws": (d.line or {}).get("withdraws")} if d.kind == WITHDRAWAL
                else {})} for d in docs]
    if args.json:
        for r in rows:
            print(json.dumps(r, ensure_ascii=False))
        return 0
    for r in rows:
        said = f"  retire / withdraws {r['withdraws']}" if r["kind"] == WITHDRAWAL else ""
        if r["withdrawn"]:
            w = r["withdrawn"]
            said = (f"  RETIRÉ / WITHDRAWN {w['at']} ({w['withdrawal']}, {w['by']}): "
                    f"« {w['reason']} »")
        print(f"{r['id']}  {r['kind']:<12} {r['issued_at']}  job {r['job'] or '-'}  "
              f"{r['sha256'][:16]}{said}")
    if not rows:
        print("aucun document émis / no document issued")
    return 0


def cmd_keys_show(args: argparse.Namespace, ctx: Context) -> int:
    keys = station_keys(ctx.settings)
    print(f"clé de signature / signing key: Ed25519 {keys.fingerprint}")
    print(f"certificat / certificate: {keys.station_cert.subject.rfc4514_string()}, "
          f"émis par / issued by {keys.station_cert.issuer.rfc4514_string()}, "
          f"valable jusqu'au / valid until {keys.station_cert.not_valid_after_utc:%Y-%m-%d}")
    print(f"clé PDF / PDF key: ECDSA P-256 {fingerprint(keys.pdf_cert)}")
    print(f"dossier / directory: {keys_dir(ctx.settings)}")
    return 0


def cmd_keys_export(args: argparse.Namespace, ctx: Context) -> int:
    keys = station_keys(ctx.settings)
    write_atomic(args.output, keys.station_pem().encode("ascii"), mode=0o644)   # for donors
    print(f"{args.output}: certificat de la station / station certificate {keys.fingerprint}")
    return 0


def cmd_keys_csr(args: argparse.Namespace, ctx: Context) -> int:
    write_atomic(args.output, csr(keys_dir(ctx.settings), load_profile(ctx.settings)),
                 mode=0o644)                     # a request holds no secret
    print(f"{args.output}: demande de certificat / certificate request; give it to the network "
          "CA, then `imager keys install CERT`", file=sys.stderr)
    return 0


def cmd_keys_install(args: argparse.Namespace, ctx: Context) -> int:
    keys = install(keys_dir(ctx.settings), load_profile(ctx.settings), args.cert)
    print(f"certificat installé / certificate installed: "
          f"{keys.station_cert.subject.rfc4514_string()}")
    return 0
