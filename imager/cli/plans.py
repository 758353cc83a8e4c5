"""Plans as text for the technician, and `imager methods` (the catalogue)."""

from __future__ import annotations

import argparse
import json

from imager.cli.context import Context
from imager.erase import catalogue
from imager.erase.methods import METHODS
from imager.inventory.capabilities import DriveCapabilities
from imager.model import ErasePlan, MethodStep

CLASS_FR = {"clear": "Clear (effacement logique)", "purge": "Purge (effacement du support)"}


def _options(step: MethodStep) -> str:
    if step.engine == "overwrite":
        return ", ".join(p.describe() for p in step.passes)
    return " ".join(f"{k}={v}" for k, v in sorted(step.options.items()))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("o", "Kio", "Mio", "Gio"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "o" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} Tio"


def _hidden_line(plan: ErasePlan) -> str:
    h = plan.hidden
    if h is None and plan.medium in ("sata-ssd", "sata-hdd"):
        return "  Zones cachées / hidden areas: inconnues / unknown (see the advice below)"
    if h is None:
        return ("  Zones cachées / hidden areas: sans objet hors ATA / not applicable "
                "(no ATA)")
    if not h.any_hidden:
        return (f"  Zones cachées / hidden areas: aucune / none (HPA {h.visible_max}/{h.native_max}"
                f", DCO {'absent' if h.dco_real_max is None else h.dco_real_max})")
    return (f"  Zones cachées / hidden areas: HPA {h.hpa_hidden} secteurs, DCO {h.dco_hidden} "
            "secteurs — retirées avant l'effacement / removed before erasing")


def plan_lines(caps: DriveCapabilities, plan: ErasePlan) -> list[str]:
    """The plan of one drive, French first, as printed by `imager erase --plan`."""
    ident = caps.identity
    who = ", ".join(x for x in (ident.model, f"n° série {ident.serial}" if ident.serial else "",
                               f"WWN {ident.wwn}" if ident.wwn else "") if x)
    lines = [f"{ident.path} — {who or ident.key}, {_size(ident.size)}, "
             f"support / medium: {plan.medium} ({caps.transport})",
             f"  Politique / policy: {plan.policy}",
             "  Méthodes, dans l'ordre / methods, in order:"]
    for i, step in enumerate(plan.steps, 1):
        lines.append(f"    {i}. {step.method:<28} {CLASS_FR[step.sanitization_class]:<32} "
                     f"{step.technique} [{step.engine}: {_options(step)}]")
        if step.standard:
            lines.append(f"       {step.standard}")
    for s in plan.skipped:
        lines.append(f"    écartée / skipped: {s.method}: {s.reason}")
    for r in plan.refused:
        lines.append(f"    refusée / refused: {r.method}: {r.reason}")
    lines.append(_hidden_line(plan))
    canaries = any(s.engine != "overwrite" for s in plan.steps)
    lines.append(f"  Vérification / verification: {plan.verify}" + (
        " (+ canaris autour des méthodes du firmware / canaries around firmware methods)"
        if canaries else ""))
    for note in plan.advice:
        lines += [f"  Conseil : {note.fr}", f"  Advice: {note.en}"]
    lines += [f"  Problème de détection / probe problem: {p}" for p in caps.problems]
    return lines


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("methods",
                       description="Les méthodes que la politique peut nommer. / "
                                   "The methods an erase policy can name.")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_methods)


def _rows() -> list[dict[str, str]]:
    rows = [{"method": m.name, "engine": "overwrite", "media": "all",
             "class": "clear", "standard": m.standard} for m in METHODS.values()]
    for m in catalogue.FIRMWARE.values():
        classes = {m.class_on(medium) for medium in m.media}
        label = classes.pop() if len(classes) == 1 else "purge (clear on flash)"
        rows.append({"method": m.name, "engine": m.engine, "media": ", ".join(sorted(m.media)),
                     "class": label, "standard": m.standard})
    return rows


def cmd_methods(args: argparse.Namespace, ctx: Context) -> int:
    rows = _rows()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    for r in rows:
        print(f"{r['method']:<28} {r['class']:<22} {r['media']}")
        print(f"{'':<28} {r['standard']}")
    return 0
