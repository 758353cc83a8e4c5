"""`imager image deploy NAME DEVICE...`: write, read back, customise, record."""

from __future__ import annotations

import argparse
import json
import threading
from typing import Any

from rich.console import Console
from rich.progress import DownloadColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from imager.cli.context import Context
from imager.cli.render import StepBars, add_row, console, new_table
from imager.errors import UsageError
from imager.jobs.batch import stop_on_signals

PHASES = {"write": "Écriture / writing", "verify": "Relecture / read-back"}


def register_deploy(isub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = isub.add_parser("deploy", help="write an image onto erased drives, read it back",
                        description="Écrit une image sur des disques effacés, la relit, "
                                    "personnalise le système. / Writes an image onto erased "
                                    "drives, reads it back, customises the system.")
    d.add_argument("image", metavar="NAME", help="an image of the catalogue (`imager image "
                                                 "list`)")
    d.add_argument("devices", nargs="+", metavar="DEVICE",
                   help="one or more drives, written at once from one decompression")
    d.add_argument("--version", help="default: the newest")
    d.add_argument("--verify", choices=("full", "sample", "none"), default="full",
                   help="read back every written range (default), a sample, or nothing")
    d.add_argument("--sample", type=float, default=0.05, metavar="FRACTION")
    d.add_argument("--hostname", help="the machine's name (one device only)")
    d.add_argument("--asset-tag", help="name the machine from its asset tag (one device only)")
    d.add_argument("--grow", choices=("now", "first-boot", "no"), default="now",
                   help="grow the last partition to the disk now (default), at first boot, "
                        "or not")
    d.add_argument("--technician", metavar="NAME")
    d.add_argument("--allow-unerased", action="store_true",
                   help="lab use: accept a drive without a verified erasure on record")
    d.add_argument("--allow-file", action="store_true", help="accept regular files as targets")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_deploy)


def _hostnames(args: argparse.Namespace) -> dict[str, str]:
    if not (args.hostname or args.asset_tag):
        return {}
    if len(args.devices) != 1:
        raise UsageError("--hostname and --asset-tag name one machine: give one device")
    if args.hostname:
        return {args.devices[0]: args.hostname}
    from imager.imaging.after import hostname_for
    return {args.devices[0]: hostname_for(args.asset_tag)}


def cmd_deploy(args: argparse.Namespace, ctx: Context) -> int:
    from imager.imaging.catalogue import Catalogue
    from imager.jobs import image as imaging
    from imager.store.people import find_technician
    entry = Catalogue.of(ctx.settings).get(args.image, args.version)
    actor = "imager"
    if args.technician:
        with ctx.registry.session(readonly=True) as s:
            actor = find_technician(s, args.technician).name
    req = imaging.Request(entry=entry, devices=args.devices, actor=actor, verify=args.verify,
                          sample=args.sample, allow_unerased=args.allow_unerased,
                          allow_files=args.allow_file, grow=args.grow,
                          hostnames=_hostnames(args))
    err = console(stderr=True, markup=False)
    err.print(f"Image {entry.name} {entry.version} → {', '.join(args.devices)}")
    stop = threading.Event()
    with _Bars(err) as progress, stop_on_signals(stop):
        outcomes = imaging.run(ctx.registry, ctx.settings, req, progress=progress, stop=stop)
    if args.json:
        print(json.dumps([_row(o) for o in outcomes], ensure_ascii=False, indent=2))
    else:
        console().print(_table(outcomes))
    return 0 if all(o.ok for o in outcomes) else 1


class _Bars(StepBars):
    """Rich bars for the engine's (phase, done, total) callback."""

    def __init__(self, out: Console) -> None:
        super().__init__(out, DownloadColumn(binary_units=True), TimeRemainingColumn())

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.show(phase, PHASES.get(phase, phase), done=done, total=total)


def _row(o: Any) -> dict[str, Any]:
    r = o.result
    return {"device": o.device, "drive": o.drive_id, "deployment": o.deployment_id,
            "ok": o.ok, "error": o.error, "verify": r.verify,
            "written_bytes": r.written_bytes, "verified_bytes": r.verified_bytes,
            "mismatches": [list(m) for m in r.mismatches], "write_seconds": r.write_seconds,
            "verify_seconds": r.verify_seconds, "after": o.after}


def _table(outcomes: list[Any]) -> Table:
    table = new_table("Déploiement / Deployment", (
        "Disque / Drive", "N°", "Résultat / Result", "Écrit / Written", "Relu / Read back",
        "Durée / Time", "Détail / Detail"))
    for o in outcomes:
        r = o.result
        verdict = Text("installé et vérifié / imaged, verified", style="green") if o.ok \
            else Text("échec / failed", style="red")
        detail = o.error or "; ".join((o.after or {}).get("steps", []))
        add_row(table, o.device, str(o.drive_id), verdict, f"{r.written_bytes / 2**20:,.0f} MiB",
                f"{r.verified_bytes / 2**20:,.0f} MiB ({r.verify})",
                f"{r.write_seconds + r.verify_seconds:.1f} s", detail)
    return table
