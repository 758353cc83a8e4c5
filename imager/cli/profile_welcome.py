"""`imager profile welcome NAME --preview [--out DIR] [--today DATE]`: render a
profile's welcome page ("Prendre en main mon matériel") to look at it.

`register(subparsers)` adds the `welcome` action to `imager profile`'s
subparsers (imager/cli/profile.py wires it)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import date
from pathlib import Path

from imager.cli.context import Context
from imager.errors import UsageError

SHIPPED = Path(__file__).resolve().parents[2] / "profiles"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("welcome", help="page d'accueil du profil / the profile's welcome page")
    p.add_argument("name", metavar="PROFIL",
                   help="nom d'un profil livré, ou son dossier / a shipped profile's name, or "
                        "its folder (e.g. bureau-solidaire)")
    p.add_argument("--preview", action="store_true", required=True,
                   help="construire la page pour la regarder / render the page to look at it")
    p.add_argument("--out", type=Path, metavar="DOSSIER",
                   help="dossier de sortie / output folder (default: a new temporary folder)")
    p.add_argument("--today", type=date.fromisoformat, metavar="AAAA-MM-JJ",
                   help="date de mise à jour affichée / build date shown (default: today)")
    p.set_defaults(func=cmd_welcome)


def profile_dir(name: str) -> Path:
    """The folder of profile `name`: a path to it, or a profile shipped in profiles/."""
    given = Path(name)
    if given.is_dir():
        return given
    shipped = SHIPPED / name
    if shipped.is_dir():
        return shipped
    names = sorted(p.name for p in SHIPPED.iterdir() if (p / "welcome").is_dir())
    raise UsageError(f"profil {name!r} introuvable : ni un dossier, ni un profil livré "
                     f"({', '.join(names) or 'aucun'}) / profile {name!r} not found: neither "
                     f"a folder nor a shipped profile ({', '.join(names) or 'none'})")


def cmd_welcome(args: argparse.Namespace, ctx: Context) -> int:
    from imager.profile.welcome import preview

    out = args.out or Path(tempfile.mkdtemp(prefix="accueil-"))
    index = preview(profile_dir(args.name), out, today=args.today or date.today())
    print(index)
    print(f"ouvrir / open: {index.as_uri()}", file=sys.stderr)
    return 0
