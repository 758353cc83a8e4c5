"""`imager drives list|show|move`: where each drive is in its life, and why."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.table import Table
from sqlalchemy import select

from imager.cli.context import Context
from imager.cli.render import add_row, console, new_table
from imager.registry import items
from imager.registry.lifecycle import DRIVE_TRANSITIONS, ITEM_LABELS_FR
from imager.store.models import Drive
from imager.store.people import find_technician

# Moves a person makes by hand; the others follow jobs and documents.
MANUAL_DRIVE_MOVES = ("ready", "handed_over", "to_parts", "to_recycling", "to_destroy")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("drives")
    dsub = p.add_subparsers(dest="drives_command", metavar="ACTION", required=True)
    ls = dsub.add_parser("list", help="every drive, its state and presence")
    ls.add_argument("--state", action="append", choices=tuple(DRIVE_TRANSITIONS))
    ls.add_argument("--present", action="store_true", help="only drives plugged in now")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    sh = dsub.add_parser("show", help="one drive with its history (who, when, why)")
    sh.add_argument("drive", help="number, serial, WWN or identity")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)
    mv = dsub.add_parser("move", help="a move made by hand: " + ", ".join(MANUAL_DRIVE_MOVES))
    mv.add_argument("drive")
    mv.add_argument("state", choices=MANUAL_DRIVE_MOVES)
    mv.add_argument("--why", required=True, help="the reason, kept in the history")
    mv.add_argument("--technician", required=True, metavar="NAME")
    mv.set_defaults(func=cmd_move)


def _rows(ctx: Context, args: argparse.Namespace) -> list[dict[str, Any]]:
    query = select(Drive).order_by(Drive.id)
    if args.state:
        query = query.where(Drive.state.in_(args.state))
    if args.present:
        query = query.where(Drive.present.is_(True))
    with ctx.registry.session(readonly=True) as s:
        return [items.drive_summary(s, d) for d in s.scalars(query)]


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    return print_items(_rows(ctx, args), as_json=args.json, title="Disques / Drives",
                       columns=("Branché / Plugged", "Modèle / Model", "N° de série / Serial",
                                "Don / Donation", "Suite / Next"),
                       cells=lambda r: (r["path"] or "non / no", r["model"] or "",
                                        r["serial"] or r["identity"], r["donation"] or "",
                                        (r["next_step"] or {}).get("fr", "")))


def print_items(rows: list[dict[str, Any]], *, as_json: bool, title: str,
                columns: Sequence[str],
                cells: Callable[[dict[str, Any]], Sequence[str]]) -> int:
    """A list of drives or machines: JSON, or a table of number, state and `columns`."""
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    table = new_table(title, ("N°", "État / State", *columns))
    for r in rows:
        add_row(table, str(r["id"]), f"{r['state_fr']} / {r['state']}", *cells(r))
    console().print(table)
    return 0


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.registry.session(readonly=True) as s:
        view = items.drive_summary(s, items.find_drive(s, args.drive), with_history=True)
    if args.json:
        print(json.dumps(view, ensure_ascii=False, indent=2))
        return 0
    out = console(markup=False)
    out.print(f"Disque / drive {view['id']}: {view['identity']} — "
              f"{view['state_fr']} / {view['state']}")
    if view["next_step"]:
        out.print(f"À faire / next: {view['next_step']['fr']}")
    out.print(history_table(view["history"]))
    return 0


def history_table(history: list[dict[str, Any]], *, jobs: bool = True) -> Table:
    """An item's history (items.event_summary rows): when, who, what, why[, job]."""
    cols = ("Quand / When", "Qui / Who", "Quoi / What", "Pourquoi / Why", "Tâche / Job")
    table = new_table("Historique / History", cols if jobs else cols[:-1])
    for e in history:
        what = f"{e['from']} → {e['to']}" if e["kind"] == "move" else e["kind"]
        row = [e["at"][:19], e["actor"], what, e["reason"], str(e["job"] or "")]
        add_row(table, *(row if jobs else row[:-1]))
    return table


def cmd_move(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.registry.session() as s:
        tech = find_technician(s, args.technician)
        drive = items.find_drive(s, args.drive)
        items.move(s, drive, args.state, actor=tech.name, reason=args.why)
        label = ITEM_LABELS_FR[args.state]
    console(markup=False).print(f"Disque / drive {args.drive}: {label} / {args.state}")
    return 0
