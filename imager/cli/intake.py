"""`imager intake DONATION [LABEL...]`: tie scanned drives and machines to a donation."""

from __future__ import annotations

import argparse
import json
import sys

from imager.cli.context import Context
from imager.cli.render import console
from imager.registry.intake import attach_all
from imager.registry.lifecycle import ITEM_LABELS_FR
from imager.store import people


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("intake",
                       description="Rattache des disques (n° de série, WWN) et des machines "
                                   "(n° de série, n° d'inventaire) à un don. Sans étiquette, "
                                   "lit une étiquette par ligne (douchette). / Ties drives "
                                   "and machines to a donation; without labels, reads one per "
                                   "line (barcode scanner).")
    p.add_argument("donation", metavar="DONATION")
    p.add_argument("labels", nargs="*", metavar="LABEL")
    p.add_argument("--machine", action="store_true",
                   help="the labels are machines' serials or asset tags (default: drives)")
    p.add_argument("--technician", metavar="NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_intake)


def cmd_intake(args: argparse.Namespace, ctx: Context) -> int:
    labels = args.labels or [line.strip() for line in sys.stdin if line.strip()]
    with ctx.registry.session() as s:
        actor = people.find_technician(s, args.technician).name if args.technician \
            else "intake"
        done = attach_all(s, args.donation, drives=[] if args.machine else labels,
                          machines=labels if args.machine else [], actor=actor)
    if args.json:
        print(json.dumps([a.to_dict() for a in done], ensure_ascii=False, indent=2))
        return 0
    out = console(markup=False)
    for a in done:
        new = " (nouveau / new)" if a.new else ""
        out.print(f"{args.donation} ← {a.kind} {a.id} {a.label}: "
                  f"{ITEM_LABELS_FR[a.state]}{new}")
    return 0
