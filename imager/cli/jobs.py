"""`imager jobs list|show|resume`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.markup import escape

from imager.cli.context import Context
from imager.cli.erase import run_and_render
from imager.cli.render import add_row, console, new_table, step_label
from imager.errors import UsageError
from imager.protocol.jobs import JobView
from imager.registry.jobs import RegistryJobStore
from imager.registry.lifecycle import JOB_STATES, RESUMABLE, STATE_LABELS_FR


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("jobs")
    jsub = p.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
    ls = jsub.add_parser("list", help="list jobs")
    ls.add_argument("--state", action="append", choices=JOB_STATES)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
    sh = jsub.add_parser("show", help="one job with its events and report")
    sh.add_argument("job", type=int)
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_show)
    rs = jsub.add_parser("resume", help="resume interrupted jobs from their checkpoint")
    rs.add_argument("jobs", type=int, nargs="*", metavar="JOB",
                    help="job ids (default: every interrupted job)")
    rs.add_argument("--device", help="the drive's device path now, if it changed")
    rs.add_argument("--json", action="store_true")
    rs.add_argument("--allow-file", action="store_true")
    rs.set_defaults(func=cmd_resume)
    cn = jsub.add_parser("cancel", help="give up queued or interrupted jobs "
                         "(e.g. the drive goes to destruction)")
    cn.add_argument("jobs", type=int, nargs="+", metavar="JOB")
    cn.add_argument("--reason", default="cancelled by the technician")
    cn.set_defaults(func=cmd_cancel)


def _progress(job: JobView) -> str:
    cp = job.checkpoint
    if not cp or job.state not in ("running", "interrupted"):
        return ""
    return f"{step_label(job.plan, cp['index'])} @ {cp['offset']}"


def _summary(job: JobView) -> dict[str, Any]:
    return {"id": job.id, "state": job.state, "device": job.device_path,
            "identity": job.drive_identity, "method": job.plan.method,
            "verify": job.plan.verify, "donation": job.donation,
            "technician": job.technician, "checkpoint": job.checkpoint,
            "reason": job.reason, "created_at": job.created_at.isoformat(),
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "ended_at": job.ended_at.isoformat() if job.ended_at else None}


def cmd_list(args: argparse.Namespace, ctx: Context) -> int:
    store = RegistryJobStore(ctx.registry)
    store.reconcile()
    jobs = store.list(tuple(args.state or ()))
    if args.json:
        print(json.dumps([_summary(j) for j in jobs], ensure_ascii=False, indent=2))
        return 0
    table = new_table("Tâches / Jobs", (
        "N°", "État / State", "Disque / Drive", "Identité / Identity", "Méthode / Method",
        "Don / Donation", "Avancement", "Motif / Reason"))
    for j in jobs:
        add_row(table, str(j.id), f"{STATE_LABELS_FR[j.state]} / {j.state}", j.device_path,
                j.drive_identity, f"{j.plan.method} + {j.plan.verify}", j.donation or "",
                _progress(j), j.reason or "")
    console().print(table)
    return 0


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    store = RegistryJobStore(ctx.registry)
    store.reconcile()
    job = store.get(args.job, with_events=True)
    data = {**_summary(job), "plan": job.plan.to_dict(), "report": job.report,
            "events": [{"seq": e.seq, "at": e.at.isoformat(), "kind": e.kind,
                        "message": e.message} for e in job.events]}
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0
    out = console()
    out.print(f"[bold]Tâche / Job {job.id}[/bold] — " + escape(
        f"{STATE_LABELS_FR[job.state]} / {job.state}  {job.device_path}  {job.drive_identity}"))
    if job.reason:
        out.print(escape(f"Motif / Reason: {job.reason}"))
    table = new_table(None, ("N°", "Quand / When", "Événement / Event", "Détail"))
    for e in job.events:
        add_row(table, str(e.seq), e.at.isoformat(timespec="seconds"), e.kind, e.message)
    out.print(table)
    return 0


def cmd_resume(args: argparse.Namespace, ctx: Context) -> int:
    store = RegistryJobStore(ctx.registry)
    store.reconcile()
    ids = list(dict.fromkeys(args.jobs)) or [j.id for j in store.list(tuple(RESUMABLE))
                                             if j.kind == "erase"]
    if not ids:
        print("Aucune tâche interrompue / no interrupted job")
        return 0
    if args.device and len(ids) != 1:
        raise UsageError("--device goes with exactly one job id")
    views = [store.get(i) for i in ids]
    for v in views:
        if v.state not in RESUMABLE:
            raise UsageError(f"job {v.id} is {v.state}: only interrupted jobs can be resumed")
        if v.kind != "erase":
            raise UsageError(f"job {v.id} is an {v.kind} job: its agent runs it again when "
                             "the station is up (`imager serve`)")
    paths = {ids[0]: args.device} if args.device else {}
    jobs = {v.id: (paths.get(v.id, v.device_path), v.plan) for v in views}
    return run_and_render(ctx, store, jobs, json_mode=args.json,
                          allow_files=args.allow_file, paths=paths)


def cmd_cancel(args: argparse.Namespace, ctx: Context) -> int:
    store = RegistryJobStore(ctx.registry)
    store.reconcile()
    for job_id in dict.fromkeys(args.jobs):
        store.move(job_id, "cancelled", reason=args.reason)
        print(f"Tâche {job_id} annulée / job {job_id} cancelled (jamais effacé / never erased)")
    return 0
