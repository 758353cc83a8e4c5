"""`imager profile build NAME`: build a profile's OS image into the catalogue.

`register(psub)` adds `build` to the subcommands of `imager profile`; `run(spec,
...)` builds one BuildSpec and prints the result. The BuildSpec is the profile's
(`Profile.build_spec()`, with the profile's own package built first), or one read
from a JSON file with `--spec-json FILE` (imager.profile.spec_json)."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import TextColumn, TimeElapsedColumn

from imager.cli.context import Context
from imager.cli.render import StepBars, console
from imager.errors import UsageError
from imager.imaging.bmap import human_size
from imager.imaging.catalogue import Catalogue, existing_keys
from imager.profile.build import BuildProgress, BuiltImage, build, rebuild_root
from imager.profile.build_inputs import profile_build_spec, with_boot_report
from imager.profile.buildspec import BuildSpec
from imager.profile.spec import PROFILES
from imager.profile.spec_json import load_spec_json
from imager.settings import Settings

DEFAULT_CACHE = Path("/var/cache/imager-os")
STEPS = {
    "resolve": "Résolution des paquets / resolving packages",
    "download": "Téléchargement / download",
    "mmdebstrap": "Installation (mmdebstrap)",
    "disk": "Disque (partitions, ext4, GRUB)",
    "compress": "Compression (zstd)",
    "catalogue": "Catalogue",
    "rebuild": "Reconstruction hors ligne / offline rebuild",
}


def register(psub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `build` to the subcommands of `imager profile`."""
    b = psub.add_parser("build", help="construire l'image du profil / build the profile's "
                                      "OS image")
    b.add_argument("name", metavar="NOM", nargs="?", help="le profil / the profile")
    b.add_argument("--spec-json", type=Path, metavar="FICHIER.json",
                   help="la BuildSpec en JSON / the BuildSpec as JSON (instead of NOM)")
    b.add_argument("--cache-dir", type=Path, metavar="DOSSIER",
                   help="cache des constructions / build cache (env IMAGER_OS_CACHE, "
                        f"default {DEFAULT_CACHE})")
    b.add_argument("--profiles", type=Path, default=None, metavar="DOSSIER",
                   help="dossier des profils / profiles folder (default: profiles/)")
    b.add_argument("--boot-report", action="store_true",
                   help="l'image dit sur la console série sa langue, son clavier, son nom, "
                        "son profil et le Secure Boot (tests en VM) / the image reports on "
                        "its serial console (VM tests)")
    b.add_argument("--check-reproducible", action="store_true",
                   help="refaire la racine depuis les paquets gardés et comparer / rebuild "
                        "the root from the kept packages and compare its sha256")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace, ctx: Context) -> int:
    cache = args.cache_dir or Path(os.environ.get("IMAGER_OS_CACHE") or DEFAULT_CACHE)
    if args.spec_json is not None:
        spec = load_spec_json(args.spec_json)
    elif args.name:
        spec = profile_build_spec(args.name, profiles=args.profiles or PROFILES,
                                  debs_dir=cache / "profile-debs")
    else:
        raise UsageError("donnez un profil / give a profile name (imager profile list) or "
                         "--spec-json FILE")
    if args.boot_report:
        spec = with_boot_report(spec)
    return run(spec, settings=ctx.settings, cache_dir=cache, json_out=args.json,
               check_reproducible=args.check_reproducible)


def run(spec: BuildSpec, *, settings: Settings, cache_dir: Path, json_out: bool = False,
        check_reproducible: bool = False) -> int:
    """Build `spec` into the station's catalogue and print what was made."""
    catalogue = Catalogue.of(settings).root
    err = console(stderr=True, markup=False)
    same: bool | None = None
    with _Bars(err) as bars:
        built = build(spec, cache_dir=cache_dir, catalogue=catalogue,
                      keys=existing_keys(settings), progress=bars)
        if check_reproducible:
            with tempfile.TemporaryDirectory(prefix="rebuild-", dir=cache_dir) as work:
                again = rebuild_root(built, Path(work), progress=bars)
            same = again.sha256 == built.root_tar_sha256
    summary = _summary(built, same)
    if json_out:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        _print(console(highlight=False), summary)
    return 0 if same is not False else 1


def _summary(built: BuiltImage, same: bool | None) -> dict[str, Any]:
    entry = built.entry
    manifest = entry.manifest if entry is not None else {}
    return {
        "profile": built.spec.name, "profile_version": built.spec.version,
        "image": None if entry is None else {"name": entry.name, "version": entry.version,
                                             "signed": entry.signed,
                                             "manifest": str(entry.files.manifest)},
        "key": built.key, "cached": built.cached, "seconds": built.seconds,
        "raw_bytes": manifest.get("image_size"), "mapped_bytes": manifest.get("mapped_bytes"),
        "zstd_bytes": manifest.get("image", {}).get("size"),
        "root_tar_sha256": built.root_tar_sha256, "packages": len(built.packages),
        "kernel": built.record["kernel"], "repository": str(built.repo),
        "reproducible": same,
    }


def _print(out: Console, s: dict[str, Any]) -> None:
    image = s["image"] or {}
    seconds = f"{s['seconds'].get('total', 0):.0f} s"
    how = (f"reprise du cache en {seconds} / taken from the cache in {seconds}" if s["cached"]
           else f"construite en {seconds} / built in {seconds}")
    out.print(f"Image {escape(str(image.get('name')))} {escape(str(image.get('version')))} : "
              f"{how}")
    if s["raw_bytes"]:
        out.print(f"  {human_size(s['raw_bytes'])} dont / of which "
                  f"{human_size(s['mapped_bytes'])} utiles / mapped → "
                  f"{human_size(s['zstd_bytes'])} zstd")
    out.print(f"  {s['packages']} paquets / packages, noyau / kernel {s['kernel']}")
    out.print(f"  racine / root tar sha256 {s['root_tar_sha256']}")
    out.print(f"  paquets gardés / kept packages: {escape(s['repository'])}")
    if image and not image["signed"]:
        out.print("[yellow]manifeste non signé : la station n'a pas encore de clé "
                  "(`imager keys show`) / manifest not signed: no station key yet[/]")
    if s["reproducible"] is not None:
        out.print("  reproductible / reproducible: " + (
            "[green]oui, même sha256 / yes, same sha256[/]" if s["reproducible"]
            else "[red]NON, sha256 différent / NO, another sha256[/]"))


class _Bars(StepBars):
    """Rich bars for the build's progress: packages, steps or bytes per step."""

    def __init__(self, out: Console) -> None:
        super().__init__(out, TextColumn("{task.fields[amount]}"), TimeElapsedColumn())

    def __call__(self, event: BuildProgress) -> None:
        now = time.monotonic()
        if event.total is not None and event.done < event.total and now - self.shown < 0.2:
            return
        self.shown = now
        self.show(event.step, STEPS.get(event.step, event.step), done=event.done,
                  total=event.total, amount=_amount(event))


def _amount(event: BuildProgress) -> str:
    total = event.total
    if event.unit == "bytes":
        return f"{human_size(event.done)} / {human_size(total or 0)}"
    count = f"{event.done:.0f}/{total:.0f}" if total is not None else ""
    unit = "paquets / packages" if event.unit == "packages" else ""
    return " ".join(filter(None, (count, unit, event.detail[:40])))
