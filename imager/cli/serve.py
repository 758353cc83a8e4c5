"""`imager serve`: run the station (API + local agent), optionally on a lab bench.

HTTPS by default wherever the network can see the station: `--listen` on an
address other than loopback serves HTTPS with a certificate from the
station's own TLS CA (imager.station.tls), unless `--insecure-http`. On
loopback (127.0.0.0/8, ::1, localhost) only this machine's processes reach
it, and it stays HTTP unless `--tls`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from imager.cli.context import Context
from imager.errors import UsageError
from imager.host.net import is_loopback
from imager.station.liveness import DEFAULT_TIMEOUT
from imager.station.policy import AUTO_ERASE, ServicePolicy

if TYPE_CHECKING:
    from imager.cli.compose import ServeOptions
    from imager.station.push import PortalTarget
    from imager.station.tls import ServerTls

MiB = 1 << 20
INSECURE = ("les jetons des agents et des outils et les rapports des disques traversent le réseau "
            "en clair : quiconque y est peut les lire, et se faire passer pour un agent ou pour "
            "la station / the agents' and tools' tokens and the drives' reports cross the "
            "network in clear: anyone on it can read them, and act as an agent or as the "
            "station")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", description="Démarre la station : API des agents, agent local des "
                                   "stations d'accueil, certificats. / Runs the station: the "
                                   "agents' API, the local dock agent, certificates.")
    p.add_argument("--listen", default="127.0.0.1:8470", metavar="HOST:PORT",
                   help="where to listen (default %(default)s); anywhere but loopback the "
                        "station serves HTTPS (0.0.0.0:8470: every address of this machine)")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true",
                     help="serve HTTPS on loopback too (elsewhere it is the default)")
    tls.add_argument("--insecure-http", action="store_true",
                     help="serve plain HTTP on an address other than loopback: UNSAFE, "
                          + INSECURE.split(" / ")[1] + "; only on a network that is yours "
                          "alone, for a test")
    p.add_argument("--tls-name", action="append", default=[], metavar="NAME",
                   help="one more DNS name or address agents use to reach the station, put "
                        "in its certificate (repeatable); the listen address and the "
                        "hostname are in it already")
    p.add_argument("--lab", type=int, default=0, metavar="N",
                   help="attach N virtual drives (loop devices) and watch only them")
    p.add_argument("--lab-size-mib", type=int, default=256)
    p.add_argument("--auto-erase", choices=AUTO_ERASE, default="known-donation",
                   help="erase a drive as soon as it is plugged in: never, only when intake "
                        "tied it to a donation (default), or always")
    p.add_argument("--laptop-image", metavar="NAME",
                   help="the catalogue image a laptop of a donation receives once its "
                        "drive's erasure is certified (default: a technician installs it)")
    p.add_argument("--no-confirm-triage", action="store_true",
                   help="with --laptop-image: install it when triage proposes reuse, "
                        "without waiting for a person to confirm it")
    p.add_argument("--no-auto-resume", action="store_true",
                   help="interrupted jobs wait for `resume` instead of going on")
    p.add_argument("--no-auto-certify", action="store_true")
    p.add_argument("--agent-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="an agent silent this long has its running jobs marked interrupted "
                        "(they resume when it is back); default %(default)s")
    p.add_argument("--no-local-agent", action="store_true",
                   help="do not watch this machine's docks")
    p.add_argument("--portal", metavar="URL",
                   help="push issued documents, the ledger and donations to the network's "
                        "portal at URL, in the background (outbound only; retried until it "
                        "answers)")
    p.add_argument("--portal-ca", type=Path, metavar="FILE",
                   help="the CA the portal's HTTPS certificate must chain to (PEM)")
    p.add_argument("--portal-every", type=float, default=60.0, metavar="SECONDS",
                   help="how often to push (and the longest wait before a retry); default "
                        "%(default)s")
    p.add_argument("--api-docs", action="store_true",
                   help="also serve the API's interactive documentation (/docs, "
                        "/openapi.json) to whoever reaches the port: for development")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    from imager.cli.compose import ServeOptions, serve
    from imager.cli.render import console
    from imager.station.tokens import Tokens
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit():
        raise UsageError(f"--listen {args.listen!r}: give HOST:PORT, e.g. 0.0.0.0:8470")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "weasyprint", "fontTools", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = ServeOptions(
        host=host, port=int(port), lab=args.lab,
        lab_size=args.lab_size_mib * MiB, local_agent=not args.no_local_agent,
        api_docs=args.api_docs,
        policy=ServicePolicy(auto_erase=args.auto_erase,
                             auto_resume=not args.no_auto_resume,
                             auto_certify=not args.no_auto_certify,
                             agent_timeout=args.agent_timeout,
                             laptop_image=args.laptop_image,
                             confirm_triage=not args.no_confirm_triage),
        tls=_server_tls(args, ctx, host), portal=_portal(args), portal_every=args.portal_every)
    Tokens.open(ctx.settings)
    ca = " --ca station-ca.pem" if options.tls else ""
    console(stderr=True, markup=False).print(
        f"Station : {options.url}  (registre / registry {ctx.settings.database_url})\n"
        f"{_transport(options)}\n"
        f"Jeton des outils / tools' token: {Tokens.path(ctx.settings)} (operator)\n"
        f"Agent d'un portable / laptop agent: imager agent run --station {options.url}{ca} "
        "--machine, puis / then: imager agents pair CODE (le code s'affiche sur le portable / "
        "the laptop shows the code)\n"
        + (f"Portail du réseau / network's portal: {options.portal.url} (envois sortants, "
           f"toutes les {options.portal_every:g} s / outbound pushes, every "
           f"{options.portal_every:g} s)\n" if options.portal else "")
        + "Arrêt / stop: Ctrl-C (les effacements en cours s'arrêtent proprement et reprennent "
        "au prochain démarrage / running erasures stop cleanly and resume at next start)")
    serve(ctx.settings, options)
    return 0


def _portal(args: argparse.Namespace) -> PortalTarget | None:
    from imager.station.push import PortalTarget
    if args.portal is None:
        return None
    if not args.portal.startswith(("https://", "http://")):
        raise UsageError(f"--portal {args.portal!r}: give the portal's URL, e.g. "
                         "https://reseau.example")
    return PortalTarget(args.portal.rstrip("/"), args.portal_ca)


def _server_tls(args: argparse.Namespace, ctx: Context, host: str) -> ServerTls | None:
    """The certificate to serve, or None for plain HTTP (loopback without --tls,
    or --insecure-http)."""
    from imager.certify.identity import load_profile
    from imager.certify.keys import keys_dir
    from imager.station.tls import listen_names, server_tls
    if not (args.tls if is_loopback(host) else not args.insecure_http):
        if args.tls_name:
            raise UsageError("--tls-name nomme le certificat HTTPS : ajoutez --tls sur la "
                             "boucle locale / --tls-name names the HTTPS certificate: add "
                             "--tls on loopback (and leave out --insecure-http)")
        return None
    return server_tls(keys_dir(ctx.settings), load_profile(ctx.settings),
                      listen_names(host, args.tls_name))


def _transport(options: ServeOptions) -> str:
    """The banner's line on HTTPS, or on plain HTTP and why it is safe or not."""
    from imager.certify.keys import fingerprint
    tls = options.tls
    if tls is None:
        if is_loopback(options.host):
            return ("HTTP sur la boucle locale : cette machine seule / HTTP on loopback: this "
                    "machine only (--tls for HTTPS)")
        return f"ATTENTION / WARNING: HTTP en clair / plain HTTP (--insecure-http): {INSECURE}"
    origin = ("installé / installed" if tls.installed
              else "émis maintenant / issued now" if tls.issued else "CA TLS de la station / "
              "station's TLS CA")
    return (f"HTTPS : certificat / certificate for {', '.join(tls.names)} ({origin}), jusqu'au "
            f"/ until {tls.cert.not_valid_after_utc:%Y-%m-%d}\n"
            f"CA des agents / the agents' CA: `imager keys tls-ca station-ca.pem` "
            f"({fingerprint(tls.pinned)})")
