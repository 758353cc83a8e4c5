"""`imager profile welcome NAME --preview [--out DIR] [--today DATE]`: render a
profile's welcome page ("Prendre en main mon matériel") to look at it.

`register(subparsers, parents=...)` adds the `welcome` action to `imager
profile`'s subparsers; imager/cli/profile.py wires it with its common options
(`--profiles DOSSIER`)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from imager.cli.context import Context
from imager.profile import spec


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], *,
             parents: Sequence[argparse.ArgumentParser] = ()) -> None:
    p = sub.add_parser("welcome", parents=list(parents),
                       help="page d'accueil du profil / the profile's welcome page")
    p.add_argument("name", metavar="PROFIL",
                   help="nom d'un profil (de --profiles), ou son dossier / a profile's name "
                        "(in --profiles), or its folder (e.g. bureau-solidaire)")
    p.add_argument("--preview", action="store_true", required=True,
                   help="construire la page pour la regarder / render the page to look at it")
    p.add_argument("--out", type=Path, metavar="DOSSIER",
                   help="dossier de sortie / output folder (default: a new temporary folder)")
    p.add_argument("--today", type=date.fromisoformat, metavar="AAAA-MM-JJ",
                   help="date de mise à jour affichée / build date shown (default: today)")
    p.set_defaults(func=cmd_welcome)


def profile_dir(name: str, root: Path = spec.PROFILES) -> Path:
    """The folder of profile `name`: a profile of `root`, or the path of its folder or
    profile.yaml (ProfileError, with the nearest name, if there is none)."""
    return spec.locate(name, root=root).parent


def cmd_welcome(args: argparse.Namespace, ctx: Context) -> int:
    from imager.profile.welcome import preview

    root = getattr(args, "profiles", spec.PROFILES)     # from `imager profile`'s options
    folder = profile_dir(args.name, root)
    out = args.out or Path(tempfile.mkdtemp(prefix="accueil-"))
    index = preview(folder, out, today=args.today or date.today())
    print(index)
    print(f"ouvrir / open: {index.as_uri()}", file=sys.stderr)
    return 0
