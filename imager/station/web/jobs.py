"""The jobs: every erasure and installation, newest first, and one job's page
with its plan, what its read-back proved, the documents it led to and each event
its agent reported."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from imager.registry.lifecycle import STATE_LABELS_FR
from imager.station.service import Station
from imager.station.web.auth import signed_in
from imager.station.web.i18n import N_
from imager.station.web.pages import not_found, render
from imager.store.models import Agent, Deployment, Document, Job

SHOWN = 300               # jobs on the list page


def job_row(job: Job, agents: dict[int, str]) -> dict[str, Any]:
    """A job as one line of a table: what, on which drive, by whom, how it ended."""
    plan = job.plan or {}
    steps = plan.get("steps") or [{}]
    what = (f"{plan.get('name')} {plan.get('version')}" if job.kind == "image"
            else steps[0].get("method"))
    verification = (job.report or {}).get("verification") or {}
    return {"id": job.id, "kind": job.kind, "what": what, "state": job.state,
            "state_fr": STATE_LABELS_FR.get(job.state, job.state), "reason": job.reason,
            "class": steps[0].get("sanitization_class"), "drive": job.drive_id,
            "model": job.drive.model if job.drive else None,
            "serial": job.drive.serial if job.drive else None,
            "technician": job.technician.name if job.technician else None,
            "agent": agents.get(job.agent_id) if job.agent_id else None,
            "donation": job.donation.reference if job.donation else None,
            "verify": verification.get("mode"), "ok": verification.get("ok"),
            "created": job.created_at, "started": job.started_at, "ended": job.ended_at}


def agent_names(s: Session) -> dict[int, str]:
    return {agent_id: name for agent_id, name in s.execute(select(Agent.id, Agent.name))}


def router(station: Station) -> APIRouter:
    web = APIRouter()

    @web.get("/jobs", include_in_schema=False)
    def jobs(request: Request) -> Response:
        person = signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            names = agent_names(s)
            rows = [job_row(j, names) for j in s.scalars(
                select(Job).order_by(Job.id.desc()).limit(SHOWN))]
        return render(request, "jobs.html", {"jobs": rows, "shown": SHOWN}, person=person)

    @web.get("/jobs/{job_id}", include_in_schema=False)
    def job(job_id: int, request: Request) -> Response:
        person = signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            row = s.get(Job, job_id)
            if row is None:
                return not_found(request, person, N_("No such job on this station."))
            summary = job_row(row, agent_names(s))
            events = [{"seq": e.seq, "at": e.at, "kind": e.kind, "message": e.message}
                      for e in sorted(row.events, key=lambda e: e.seq)]
            documents = list(s.scalars(select(Document.id).where(Document.job_id == job_id)))
            deployment = s.scalar(select(Deployment).where(Deployment.job_id == job_id))
            installed = {"ok": deployment.ok, "error": deployment.error,
                         "verified": deployment.verified_bytes,
                         "hostname": deployment.hostname} if deployment else None
            plan, progress = row.plan or {}, station.progress.get(job_id)
        return render(request, "job.html", {
            "j": summary, "plan": plan, "events": events, "documents": documents,
            "installed": installed, "progress": progress}, person=person)

    return web
