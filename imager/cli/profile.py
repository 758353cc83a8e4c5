"""`imager profile list|show|check|diff|package|welcome`: the OS profiles
(profiles/<name>/profile.yaml); `welcome --preview` is in profile_welcome.py."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from imager.cli import profile_build, profile_welcome
from imager.cli.context import Context
from imager.cli.render import add_row, console, new_table
from imager.errors import UsageError
from imager.profile import diff as diffing
from imager.profile import spec
from imager.profile.spec import Bookmark, Profile, ProfileError

ACCOUNT_FR = {"ask": "la personne crée son compte et son mot de passe / the person creates "
                     "their own account and password",
              "none": "aucun compte demandé / no account asked"}
HOSTNAME_FR = {"asset-tag": "{prefix}-<numéro d'inventaire, sinon n° de série / asset tag, "
                            "else serial number>",
               "fixed": "{prefix}"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("profile")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profiles", type=Path, default=spec.PROFILES, metavar="DOSSIER",
                        help="dossier des profils / profiles folder (default: %(default)s)")
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    add = functools.partial(_action, psub, common)
    add("list", "les profils / the profiles", cmd_list, prints_json=True)
    add("show", "un profil, résolu / one profile, resolved", cmd_show, name="NOM|CHEMIN",
        prints_json=True)
    add("check", "vérifier un profil / check a profile", cmd_check, name="NOM|CHEMIN")
    add("diff", "différences entre deux profils / differences between two profiles", cmd_diff,
        a="A", b="B", prints_json=True)
    pkg = psub.add_parser("package", parents=[common], help="le paquet du profil (page "
                          "d'accueil, règles du navigateur, premier démarrage) / the "
                          "profile's own package")
    pkg.add_argument("name", metavar="NOM|CHEMIN")
    pkg.add_argument("--out", type=Path, default=Path("."), metavar="DOSSIER",
                     help="où écrire le .deb / where to write the .deb (default: .)")
    pkg.add_argument("--date", type=date.fromisoformat, default=None, metavar="AAAA-MM-JJ",
                     help="date « mis à jour le » de la page d'accueil / the welcome page's "
                          "date (default: today)")
    pkg.set_defaults(func=cmd_package)
    profile_welcome.register(psub, parents=[common])
    profile_build.register(psub)


def _action(psub: argparse._SubParsersAction[argparse.ArgumentParser],
            common: argparse.ArgumentParser, action: str, summary: str,
            func: Callable[[argparse.Namespace, Context], int], *, prints_json: bool = False,
            **positionals: str) -> None:
    """An action of `imager profile`: its positionals (dest=METAVAR), `--json` if it
    can print data."""
    p = psub.add_parser(action, parents=[common], help=summary)
    for dest, metavar in positionals.items():
        p.add_argument(dest, metavar=metavar)
    if prints_json:
        p.add_argument("--json", action="store_true")
    p.set_defaults(func=func)


def cmd_package(args: argparse.Namespace, ctx: Context) -> int:
    from imager.profile import accueil
    profile = spec.load(args.name, root=args.profiles)
    args.out.mkdir(parents=True, exist_ok=True)
    deb = accueil.build(profile, args.out, today=args.date or date.today())
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    print(f"Paquet / package: {deb}\nsha256: {digest}")
    return 0


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    found = list(spec.load_all(args.profiles))
    if args.json:
        print(json.dumps([_summary(name, p) for name, p in found], ensure_ascii=False,
                         indent=2))
        return 0
    out = console(markup=False, highlight=False)
    if not found:
        out.print(f"Aucun profil dans / no profile in {args.profiles} (profiles/<nom>/"
                  "profile.yaml)")
        return 0
    table = new_table(f"Profils / Profiles — {args.profiles}",
                      ("Nom / Name", "Version", "Suite", "Titre / Title"))
    for name, p in found:
        if isinstance(p, ProfileError):
            add_row(table, name, "", "", Text(
                f"invalide / invalid: {len(p.problems)} problème(s) / problem(s) — "
                f"imager profile check {name}", style="red"))
        else:
            add_row(table, p.name, p.version, p.debian.suite, p.title)
    out.print(table)
    return 0


def _summary(name: str, p: Profile | ProfileError) -> dict[str, object]:
    if isinstance(p, ProfileError):
        return {"name": name, "valid": False, "problems": p.problems}
    return {"name": p.name, "valid": True, "version": p.version, "suite": p.debian.suite,
            "title": p.title, "desktop": p.desktop, "source": str(p.source)}


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    p = spec.load(args.name, root=args.profiles)
    if args.json:
        print(json.dumps(p.to_dict(), ensure_ascii=False, indent=2))
        return 0
    out = console(markup=False, highlight=False, soft_wrap=True)
    for line in profile_lines(p):
        out.print(line)
    return 0


def profile_lines(p: Profile) -> list[str]:
    """The resolved profile for a person, French first."""
    d, k, fb = p.debian, p.keyboard, p.first_boot
    lines = [f"Profil / profile {p.name} {p.version} — {p.title}",
             f"  Réseau / network: {p.network.name} (paquet / package {p.network.package})",
             f"  Debian: {d.suite} ({', '.join(d.components)}) — {d.mirror}, "
             f"sécurité / security {d.security_mirror}",
             f"  Langue / locale: {p.locale} — clavier / keyboard: {k.layout}"
             f"{' ' + k.variant if k.variant else ''} — fuseau / time zone: {p.timezone}",
             f"  Bureau / desktop: {p.desktop}",
             f"  Paquets / packages ({len(p.all_packages)}):"]
    lines += [f"    {group} ({len(names)}): {', '.join(names)}"
              for group, names in p.packages.items()]
    lines += _browser_lines(p)
    lines.append(f"  Contenu d'accueil / welcome content: {p.welcome or 'aucun / none'}")
    lines.append(f"  Premier démarrage / first boot: {ACCOUNT_FR[fb.account]}; nom / hostname "
                 + HOSTNAME_FR[fb.hostname].format(prefix=fb.hostname_prefix))
    lines.append("  Paquets en plus / extra packages: "
                 + ("aucun / none" if not p.extra_packages else ""))
    lines += [f"    {x.name} {x.version} — {x.why}" for x in p.extra_packages]
    lines.append(f"  Image: disque / disk {p.to_dict()['image']['disk']}")
    lines.append(f"  Fichier / file: {p.source} (sha256 {p.digest})")
    return lines


def _browser_lines(p: Profile) -> list[str]:
    if p.browser is None:
        return ["  Navigateur / browser: aucun / none"]
    b = p.browser
    lines = ["  Navigateur / browser: page d'accueil verrouillée sur la page d'accueil locale "
             "/ homepage locked to the local welcome page",
             f"    Marque-pages, dossier « {b.folder} » / bookmarks, folder \"{b.folder}\":"]
    if b.welcome_bookmark:
        lines.append(f"      {b.welcome_bookmark} → page d'accueil locale / local welcome page")
    return lines + _bookmark_lines(b.bookmarks, "      ")


def _bookmark_lines(bookmarks: tuple[Bookmark, ...], indent: str) -> list[str]:
    lines: list[str] = []
    for b in bookmarks:
        if b.is_folder:
            lines.append(f"{indent}{b.title}/")
            lines += _bookmark_lines(b.children, indent + "  ")
        else:
            lines.append(f"{indent}{b.title} → {b.url}")
    return lines


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    out = console(markup=False, highlight=False, soft_wrap=True)
    try:
        p = spec.load(args.name, root=args.profiles)
    except ProfileError as exc:
        _problems(out, exc)
        return 1
    out.print(f"ok — profil / profile {p.name} {p.version} ({p.source})")
    return 0


def _problems(out: Console, exc: ProfileError) -> None:
    out.print(f"Profil à corriger / profile to fix: {exc.source} — {len(exc.problems)} "
              "problème(s) / problem(s):", style="red")
    for problem in exc.problems:
        out.print(f"  - {problem}")


def cmd_diff(args: argparse.Namespace, ctx: Context) -> int:
    if all(x.endswith(".json") and Path(x).is_file() for x in (args.a, args.b)):
        return _diff_builds(args)
    a, b = (spec.load(x, root=args.profiles) for x in (args.a, args.b))
    changes = diffing.diff_profiles(a, b)
    if args.json:
        print(json.dumps([dataclasses.asdict(c) for c in changes], ensure_ascii=False,
                         indent=2, default=str))
        return 1 if changes else 0
    out = console(markup=False, highlight=False, soft_wrap=True)
    what = f"{a.name} {a.version} → {b.name} {b.version}"
    if not changes:
        out.print(f"Aucune différence / no difference: {what}")
        return 0
    out.print(f"{len(changes)} différence(s) / difference(s): {what}")
    for change in changes:
        out.print(f"  {diffing.describe(change)}")
    return 1


def _diff_builds(args: argparse.Namespace) -> int:
    """Two builds (image manifests or build.json of `imager profile build`): their
    profile, packages (.deb files) and root tar compared; 0 when the same."""
    from imager.profile.build_diff import diff_builds
    a, b = (_json_file(x) for x in (args.a, args.b))
    changes = diff_builds(a, b)
    if args.json:
        print(json.dumps([dataclasses.asdict(c) for c in changes], ensure_ascii=False,
                         indent=2))
    elif not changes:
        print(f"Aucune différence / no difference: {args.a} = {args.b}")
    else:
        print(f"{len(changes)} différence(s) / difference(s): {args.a} → {args.b}")
        for change in changes:
            print(f"  {change}")
    return 1 if changes else 0


def _json_file(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable JSON manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a manifest is a JSON object")
    return data
