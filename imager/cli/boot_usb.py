"""`imager boot usb DEVICE` and `imager boot usb-sync DEVICE`: the live system on a
USB stick (imager.boot.usb), and the stick's spool sent to the station when it
comes back.

`register_actions(bsub)` adds both actions to the `boot` group's subparsers
(the group belongs to `imager boot build`'s module); `register(sub)` makes a
`boot` group holding only these two, for a tree without the build.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from imager.cli.context import Context
from imager.errors import UsageError

if TYPE_CHECKING:
    from imager.agent.stick_sync import StickSync
    from imager.boot.usb import Stick, StickContent, StickFiles, StickProgress, WrittenStick
    from imager.settings import Settings

STEPS = {"check": "Vérification de la clé / checking the stick",
         "kit": "Kit hors ligne / offline kit",
         "save-spool": "Copie du spool de la clé sur la station / saving the stick's spool",
         "esp-image": "Préparation du système / preparing the system",
         "partition": "Partitions / partitioning",
         "data": "Partition de données / data partition (IMAGER-DATA)",
         "bios": "Démarrage BIOS / BIOS boot code",
         "check-spool": "Vérification du spool recopié / checking the carried spool"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("boot", help="démarrage des portables / laptops' boot")
    register_actions(p.add_subparsers(dest="boot_command", metavar="ACTION", required=True))


def register_actions(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `usb` and `usb-sync` actions of `imager boot`."""
    u = bsub.add_parser(
        "usb", help="écrire le système autonome sur une clé USB / write the live system "
                    "to a USB stick",
        description="Écrit sur la clé USB le système de la station (démarre en BIOS et en "
                    "UEFI, Secure Boot compris), le kit hors ligne et la CA de la station. "
                    "Tout le reste de la clé est effacé ; un spool non envoyé est gardé. / "
                    "Writes the live system (BIOS and UEFI boot, Secure Boot too), the "
                    "offline kit and the station's CA to a USB stick. Everything else on it "
                    "is erased; a spool not yet sent is kept.")
    u.add_argument("device", metavar="DEVICE", help="the stick, e.g. /dev/sdb")
    u.add_argument("--live", type=Path, metavar="DIR",
                   help="the live system's folder (`imager boot build`; default "
                        "<data dir>/boot/live)")
    u.add_argument("--station", metavar="URL", default=os.environ.get("IMAGER_STATION"),
                   help="the station's URL on the bench network (env IMAGER_STATION): the "
                        "stick then works on the network too; without it, offline only")
    u.add_argument("--image", metavar="NAME",
                   help="also carry this signed catalogue image in the offline kit: the "
                        "laptop installs it on each drive it erased and verified offline")
    u.add_argument("--image-version", metavar="VERSION", help="default: the newest")
    u.add_argument("--yes", action="store_true",
                   help="do not ask before erasing the stick")
    u.set_defaults(func=cmd_usb)
    s = bsub.add_parser(
        "usb-sync", help="envoyer le spool d'une clé USB à la station / upload a stick's "
                         "spool to the station",
        description="Envoie à la station les rapports du spool de la clé (partition "
                    "IMAGER-DATA) et les range dans spool/sent/. L'agent des baies de la "
                    "station le fait tout seul quand on y branche la clé (imager agent run, "
                    "--no-sync-sticks pour l'en empêcher). / Uploads the reports of the "
                    "stick's spool to the station and moves them to spool/sent/. The "
                    "station's dock agent does it by itself when the stick is plugged in "
                    "(imager agent run; --no-sync-sticks turns that off).")
    s.add_argument("device", metavar="DEVICE",
                   help="the stick (e.g. /dev/sdb) or its IMAGER-DATA partition")
    s.add_argument("--station", metavar="URL", default=os.environ.get("IMAGER_STATION"),
                   help="the station (env IMAGER_STATION)")
    s.add_argument("--ca", type=Path, metavar="FILE",
                   default=os.environ.get("IMAGER_STATION_CA") or None,
                   help="the CA of an https:// station (default: this station's own)")
    s.add_argument("--insecure-http", action="store_true",
                   help="allow an http:// station on another machine: UNSAFE")
    s.set_defaults(func=cmd_usb_sync)


# -- imager boot usb --------------------------------------------------------------------

def cmd_usb(args: argparse.Namespace, ctx: Context) -> int:
    from imager.boot import usb
    files = usb.StickFiles.in_folder(args.live or ctx.settings.data_dir / "boot" / "live")
    files.check()
    station = usb.check_station(args.station)
    stick = usb.check_stick(args.device, ctx.settings)
    if not args.yes and not _confirmed(stick):
        print("Rien n'a été écrit / nothing was written")
        return 1
    content = stick_content(ctx.settings, station, image=args.image,
                            image_version=args.image_version)
    written = write(args.device, files, content, ctx.settings, expect=stick)
    print(f"Clé prête / stick ready: {stick.describe()} en / in {written.seconds:.0f} s\n"
          f"  système / system: {written.esp_used / 1e6:.0f} Mo sur / of "
          f"{written.esp_size / 1e6:.0f} Mo (EFI), données / data: "
          f"{written.data_size / 1e9:.1f} Go (IMAGER-DATA)\n"
          f"  démarrage / kernel command line: {written.cmdline}\n"
          + (f"  spool gardé / spool kept: {written.carried} fichier(s) / file(s)\n"
             if written.carried else "")
          + f"Au retour de la clé / when the stick comes back: imager boot usb-sync "
            f"{args.device}")
    return 0


def write(device: str, files: StickFiles, content: StickContent, settings: Settings, *,
          expect: Stick | None = None, allow_loop: bool = False) -> WrittenStick:
    """write_stick with the progress shown on the terminal."""
    from imager.boot import usb
    from imager.cli.image_deploy import _Bars
    from imager.cli.render import console
    out = console(stderr=True)
    with _Bars(out) as bars:
        def progress(p: StickProgress) -> None:
            if p.step in ("esp", "verify") and p.total:
                bars("write" if p.step == "esp" else "verify", p.done, p.total)
            elif p.step in STEPS:
                out.print(STEPS[p.step], markup=False)
        return usb.write_stick(device, files, content, settings, expect=expect,
                               progress=progress, allow_loop=allow_loop)


def stick_content(settings: Settings, station: str | None, *, image: str | None = None,
                  image_version: str | None = None) -> StickContent:
    """What the station puts on a stick: the offline kit (`imager agent kit`: the
    signed erase policy, maybe a signed catalogue image) and its pinned CA."""
    from imager.boot.usb import StickContent
    from imager.cli.agent import write_offline_kit

    def kit(folder: Path) -> list[Path]:
        return write_offline_kit(settings, folder, image=image, image_version=image_version)[0]
    return StickContent(kit, station_ca(settings), station)


def station_ca(settings: Settings) -> bytes:
    """The certificate this station's agents pin (PEM), as `imager keys tls-ca` writes it."""
    from imager.certify.identity import load_profile
    from imager.certify.keys import keys_dir, pem
    from imager.station.tls import pinned
    return pem(pinned(keys_dir(settings), load_profile(settings))).encode("ascii")


def _confirmed(stick: Stick) -> bool:
    """The technician types "oui" after reading which stick will be erased."""
    if not sys.stdin.isatty():
        raise UsageError("pas de terminal pour confirmer / no terminal to confirm on: give "
                         f"--yes to write {stick.describe()}")
    print(f"TOUT le contenu de la clé {stick.describe()} sera effacé. / EVERYTHING on "
          f"{stick.describe()} will be erased.")
    try:
        answer = input("Écrire la clé ? Tapez oui / write the stick? Type yes: ")
    except EOFError:
        return False
    return answer.strip().lower() in ("oui", "yes")


# -- imager boot usb-sync ---------------------------------------------------------------

def cmd_usb_sync(args: argparse.Namespace, ctx: Context) -> int:
    if not args.station:
        raise UsageError("--station manque / is missing: give the station's URL (or set "
                         "IMAGER_STATION)")
    done = sync_stick(args.device, ctx.settings, station=args.station, ca=args.ca,
                      insecure_http=args.insecure_http)
    if done.result is None:
        print(f"{done.partition}: rien à envoyer / nothing to send ({done.sent_total} "
              "déjà envoyé(s) / already sent)")
        return 0
    r = done.result
    print(f"{done.partition}: appliqués / applied {r.applied}, déjà reçus / duplicates "
          f"{r.duplicate}, refusés / refused {r.refused}, restants / left {r.left}, mis de "
          f"côté / set aside {r.set_aside}; rangés dans / moved to spool/sent: "
          f"{done.sent_total}")
    return 0 if r.left == r.refused == r.set_aside == 0 else 1


def sync_stick(device: str, settings: Settings, *, station: str, ca: Path | None = None,
               insecure_http: bool = False) -> StickSync:
    """imager.agent.stick_sync.sync_stick with the trust of `--ca` / `--insecure-http`
    (this station's own CA for an https:// URL without --ca). The dock agent runs
    the same sync by itself when a stick is plugged into the station."""
    from imager.agent.stick_sync import sync_stick as sync
    from imager.agent.tls import station_trust
    with _trust_file(settings, station, ca) as pinned:
        trust = station_trust(station, pinned, insecure_http=insecure_http)
        return sync(device, settings, station=station, trust=trust)


@contextmanager
def _trust_file(settings: Settings, station: str, ca: Path | None) -> Iterator[Path | None]:
    """The CA to pin: the one given, or this station's own for an https:// URL."""
    if ca is not None or not station.startswith("https://"):
        yield ca
        return
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", prefix="station-ca-") as fh:
        fh.write(station_ca(settings))
        fh.flush()
        yield Path(fh.name)
