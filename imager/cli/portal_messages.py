"""`imager portal messages`: what beneficiaries wrote from their laptops' welcome
page (imager.portal.messages), read by a coordinator on the portal's host.

    imager portal messages --db URL [--unread] [--machine NAME] [--limit N] [--json]
    imager portal messages --db URL --mark-read ID [ID...] [--by NAME]
    imager portal messages --db URL --purge [--keep-days N]
"""

from __future__ import annotations

import argparse
import json

from imager.cli.context import Context
from imager.errors import UsageError


def register(psub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mp = psub.add_parser(
        "messages", help="messages des bénéficiaires / beneficiaries' messages",
        description="Les messages écrits sur la page d'accueil des ordinateurs donnés. / "
                    "The messages written on the welcome page of the laptops handed out.")
    mp.add_argument("--db", "--database", dest="database", required=True, metavar="URL",
                    help="the portal's database, e.g. postgresql+psycopg://portail@/portail")
    mp.add_argument("--unread", action="store_true", help="only the messages not read yet")
    mp.add_argument("--machine", metavar="NAME", help="only those of one laptop (asset tag)")
    mp.add_argument("--limit", type=int, default=100, metavar="N",
                    help="at most N messages, latest first (default %(default)s)")
    mp.add_argument("--mark-read", nargs="+", metavar="ID", help="mark these messages read")
    mp.add_argument("--by", metavar="NAME", help="with --mark-read: who read them")
    mp.add_argument("--purge", action="store_true",
                    help="delete the messages that arrived more than --keep-days ago")
    mp.add_argument("--keep-days", type=int, default=90, metavar="N",
                    help="with --purge: how many days a message is kept (default %(default)s)")
    mp.add_argument("--json", action="store_true")
    mp.set_defaults(func=cmd_messages)


def cmd_messages(args: argparse.Namespace, ctx: Context) -> int:
    from imager.portal import messages
    from imager.portal.db import PortalDb
    if args.mark_read and args.purge:
        raise UsageError("--mark-read et --purge : l'un ou l'autre / one or the other")
    if not 1 <= args.limit <= 10_000:
        raise UsageError(f"--limit {args.limit}: from 1 to 10000")
    with PortalDb.open_url(args.database) as db:
        if args.purge:
            gone = messages.purge(db, args.keep_days)
            _say(args, {"deleted": gone}, f"{gone} message(s) supprimé(s) / deleted "
                 f"(arrivés il y a plus de {args.keep_days} jours / older than "
                 f"{args.keep_days} days)")
            return 0
        if args.mark_read:
            unknown = messages.mark_read(db, args.mark_read, by=args.by)
            if unknown:
                raise UsageError(f"message(s) inconnu(s) / unknown: {', '.join(unknown)} "
                                 "(see `imager portal messages --db URL`); the others are "
                                 "marked read")
            _say(args, {"read": args.mark_read}, f"{len(args.mark_read)} message(s) lu(s) / "
                 "marked read")
            return 0
        found = messages.recent(db, unread=args.unread, limit=args.limit,
                                machine=args.machine)
    if args.json:
        print(json.dumps([m.to_dict() for m in found], ensure_ascii=False))
        return 0
    if not found:
        print("Aucun message / no message" + (" non lu / unread" if args.unread else ""))
    for m in found:
        state = f"lu / read {m.read_at:%Y-%m-%d %H:%M}" if m.read_at else "NON LU / UNREAD"
        print(f"── {m.id}  {m.machine}  {m.written_at:%Y-%m-%d %H:%M} UTC  [{m.lang}]  {state}")
        who = " — ".join(filter(None, (m.name, m.contact)))
        print(f"   {who or '(sans nom ni contact / no name nor contact)'}")
        for line in m.text.splitlines():
            print(f"   {line}")
    return 0


def _say(args: argparse.Namespace, data: dict[str, object], text: str) -> None:
    print(json.dumps(data) if args.json else text)
