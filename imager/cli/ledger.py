"""`imager ledger verify|head|export|list`: the ledger of issued documents."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.text import Text

from imager.certify.keys import StationKeys, station_keys
from imager.certify.ledger import Ledger, read_head
from imager.certify.signing import (
    Checks,
    Trust,
    VerificationFailed,
    check_signing_keys,
    sign_document,
)
from imager.cli.context import Context
from imager.cli.render import add_row, console, new_table
from imager.errors import UsageError
from imager.host.files import write_atomic


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ledger", description="Registre des documents émis / ledger of issued "
                       "documents")
    lsub = p.add_subparsers(dest="ledger_command", metavar="ACTION", required=True)
    vf = lsub.add_parser("verify", help="vérifier la chaîne et les fichiers / verify the chain "
                                        "and the files")
    vf.add_argument("--head", type=Path, metavar="TETE.json",
                    help="fichier de tête signé conservé / a signed head file kept earlier")
    vf.add_argument("--documents", type=Path, metavar="DOSSIER",
                    help="dossier des documents émis / issued documents directory "
                         "(default: <data dir>/documents)")
    vf.set_defaults(func=cmd_verify)
    hd = lsub.add_parser("head", help="dernière entrée / last entry")
    hd.add_argument("--output", type=Path, metavar="FICHIER",
                    help="écrire la tête signée / write the signed head file")
    hd.set_defaults(func=cmd_head)
    ex = lsub.add_parser("export", help="export signé du registre, avec les retraits / signed "
                         "ledger export, with the withdrawal records")
    ex.add_argument("--output", type=Path, required=True, metavar="FICHIER")
    ex.set_defaults(func=cmd_export)
    ls = lsub.add_parser("list", help="lister les entrées / list the entries")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)


def _mark(ok: bool) -> str:
    return "[green]✓[/]" if ok else "[red]✗[/]"


def cmd_verify(args: argparse.Namespace, ctx: Context) -> int:
    out = console(highlight=False, soft_wrap=True)
    head = None
    if args.head is not None:
        try:
            data = args.head.read_bytes()
        except OSError as exc:
            raise UsageError(f"impossible de lire la tête / cannot read the head file "
                             f"{args.head}: {exc.strerror}") from exc
        checks = Checks()
        try:
            head = read_head(data, Trust([station_keys(ctx.settings).station_cert]), checks)
        except VerificationFailed:
            ok = False
        else:
            ok = True
        for passed, line in checks.lines:
            out.print(_mark(passed), Text(f"{args.head}: {line}"))
        if not ok:
            out.print("[red]Tête non valable : registre non vérifié / invalid head file: "
                          "ledger not verified[/]")
            return 1
    report = Ledger(ctx.registry).verify(args.documents or ctx.settings.documents_dir, head)
    for check in report.checks:
        found = f" — {len(check.problems)} problème(s) / problem(s)" if check.problems else ""
        out.print(_mark(not check.problems), Text(f"{check.name}{found}"))
    for problem in report.problems:
        out.print(Text(f"  {problem}", style="red"))
    if report.ok:
        last = f"n° {report.head.seq} {report.head.hash}" if report.head else "vide / empty"
        out.print(f"[green]Registre intact / ledger intact[/]: {report.count} entrée(s) / "
                      f"entries, tête / head {last}")
        return 0
    out.print(f"[red]Registre non intact / ledger not intact[/]: {len(report.problems)} "
                  "problème(s) / problem(s)")
    return 1


def _signing_keys(ctx: Context) -> StationKeys:
    """This station's keys, once its certificate chain is one verifiers accept."""
    keys = station_keys(ctx.settings)
    check_signing_keys(keys)
    return keys


def cmd_head(args: argparse.Namespace, ctx: Context) -> int:
    keys = _signing_keys(ctx) if args.output is not None else None
    document = Ledger(ctx.registry).head_document()
    if document["count"] == 0:
        print("Registre vide / empty ledger (n° 0)")
    else:
        print(f"n° {document['seq']}  sha256 {document['hash']}  "
              f"({document['count']} entrée(s) / entries)")
    if keys is not None:
        write_atomic(args.output, sign_document(document, keys))
        print(f"Tête signée écrite / signed head written: {args.output}")
    return 0


def cmd_export(args: argparse.Namespace, ctx: Context) -> int:
    keys = _signing_keys(ctx)
    document = Ledger(ctx.registry).export_document(ctx.settings.documents_dir)
    write_atomic(args.output, sign_document(document, keys))
    withdrawn = len(document["withdrawals"])
    also = f", {withdrawn} retrait(s) / withdrawal(s)" if withdrawn else ""
    print(f"Registre exporté / ledger exported: {len(document['entries'])} entrée(s) / entries"
          f"{also}, tête / head n° {document['head']['seq']} -> {args.output}")
    return 0


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    entries = Ledger(ctx.registry).entries()
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], ensure_ascii=False, indent=2))
        return 0
    table = new_table("Registre des documents / Ledger",
                      ("N°", "Date (UTC)", "Type / Kind", "Document", "Empreinte / Hash"))
    for e in entries:
        add_row(table, str(e.seq), e.at, e.kind, e.doc_id, e.hash)
    console().print(table)
    return 0
