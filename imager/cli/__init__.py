"""The `imager` command: parse, call the library, render the result.

Each command group lives in its own module with a `register(subparsers)`
function; handlers take (args, ctx) and return an exit code. ImagerError is
caught once, here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from imager import __version__
from imager.cli import (
    agent,
    cert,
    donors,
    erase,
    image,
    intake,
    items,
    jobs,
    lab,
    ledger,
    machines,
    plans,
    serve,
)
from imager.cli.context import Context
from imager.errors import ImagerError
from imager.settings import Settings

GROUPS = (serve, agent, intake, erase, plans, jobs, items, machines, donors, cert, ledger, lab,
          image)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imager", description="Station d'effacement certifié et d'imagerie."
    )
    parser.add_argument("--version", action="version", version=f"imager {__version__}")
    parser.add_argument(
        "--data-dir", type=Path, help="registry, logs and documents (env IMAGER_DATA_DIR)"
    )
    parser.add_argument("--db-url", help="registry URL (env IMAGER_DB_URL); SQLite by default")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings.from_env(data_dir=args.data_dir, db_url=args.db_url)
    ctx = Context(settings)
    try:
        return int(args.func(args, ctx) or 0)
    except ImagerError as exc:
        print(f"imager: erreur / error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("imager: interrompu / interrupted", file=sys.stderr)
        return 130
    finally:
        ctx.close()
