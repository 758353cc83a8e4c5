"""`imager boot build`: build (or take from the cache) the live system laptops boot,
then print its folder, the size of each file and the size budget check. The
folder is then <data dir>/boot/live (a link), where `imager boot serve` and
`imager boot usb` look by default."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import TextColumn, TimeElapsedColumn

from imager.boot import live
from imager.cli.context import Context
from imager.cli.render import StepBars, console
from imager.imaging.bmap import human_size

STEPS = {
    "resolve": "Versions du jour / today's versions (Debian, PyPI)",
    "mmdebstrap": "Installation (mmdebstrap)",
    "kernel": "Noyau et pilotes / kernel and modules",
    "python": "Python (PyPI)",
    "initramfs": "live.img (cpio | zstd)",
    "imager": "imager.img (le code / the code)",
}


def register_actions(bsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `build` to the subcommands of `imager boot`."""
    b = bsub.add_parser("build", help="construire le système de l'atelier / build the live "
                                      "system (cached by content)")
    b.add_argument("--cache", type=Path, metavar="DOSSIER",
                   help=f"cache des constructions / build cache (env {live.CACHE_ENV}, "
                        f"default {live.DEFAULT_CACHE})")
    b.add_argument("--force", action="store_true",
                   help="tout reconstruire / build everything again")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_build)


def cmd_build(args: argparse.Namespace, ctx: Context) -> int:
    with _Bars(console(stderr=True, markup=False)) as bars:
        built = live.build(cache=args.cache, force=args.force, progress=bars)
    summary = _summary(built)
    summary["published"] = str(live.publish(built, ctx.settings.data_dir / "boot" / "live"))
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        _print(console(highlight=False), summary)
    return 0


def _summary(built: live.LiveSystem) -> dict[str, Any]:
    m = built.manifest
    return {
        "folder": str(built.folder), "cached": built.cached, "os_cached": built.os_cached,
        "os_key": m["os_key"], "code_key": m["code_key"], "suite": m["suite"],
        "kernel": m["kernel_version"], "packages": len(m["debian_packages"]),
        "wheels": len(m["python_wheels"]), "modules": m["modules"],
        "firmware": len(m["firmware"]),
        "files": {name: {"path": str(built.file(name)), **info}
                  for name, info in sorted(m["artefacts"].items())},
        "budget": m["budget"], "seconds": m["seconds"],
    }


def _print(out: Console, s: dict[str, Any]) -> None:
    how = ("repris du cache / taken from the cache" if s["cached"] else
           "imager.img construit, live.img repris du cache / imager.img built, live.img "
           "from the cache" if s["os_cached"] else "construit / built")
    out.print(f"Système de l'atelier / live system ({escape(s['suite'])}, noyau / kernel "
              f"{escape(s['kernel'])}) : {how}")
    out.print(f"  {escape(s['folder'])}")
    out.print(f"  → {escape(s['published'])} (imager boot serve, imager boot usb)")
    for name, info in s["files"].items():
        out.print(f"  {name:<14} {human_size(info['bytes']):>10}  sha256 {info['sha256'][:16]}")
    out.print(f"  {s['packages']} paquets / packages, {s['wheels']} wheels, {s['modules']} "
              f"modules, {s['firmware']} firmware")
    budget = s["budget"]
    used, limit = human_size(budget["boot_bytes"]), human_size(budget["limit_bytes"])
    out.print("  vmlinuz + live.img + imager.img : " + (
        f"[green]{used}, dans le budget / within the budget ({limit})[/]" if budget["within"]
        else f"[red]{used}, AU-DELÀ du budget / OVER the budget ({limit})[/]"))
    seconds = s["seconds"]
    steps = ", ".join(f"{k} {v:.0f}" for k, v in seconds.items() if k not in ("total",
                                                                             "imager"))
    out.print(f"  live.img : {seconds['total']:.0f} s ({steps}) ; imager.img : "
              f"{seconds['imager']:.0f} s")


class _Bars(StepBars):
    """Rich bars for the build's steps."""

    def __init__(self, out: Console) -> None:
        super().__init__(out, TextColumn("{task.fields[detail]}"), TimeElapsedColumn())

    def __call__(self, event: live.LiveProgress) -> None:
        if event.step not in STEPS:
            return
        now = time.monotonic()
        if event.total is None and now - self.shown < 0.2:
            return
        self.shown = now
        if event.step not in self.tasks:
            for task in self.tasks.values():      # the steps before it are over
                done = self.progress.tasks[task].completed
                self.progress.update(task, total=max(done, 1), completed=max(done, 1))
        detail = (f"{event.done:.0f} " if event.total is None else "") + event.detail[:48]
        self.show(event.step, STEPS[event.step], done=event.done, total=event.total,
                  detail=detail)
