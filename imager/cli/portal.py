"""`imager portal serve|push|waiting`: the network's portal, and a station's pushes to it.

- `serve` runs the portal (imager.portal): on the network's Internet host, with its
  own database (PostgreSQL), the network CA's certificate (the only thing it
  trusts: it holds no key) and its HTTPS certificate (a public CA's, or any the
  stations pin with --ca).
- `push` (on a station) sends the portal what it does not hold yet
  (imager.station.push); `imager serve --portal URL` does the same in the
  background.
- `waiting` (on a station) says how much the portal has not acknowledged yet.
- `invite` (on the portal's host) makes a donor's or a coordinator's account and
  prints its single-use setup link (imager.portal.accounts).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import ssl
from pathlib import Path

from imager.cli import portal_messages
from imager.cli.context import Context
from imager.errors import UsageError
from imager.host.net import is_loopback


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("portal", description="Le portail du réseau, et les envois d'une "
                       "station vers lui / the network's portal, and a station's pushes to it")
    psub = p.add_subparsers(dest="portal_command", metavar="ACTION", required=True)
    sv = psub.add_parser("serve", help="démarrer le portail / run the portal",
                         description="Démarre le portail : réception des envois des stations, "
                         "vérification publique. / Runs the portal: the stations' pushes, the "
                         "public verification.")
    sv.add_argument("--listen", default="127.0.0.1:8480", metavar="HOST:PORT",
                    help="where to listen (default %(default)s)")
    sv.add_argument("--database", required=True, metavar="URL",
                    help="the portal's database, e.g. postgresql+psycopg://portail@/portail "
                         "(its own: not a station's registry)")
    sv.add_argument("--network-ca", required=True, type=Path, metavar="FILE",
                    help="the network CA's certificate (PEM): only stations it certified may "
                         "push, only documents that chain to it are shown")
    sv.add_argument("--tls-cert", type=Path, metavar="FILE",
                    help="the portal's HTTPS certificate, then its issuers (PEM)")
    sv.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key (PEM)")
    sv.add_argument("--insecure-http", action="store_true",
                    help="serve plain HTTP on an address other than loopback: only behind a "
                         "proxy that does HTTPS, on a network that is yours alone")
    sv.add_argument("--keep-messages", type=int, default=90, metavar="DAYS",
                    help="days the beneficiaries' messages are kept after they arrived "
                         "(default %(default)s)")
    sv.add_argument("--forwarded-allow-ips", metavar="IPS",
                    help="behind a reverse proxy: its addresses (comma-separated), whose "
                         "X-Forwarded-For then gives each client's own address (the "
                         "sign-in and message limits are per address)")
    sv.add_argument("--verify-path", default="/verifier", metavar="PATH",
                    help="the path of the verify_url the stations print on their "
                         "certificates' QR codes (default %(default)s)")
    sv.set_defaults(func=cmd_serve)
    iv = psub.add_parser("invite", help="inviter un donateur / invite a donor",
                         description="Crée le compte d'un donateur (entreprise, mairie, "
                         "association) ou d'une coordination, et affiche son lien d'invitation "
                         "(à usage unique). / Makes a donor's or a coordinator's account and "
                         "prints its single-use invitation link.")
    iv.add_argument("--db", "--database", dest="database", required=True, metavar="URL",
                    help="the portal's database (as for `imager portal serve`)")
    iv.add_argument("--name", required=True, help="the organisation, e.g. \"Mairie de Gap\"")
    iv.add_argument("--siret", action="append", default=[], metavar="SIRET",
                    help="a SIRET whose donations it sees (repeat for several)")
    iv.add_argument("--donor", action="append", default=[], metavar="STATION:DONOR_REF",
                    help="a donor number at one station (its key or its name) whose "
                         "donations it sees (repeat for several)")
    iv.add_argument("--role", choices=("donor", "coordinator"), default="donor")
    iv.add_argument("--portal", metavar="URL", default="",
                    help="the portal's public address, for the link (e.g. "
                         "https://reseau.example)")
    iv.add_argument("--by", default="imager portal invite", help="who invites (kept)")
    iv.add_argument("--json", action="store_true")
    iv.set_defaults(func=cmd_invite)
    for name, helps, func in (
            ("push", "envoyer au portail ce qu'il n'a pas / send the portal what it lacks",
             cmd_push),
            ("waiting", "ce que le portail n'a pas encore reçu / what the portal has not "
             "acknowledged yet", cmd_waiting)):
        sp = psub.add_parser(name, help=helps)
        sp.add_argument("--portal", required=True, metavar="URL",
                        help="the portal, e.g. https://reseau.example")
        sp.add_argument("--json", action="store_true")
        if name == "push":
            sp.add_argument("--ca", type=Path, metavar="FILE",
                            help="the CA the portal's HTTPS certificate must chain to (PEM); "
                                 "default: this machine's trusted authorities")
            sp.add_argument("--batch", type=int, default=100, metavar="N",
                            help="ledger entries per request (default %(default)s)")
        sp.set_defaults(func=func)
    portal_messages.register(psub)


def cmd_push(args: argparse.Namespace, ctx: Context) -> int:
    from imager.cli.render import console
    from imager.station.push import PortalTarget, push
    report = push(ctx.settings, ctx.registry, PortalTarget(_url(args.portal), args.ca),
                  batch=args.batch)
    if args.json:
        print(json.dumps(report.to_dict()))
        return 0
    console(highlight=False).print(
        f"Portail / portal {report.portal}: {report.entries} entrée(s) du registre / ledger "
        f"entries, {report.documents} document(s), {report.donations} don(s) / donations "
        f"envoyés / sent en / in {report.batches} lot(s) / batches, {report.seconds:.1f} s; "
        f"le portail garde le registre jusqu'au n° / the portal holds the ledger up to seq "
        f"{report.head.get('seq')}")
    return 0


def cmd_waiting(args: argparse.Namespace, ctx: Context) -> int:
    from imager.station.push import waiting
    found = waiting(ctx.settings, ctx.registry, _url(args.portal))
    if args.json:
        print(json.dumps({"entries": found.entries, "donations": found.donations,
                          "total": found.total, "since": found.since}))
        return 0
    since = found.since or "jamais / never"
    print(f"En attente d'envoi / waiting: {found.entries} entrée(s) du registre / ledger "
          f"entries, {found.donations} don(s) / donations (dernier accusé de réception / "
          f"last acknowledged: {since})")
    return 0


def cmd_invite(args: argparse.Namespace, ctx: Context) -> int:
    from imager.portal.accounts import INVITE_DAYS, invite
    from imager.portal.db import PortalDb
    with PortalDb.open_url(args.database) as db, db.session() as s:
        made = invite(s, name=args.name, role=args.role, sirets=args.siret, donors=args.donor,
                      by=args.by)
    link = made.link(_url(args.portal) if args.portal else "")
    if args.json:
        print(json.dumps({"account": made.account_id, "name": made.name, "link": link,
                          "token": made.token, "days": INVITE_DAYS}))
        return 0
    print(f"Compte / account {made.account_id} « {made.name} » ({args.role})\n"
          f"Lien d'invitation, valable une fois, {INVITE_DAYS} jours / invitation link, "
          f"single use, {INVITE_DAYS} days:\n{link}")
    if not args.portal:
        print("(ajoutez devant l'adresse du portail / put the portal's address before it)")
    return 0


def _url(url: str) -> str:
    if not url.startswith(("https://", "http://")):
        raise UsageError(f"--portal {url!r}: give the portal's URL, e.g. https://reseau.example")
    return url.rstrip("/")


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    import uvicorn

    from imager.certify.keys import load_cert
    from imager.certify.signing import Trust
    from imager.cli.render import console
    from imager.portal.app import Portal, create_app
    from imager.portal.db import PortalDb
    from imager.portal.messages import MessagePolicy
    from imager.portal.web import TAKEN
    from imager.store.db import safe_url
    from imager.web.server import CIPHERS
    from imager.web.verify import path_of
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        raise UsageError(f"--listen {args.listen!r}: give HOST:PORT, e.g. 0.0.0.0:443")
    tls = _tls(args, host)
    anchors = load_cert(args.network_ca)
    path = path_of(args.verify_path, TAKEN)
    if path != args.verify_path.rstrip("/"):
        raise UsageError(f"--verify-path {args.verify_path!r}: a path such as /verifier, not "
                         f"under {', '.join(sorted('/' + t for t in TAKEN))}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "weasyprint", "fontTools", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    db = PortalDb.open_url(args.database)
    scheme = "https" if tls else "http"
    console(stderr=True, markup=False).print(
        f"Portail / portal: {scheme}://{host}:{port}  (base / database "
        f"{safe_url(args.database)})\n"
        f"AC du réseau / network CA: {', '.join(c.subject.rfc4514_string() for c in anchors)}\n"
        f"Vérification publique / public verification: {path}\n"
        "Aucune clé de signature ici : le portail garde ce que les stations ont signé / no "
        "signing key here: the portal keeps what the stations signed")
    if args.keep_messages < 1:
        raise UsageError(f"--keep-messages {args.keep_messages}: give a number of days, 1 or "
                         "more")
    portal = Portal(db, Trust(anchors), path,
                    messages=MessagePolicy(keep_days=args.keep_messages))
    app = create_app(portal)
    # What start-up made lives as long as the process: out of the collector's full
    # passes, which would stall requests now and then (as `imager serve` does).
    gc.collect()
    gc.freeze()
    try:
        uvicorn.run(app, host=host, port=int(port),
                    log_level="warning", access_log=False,
                    proxy_headers=bool(args.forwarded_allow_ips),
                    forwarded_allow_ips=args.forwarded_allow_ips,
                    ssl_certfile=str(tls[0]) if tls else None,
                    ssl_keyfile=str(tls[1]) if tls else None, ssl_ciphers=CIPHERS)
    finally:
        portal.close()
    return 0


def _tls(args: argparse.Namespace, host: str) -> tuple[Path, Path] | None:
    """The certificate and key to serve, checked together; None for plain HTTP
    (loopback without them, or --insecure-http)."""
    if args.tls_cert is None and args.tls_key is None:
        if is_loopback(host) or args.insecure_http:
            return None
        raise UsageError("le portail est sur Internet : donnez --tls-cert et --tls-key (ou "
                         "--insecure-http derrière un mandataire HTTPS) / the portal faces the "
                         "Internet: give --tls-cert and --tls-key (or --insecure-http behind an "
                         "HTTPS proxy)")
    if args.tls_cert is None or args.tls_key is None:
        raise UsageError("--tls-cert et --tls-key vont ensemble / go together")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--tls-cert {args.tls_cert} / --tls-key {args.tls_key}: {exc}: give "
                         "the certificate (then its issuers) and the key it was issued "
                         "for, both PEM") from exc
    return args.tls_cert, args.tls_key
