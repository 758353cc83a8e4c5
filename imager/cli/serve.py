"""`imager serve`: run the station (API + local agent), optionally on a lab bench."""

from __future__ import annotations

import argparse
import logging

from imager.cli.context import Context
from imager.station.liveness import DEFAULT_TIMEOUT
from imager.station.policy import AUTO_ERASE, ServicePolicy

MiB = 1 << 20


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", description="Démarre la station : API des agents, agent local des "
                                   "stations d'accueil, certificats. / Runs the station: the "
                                   "agents' API, the local dock agent, certificates.")
    p.add_argument("--listen", default="127.0.0.1:8470", metavar="HOST:PORT")
    p.add_argument("--lab", type=int, default=0, metavar="N",
                   help="attach N virtual drives (loop devices) and watch only them")
    p.add_argument("--lab-size-mib", type=int, default=256)
    p.add_argument("--auto-erase", choices=AUTO_ERASE, default="known-donation",
                   help="erase a drive as soon as it is plugged in: never, only when intake "
                        "tied it to a donation (default), or always")
    p.add_argument("--no-auto-resume", action="store_true",
                   help="interrupted jobs wait for `resume` instead of going on")
    p.add_argument("--no-auto-certify", action="store_true")
    p.add_argument("--agent-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="an agent silent this long has its running jobs marked interrupted "
                        "(they resume when it is back); default %(default)s")
    p.add_argument("--no-local-agent", action="store_true",
                   help="do not watch this machine's docks")
    p.add_argument("--api-docs", action="store_true",
                   help="also serve the API's interactive documentation (/docs, "
                        "/openapi.json) to whoever reaches the port: for development")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace, ctx: Context) -> int:
    from imager.cli.compose import ServeOptions, serve
    from imager.cli.render import console
    from imager.station.tokens import Tokens
    host, _, port = args.listen.rpartition(":")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("httpx", "weasyprint", "fontTools", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    options = ServeOptions(
        host=host or "127.0.0.1", port=int(port), lab=args.lab,
        lab_size=args.lab_size_mib * MiB, local_agent=not args.no_local_agent,
        api_docs=args.api_docs,
        policy=ServicePolicy(auto_erase=args.auto_erase,
                             auto_resume=not args.no_auto_resume,
                             auto_certify=not args.no_auto_certify,
                             agent_timeout=args.agent_timeout))
    Tokens.open(ctx.settings)
    console(stderr=True).print(
        f"Station : {options.url}  (registre / registry {ctx.settings.database_url})\n"
        f"Jeton des outils / tools' token: {Tokens.path(ctx.settings)} (operator)\n"
        f"Agent d'un portable / laptop agent: imager agent run --station {options.url} "
        "--machine, puis / then: imager agents pair CODE (le code s'affiche sur le portable / "
        "the laptop shows the code)\n"
        "Arrêt / stop: Ctrl-C (les effacements en cours s'arrêtent proprement et reprennent "
        "au prochain démarrage / running erasures stop cleanly and resume at next start)")
    serve(ctx.settings, options)
    return 0
