"""The `imager` command: parse, call the library, render the result.

Each command group lives in its own module with a `register(subparsers)`
function; handlers take (args, ctx) and return an exit code. ImagerError is
caught once, here.

A module is imported only when its command runs (pip's `commands_dict`): the
commands' one-line summaries live in COMMANDS, so `imager --help` and finding
the command load no command module and none of the libraries they use
(SQLAlchemy, rich, cryptography, WeasyPrint...).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from imager import __version__
from imager.cli.context import Context
from imager.errors import ImagerError
from imager.host.files import private_data_dir
from imager.settings import Settings


class Command(NamedTuple):
    module: str     # under imager.cli; its register() adds the command's parser
    summary: str    # the line of `imager --help`


COMMANDS: dict[str, Command] = {
    "serve": Command("serve", "démarrer la station / run the station"),
    "portal": Command("portal", "portail du réseau, envois des stations / the network's "
                      "portal, stations' pushes"),
    "agent": Command("agent", "agent (stations d'accueil, portable démarré) / agent"),
    "agents": Command("agents", "agents de confiance : inscrire, révoquer / trusted agents"),
    "intake": Command("intake", "réception d'un don / intake of a donation"),
    "erase": Command("erase", "effacer des disques / erase drives"),
    "methods": Command("plans", "méthodes d'effacement / erase methods"),
    "jobs": Command("jobs", "tâches / jobs"),
    "drives": Command("items", "disques et leur état / drives and their state"),
    "machines": Command("machines", "machines, tri et orientation / machines and triage"),
    "donors": Command("donors", "donateurs / donors"),
    "donations": Command("donors", "dons / donations"),
    "technicians": Command("donors", "techniciens / technicians"),
    "cert": Command("cert", "certificats / certificates"),
    "keys": Command("cert", "clés de la station / station keys"),
    "ledger": Command("ledger", "registre des documents émis / ledger of issued documents"),
    "lab": Command("lab", "banc de test virtuel / virtual lab bench"),
    "image": Command("image", "images du système / OS images"),
    "profile": Command("profile", "profils du système installé / OS profiles"),
    "boot": Command("boot", "démarrage des portables (système de l'atelier) / live system"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `imager` parser. Without `command`: one line per command, nothing
    imported (it answers `imager --help` and finds the command); with it: the
    real parser of that command, from its module."""
    parser = argparse.ArgumentParser(
        prog="imager", description="Station d'effacement certifié et d'imagerie."
    )
    parser.add_argument("--version", action="version", version=f"imager {__version__}")
    parser.add_argument(
        "--data-dir", type=Path, help="registry, logs and documents (env IMAGER_DATA_DIR)"
    )
    parser.add_argument("--db-url", help="registry URL (env IMAGER_DB_URL); SQLite by default")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    if command is None:
        for name, (_, summary) in COMMANDS.items():
            sub.add_parser(name, help=summary, add_help=False)
    else:
        importlib.import_module(f"imager.cli.{COMMANDS[command].module}").register(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`argv` parsed in two steps: the light parser finds the command (or prints
    the help, the version, a usage error), then the command's parser reads it all."""
    args = list(sys.argv[1:] if argv is None else argv)
    found, _ = build_parser().parse_known_args(args)
    return build_parser(found.command).parse_args(args)


def _private(settings: Settings) -> None:
    """The data dir (donors' data, tokens, keys) made owner-only before any command."""
    if private_data_dir(settings.data_dir):
        print(f"imager: attention / warning: le dossier de données {settings.data_dir} était "
              "lisible par d'autres utilisateurs, il est maintenant réservé à son propriétaire "
              f"(chmod 700) / the data dir {settings.data_dir} was readable by other users, it "
              "is now owner-only (chmod 700)", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.from_env(data_dir=args.data_dir, db_url=args.db_url)
    ctx = Context(settings)
    try:
        _private(settings)
        return int(args.func(args, ctx) or 0)
    except ImagerError as exc:
        print(f"imager: erreur / error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imager: interrompu / interrupted", file=sys.stderr)
        return 130
    finally:
        ctx.close()
