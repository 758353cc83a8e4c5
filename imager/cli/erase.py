"""`imager erase DEVICE...`: probe, plan by policy, erase, verify, report."""

from __future__ import annotations

import argparse
import json

from imager.cli.context import Context
from imager.cli.plans import plan_lines
from imager.cli.render import BarsUI, JsonLinesUI, console, report_table
from imager.erase import policy
from imager.erase.methods import METHODS
from imager.erase.plan import plan_for
from imager.errors import ImagerError
from imager.inventory.capabilities import DriveCapabilities
from imager.jobs.batch import run_all
from imager.jobs.targets import probe_targets
from imager.model import ErasePlan, EraseReport
from imager.registry.jobs import RegistryJobStore
from imager.store import people


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    methods = ", ".join(f"{m.name} ({m.title_en})" for m in METHODS.values())
    p = sub.add_parser("erase",
                       description="Efface des disques entiers selon la politique "
                                   "d'effacement, puis vérifie. / Erase whole drives as the "
                                   "erase policy says, then verify.")
    p.add_argument("devices", nargs="+", metavar="DEVICE")
    p.add_argument("--method", default=None,
                   help="default: the policy's methods for each drive's medium; or one method "
                        f"(`imager methods` lists them): {methods}; or a pass list like "
                        "zero,random,pattern:55aa")
    p.add_argument("--verify", choices=("full", "sample", "none"), default=None,
                   help="default: the policy's (full)")
    p.add_argument("--policy", metavar="FILE",
                   help="erase policy (env IMAGER_ERASE_POLICY; default: "
                        "profiles/erase-policy.yaml)")
    p.add_argument("--donation", metavar="REF")
    p.add_argument("--technician", metavar="NAME")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout")
    p.add_argument("--plan", action="store_true", help="print the plan, write nothing")
    p.add_argument("--allow-file", action="store_true",
                   help="accept regular files (disk images) as targets")
    p.set_defaults(func=cmd_erase)


def cmd_erase(args: argparse.Namespace, ctx: Context) -> int:
    caps = probe_targets(args.devices, ctx.settings, allow_files=args.allow_file)
    idents = [c.identity for c in caps]
    rules = policy.load(args.policy or ctx.settings.erase_policy)
    plans = [plan_for(c, rules, verify=args.verify, method=args.method) for c in caps]
    if args.plan:
        _print_plans(caps, plans, json_mode=args.json)
        return 0
    store = RegistryJobStore(ctx.registry)
    store.reconcile()
    donation_id, technician_id = _people(ctx, args.donation, args.technician)
    jobs = {store.create_erase(i, p, donation_id=donation_id, technician_id=technician_id):
            (i.path, p) for i, p in zip(idents, plans, strict=True)}
    return run_and_render(ctx, store, jobs, json_mode=args.json, allow_files=args.allow_file)


def _print_plans(caps: list[DriveCapabilities], plans: list[ErasePlan], *,
                 json_mode: bool) -> None:
    if json_mode:
        print(json.dumps([{"device": c.identity.path, "identity": c.identity.key,
                           "problems": list(c.problems), "plan": p.to_dict()}
                          for c, p in zip(caps, plans, strict=True)],
                         ensure_ascii=False, indent=2))
        return
    for c, p in zip(caps, plans, strict=True):
        print("\n".join(plan_lines(c, p)) + "\n")


def _people(ctx: Context, donation: str | None,
            technician: str | None) -> tuple[int | None, int | None]:
    with ctx.registry.session() as s:
        d = people.find_donation(s, donation).id if donation else None
        t = people.find_technician(s, technician).id if technician else None
    return d, t


def _exit_code(results: dict[int, EraseReport | ImagerError]) -> int:
    def good(r: EraseReport | ImagerError) -> bool:
        return isinstance(r, EraseReport) and (
            r.outcome == "erased" or (r.outcome == "unverified" and r.plan.verify == "none"))
    if any(isinstance(r, EraseReport) and r.outcome == "interrupted" for r in results.values()):
        return 130
    return 0 if all(good(r) for r in results.values()) else 1


def run_and_render(ctx: Context, store: RegistryJobStore, jobs: dict[int, tuple[str, ErasePlan]], *,
                   json_mode: bool, allow_files: bool = False,
                   paths: dict[int, str] | None = None) -> int:
    """Run jobs with live progress, then print the reports; return the exit code."""
    out = console(stderr=json_mode)
    ui = JsonLinesUI(jobs) if json_mode else BarsUI(out, jobs)
    with ui:
        results = run_all(store, list(jobs), ctx.settings, on_progress=ui,
                          allow_files=allow_files, paths=paths)
    if isinstance(ui, JsonLinesUI):
        for jid, res in results.items():
            ui.emit({"event": "report", "job": jid, **res.to_dict()}
                    if isinstance(res, EraseReport)
                    else {"event": "error", "job": jid, "error": str(res)})
    else:
        out.print(report_table(results, {j: d for j, (d, _) in jobs.items()}))
    return _exit_code(results)
