"""`imager lab up|down|list`: the bench of virtual drives."""

from __future__ import annotations

import argparse

from imager.cli.context import Context
from imager.cli.render import add_row, console, new_table
from imager.host import lab
from imager.registry.jobs import RegistryJobStore

GiB = 1 << 30


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("lab")
    lsub = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    u = lsub.add_parser("up", help="create and attach the virtual drives")
    u.add_argument("--drives", type=int, default=4)
    u.add_argument("--size-gib", type=float, default=1.0)
    u.set_defaults(func=cmd_up)
    lsub.add_parser("down", help="detach them").set_defaults(func=cmd_down)
    lsub.add_parser("list", help="show them").set_defaults(func=cmd_list)


def _show(bays: list[lab.Bay]) -> None:
    table = new_table("Banc de test / Lab bench",
                      ("Baie / Bay", "Disque / Device", "Taille / Size", "Image"))
    for b in bays:
        add_row(table, str(b.number), b.device or "(détaché / detached)",
                f"{b.size / GiB:.1f} GiB", str(b.image))
    console().print(table)


def cmd_up(args: argparse.Namespace, ctx: Context) -> int:
    size = int(args.size_gib * GiB) // 4096 * 4096
    bays = lab.up(ctx.settings, count=args.drives, size=size)
    RegistryJobStore(ctx.registry).reconcile()
    _show(bays)
    devs = " ".join(b.device for b in bays if b.device)
    console(markup=False).print(f"Registre / registry: {ctx.settings.database_url}\n"
                                f"Plan :            imager erase --plan {devs}\n"
                                f"Effacer / erase:  imager erase {devs}")
    return 0


def cmd_down(args: argparse.Namespace, ctx: Context) -> int:
    _show(lab.down(ctx.settings))
    return 0


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    _show(lab.bays(ctx.settings))
    return 0
