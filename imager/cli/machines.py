"""`imager machines list|show|orient`: laptops, their triage, the technician's choice."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlalchemy import select

from imager.cli.context import Context
from imager.cli.items import history_table, print_items
from imager.cli.render import console
from imager.inventory.triage import ORIENTATIONS
from imager.registry import machines
from imager.registry.lifecycle import MACHINE_TRANSITIONS
from imager.store.models import Machine
from imager.store.people import find_technician


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("machines")
    msub = p.add_subparsers(dest="machines_command", metavar="ACTION", required=True)
    ls = msub.add_parser("list", help="every machine, its state and triage proposal")
    ls.add_argument("--state", action="append", choices=tuple(MACHINE_TRANSITIONS))
    ls.add_argument("--to-confirm", action="store_true",
                    help="only machines whose orientation is not confirmed yet")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    sh = msub.add_parser("show", help="one machine: inventory, triage reasons, history")
    sh.add_argument("machine", help="number, serial, asset tag or UUID")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)
    orient = msub.add_parser("orient", help="confirm (or override) the triage proposal")
    orient.add_argument("machine")
    orient.add_argument("choice", choices=ORIENTATIONS)
    orient.add_argument("--technician", required=True, metavar="NAME")
    orient.add_argument("--why", default="",
                        help="needed when the choice differs from the proposal")
    orient.set_defaults(func=cmd_orient)


def _rows(ctx: Context, args: argparse.Namespace) -> list[dict[str, Any]]:
    query = select(Machine).order_by(Machine.id)
    if args.state:
        query = query.where(Machine.state.in_(args.state))
    if args.to_confirm:
        query = query.where(Machine.orientation.is_(None))
    with ctx.registry.session(readonly=True) as s:
        return [machines.machine_summary(s, m) for m in s.scalars(query)]


def _proposed(row: dict[str, Any]) -> str:
    proposal = row["proposal"] or {}
    choice = proposal.get("orientation")
    if choice is None:
        return ""
    return machines.ORIENTATION_FR[choice] + ("" if proposal.get("complete") else " (incomplet)")


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    def cells(r: dict[str, Any]) -> tuple[str, ...]:
        chosen = machines.ORIENTATION_FR.get(r["orientation"] or "", "à confirmer / to confirm")
        return (" ".join(x for x in (r["vendor"], r["model"]) if x), r["serial"] or "",
                r["donation"] or "", _proposed(r), chosen)
    return print_items(_rows(ctx, args), as_json=args.json, title="Machines",
                       columns=("Fabricant, modèle / Make, model", "N° de série / Serial",
                                "Don / Donation", "Tri proposé / Proposed", "Orientation"),
                       cells=cells)


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.registry.session(readonly=True) as s:
        view = machines.machine_summary(s, machines.find_machine(s, args.machine),
                                        with_history=True)
    if args.json:
        print(json.dumps(view, ensure_ascii=False, indent=2))
        return 0
    out = console(markup=False)  # names and messages shown as written
    out.print(f"Machine {view['id']}: {view['vendor'] or '?'} {view['model'] or ''} "
              f"(n° {view['serial'] or '?'}) — {view['state_fr']} / {view['state']}")
    proposal = view["proposal"] or {}
    if proposal:
        out.print(f"Tri proposé / proposed: {_proposed(view)} / {proposal['orientation']}")
        for r in proposal.get("reasons", []):
            out.print(f"  - {r['message_fr']} / {r['message_en']} ({r['outcome']})")
        for n in proposal.get("notes", []):
            out.print(f"  * {n['fr']} / {n['en']}")
    out.print("Orientation: " + (view["orientation"] or "à confirmer / to confirm"))
    for d in view["deployments"]:
        verdict = "vérifié / verified" if d["ok"] else f"échec / failed: {d['error']}"
        out.print(f"Système / OS: {d['image']} sur le disque / on drive {d['drive']} "
                  f"({d['at'][:10]}, {d['verify']}): {verdict}")
    out.print(history_table(view["history"], jobs=False))
    return 0


def cmd_orient(args: argparse.Namespace, ctx: Context) -> int:
    with ctx.registry.session() as s:
        tech = find_technician(s, args.technician)
        machine = machines.find_machine(s, args.machine)
        machines.orient(s, machine, args.choice, actor=tech.name, why=args.why)
        state = machine.state
    console(markup=False).print(f"Machine {args.machine}: "
                                f"{machines.ORIENTATION_FR[args.choice]} / {args.choice} "
                                f"(état / state: {state})")
    return 0
