"""`imager image create|add|list|show|verify|sign|rm`: the OS images of the station."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.markup import escape

from imager.cli.context import Context
from imager.cli.image_deploy import register_deploy
from imager.cli.render import add_row, console, new_table
from imager.errors import UsageError
from imager.imaging import create as creating
from imager.imaging.bmap import human_size
from imager.imaging.catalogue import Catalogue, Entry, existing_keys, trust_for

_MARKS = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
NO_KEY = ("manifeste non signé : cette station n'a pas encore de clé (`imager keys show` la "
          "crée), puis `imager image sign {name} {version}` / manifest not signed: this "
          "station has no key yet (`imager keys show` creates it), then "
          "`imager image sign {name} {version}`")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("image")
    isub = p.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    cr = isub.add_parser("create", help="image compressée + bmap + manifeste depuis une image "
                                        "brute creuse / compressed image + bmap + manifest "
                                        "from a sparse raw image")
    cr.add_argument("raw", type=Path, metavar="RAW",
                    help="image disque brute, creuse / sparse raw disk image")
    cr.add_argument("--name", required=True, help="nom / name, e.g. debian12-bureau")
    cr.add_argument("--version", required=True, help="version, e.g. 2026.1")
    cr.add_argument("--profile", help="profil installé par l'image / profile the image holds")
    cr.add_argument("--out", type=Path, metavar="DOSSIER",
                    help="dossier de sortie / output folder (default: the catalogue)")
    cr.add_argument("--level", type=int, default=None, help="niveau / zstd level (1-19, default 3)")
    cr.add_argument("--threads", type=int, default=-1, help="zstd threads (-1: one per CPU)")
    cr.set_defaults(func=cmd_create)
    ad = isub.add_parser("add", help="ajouter une image faite ailleurs / add an image made "
                                     "elsewhere")
    ad.add_argument("manifest", type=Path, metavar="MANIFEST.json")
    ad.set_defaults(func=cmd_add)
    ls = isub.add_parser("list", help="les images du catalogue / the catalogue's images")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    sh = isub.add_parser("show", help="une image et son manifeste / one image and its manifest")
    _name_version(sh, version_required=False)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)
    vf = isub.add_parser("verify", help="vérifier fichiers, bmap, signature / verify files, "
                                        "bmap, signature")
    _name_version(vf, version_required=False)
    vf.add_argument("--full", action="store_true", help="tout décompresser et vérifier chaque "
                                                        "plage / decompress and check every range")
    vf.add_argument("--trust", type=Path, metavar="STATION.pem",
                    help="certificat du signataire / signer certificate (default: this station)")
    vf.add_argument("--require-signature", action="store_true",
                    help="une image non signée échoue / an unsigned image fails")
    vf.set_defaults(func=cmd_verify)
    sg = isub.add_parser("sign", help="signer le manifeste / sign the manifest")
    _name_version(sg, version_required=True)
    sg.set_defaults(func=cmd_sign)
    rm = isub.add_parser("rm", help="supprimer une image / remove an image")
    _name_version(rm, version_required=True)
    rm.set_defaults(func=cmd_rm)
    register_deploy(isub)


def _name_version(parser: argparse.ArgumentParser, *, version_required: bool) -> None:
    parser.add_argument("name", metavar="NOM")
    parser.add_argument("version", metavar="VERSION", nargs=None if version_required else "?",
                        help=None if version_required else "default: the latest")


class _ProgressLine:
    """A single line on stderr, rewritten at most twice a second."""

    def __init__(self, label: str) -> None:
        self.label, self.started, self.shown = label, time.monotonic(), 0.0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.shown < (0.5 if self.tty else 5.0) and done < total:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-6)
        line = (f"{self.label}: {100 * done // max(total, 1)} % ({human_size(done)} / "
                f"{human_size(total)}, {human_size(rate)}/s)")
        print(f"\r{line}" if self.tty else line, end="" if self.tty else "\n",
              file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty and self.shown:
            print(file=sys.stderr)


def cmd_create(args: argparse.Namespace, ctx: Context) -> int:
    catalogue = Catalogue.of(ctx.settings)
    folder = args.out or catalogue.root
    keys = existing_keys(ctx.settings)
    progress = _ProgressLine("compression")
    try:
        built = creating.create(args.raw, folder, name=args.name, version=args.version,
                                profile=args.profile, level=args.level, threads=args.threads,
                                keys=keys, progress=progress)
    finally:
        progress.end()
    m = built.manifest
    out = console(highlight=False)
    out.print(f"Image créée / image created: {escape(m['name'])} {escape(m['version'])} "
              f"en / in {built.seconds:.1f} s")
    out.print(f"  {human_size(m['image_size'])} dont / of which "
              f"{human_size(m['mapped_bytes'])} utiles / mapped → "
              f"{human_size(m['image']['size'])} compressés / compressed")
    for path in built.files.all():
        if path.exists():
            out.print(f"  {escape(str(path))}")
    if not built.signed:
        out.print("[yellow]" + escape(NO_KEY.format(name=m["name"], version=m["version"]))
                  + "[/]")
    return 0


def cmd_add(args: argparse.Namespace, ctx: Context) -> int:
    entry = Catalogue.of(ctx.settings).add(args.manifest)
    console(highlight=False).print(f"Ajoutée au catalogue / added to the catalogue: "
                                   f"{escape(entry.name)} {escape(entry.version)} "
                                   f"({escape(str(entry.files.folder))})")
    return 0


def _files(entry: Entry) -> dict[str, str | None]:
    return {"image": str(entry.image), "bmap": str(entry.bmap_path),
            "manifest": str(entry.files.manifest),
            "signed_manifest": str(entry.files.signed) if entry.signed else None}


def _summary(entry: Entry) -> dict[str, object]:
    return {**entry.manifest, "signed": entry.signed, "files": _files(entry)}


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    catalogue = Catalogue.of(ctx.settings)
    entries, problems = catalogue.scan()
    if args.json:
        print(json.dumps([_summary(e) for e in entries], ensure_ascii=False, indent=2))
        return 0
    out = console(highlight=False)
    if not entries:
        out.print(f"Aucune image dans / no image in {escape(str(catalogue.root))}: "
                  "`imager image create RAW --name NOM --version V`")
    else:
        table = new_table(f"Images — {catalogue.root}", (
            "Nom / Name", "Version", "Profil / Profile", "Taille / Size", "Utile / Mapped",
            "Compressée / Compressed", "Créée / Built", "Signée / Signed"))
        for e in entries:
            m = e.manifest
            add_row(table, e.name, e.version, m["profile"] or "", human_size(m["image_size"]),
                    human_size(m["mapped_bytes"]), human_size(m["image"]["size"]), m["built"],
                    "oui / yes" if e.signed else "non / no")
        out.print(table)
    for problem in problems:
        out.print(f"[yellow]illisible / unreadable: {escape(problem)}[/]")
    return 0


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    entry = Catalogue.of(ctx.settings).get(args.name, args.version)
    view = _summary(entry)
    if args.json:
        print(json.dumps(view, ensure_ascii=False, indent=2))
        return 0
    m, out = entry.manifest, console(highlight=False)
    out.print(f"Image {escape(entry.name)} {escape(entry.version)}"
              f" — profil / profile {escape(m['profile'] or '-')}")
    rows = (("Créée / built", f"{m['built']} (imager {m.get('imager_version', '?')}, "
                              f"{m.get('source', '?')})"),
            ("Taille / size", f"{m['image_size']} octets / bytes ({human_size(m['image_size'])})"),
            ("Utile / mapped", f"{m['mapped_bytes']} octets / bytes, blocs / blocks of "
                               f"{m['block_size']}"),
            ("Compressée / compressed", f"{m['image']['size']} octets / bytes, "
                                        f"{m['image']['compression']}, sha256 "
                                        f"{m['image']['sha256']}"),
            ("bmap", f"sha256 {m['bmap']['sha256']}"),
            ("Signée / signed", "oui / yes" if entry.signed else "non / no"))
    for label, value in rows:
        out.print(f"  {label}: {escape(value)}")
    for label, path in _files(entry).items():
        if path:
            out.print(f"  {label}: {escape(path)}")
    return 0


def cmd_verify(args: argparse.Namespace, ctx: Context) -> int:
    catalogue = Catalogue.of(ctx.settings)
    entry = catalogue.get(args.name, args.version)
    progress = _ProgressLine("vérification / verification") if args.full else None
    try:
        report = catalogue.verify(entry, full=args.full,
                                  trust=trust_for(ctx.settings, args.trust),
                                  require_signature=args.require_signature, progress=progress)
    finally:
        if progress is not None:
            progress.end()
    out = console(highlight=False, soft_wrap=True)
    for status, text in report.lines:
        out.print(f"{_MARKS[status]} {escape(text)}")
    what = f"{escape(entry.name)} {escape(entry.version)}"
    if report.ok:
        depth = "complète / full" if args.full else "fichiers / files (--full: every range)"
        out.print(f"[green]Image intacte / image intact[/]: {what} — {depth}")
        return 0
    out.print(f"[red]Image NON intacte / image NOT intact[/]: {what}")
    return 1


def cmd_sign(args: argparse.Namespace, ctx: Context) -> int:
    catalogue = Catalogue.of(ctx.settings)
    entry = catalogue.get(args.name, args.version)
    keys = existing_keys(ctx.settings)
    if keys is None:
        raise UsageError(NO_KEY.format(name=entry.name, version=entry.version))
    catalogue.sign(entry, keys)
    console(highlight=False).print(f"Manifeste signé / manifest signed: "
                                   f"{escape(str(entry.files.signed))} ({keys.fingerprint})")
    return 0


def cmd_rm(args: argparse.Namespace, ctx: Context) -> int:
    entry = Catalogue.of(ctx.settings).remove(args.name, args.version)
    console(highlight=False).print(f"Image supprimée / image removed: {escape(entry.name)} "
                                   f"{escape(entry.version)} ({escape(str(entry.files.folder))})")
    return 0
