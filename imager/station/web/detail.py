"""A drive's page: what it is, its plan (with the methods set aside and why), its
whole history, its jobs with their verification, its documents (withdrawn or
not, with the files to download) and the evidence the station planned it from."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import select

from imager.certify import labels
from imager.certify.record import DESTRUCTION_TECHNIQUES
from imager.errors import ImagerError, NotFound
from imager.registry import items
from imager.registry.deployments import deployment_summary, deployments_of
from imager.registry.habilitations import Habilitations
from imager.registry.issue import withdrawals
from imager.registry.lifecycle import STATE_LABELS_FR
from imager.station.service import Station
from imager.station.web.auth import signed_in
from imager.station.web.i18n import N_
from imager.station.web.offers import offers
from imager.station.web.pages import json_download, language, not_found, render
from imager.store.models import Document, Drive, Job

FILES = ("pdf", "json")


def _jobs(s: Any, drive_id: int) -> list[dict[str, Any]]:
    out = []
    for job in s.scalars(select(Job).where(Job.drive_id == drive_id).order_by(Job.id)):
        report = job.report or {}
        verification = report.get("verification") or {}
        steps = (job.plan or {}).get("steps") or [{}]
        out.append({"id": job.id, "kind": job.kind, "state": job.state,
                    "state_fr": STATE_LABELS_FR.get(job.state, job.state), "reason": job.reason,
                    "method": steps[0].get("method"),
                    "class": steps[0].get("sanitization_class"),
                    "verify": verification.get("mode"), "ok": verification.get("ok"),
                    "started": job.started_at, "ended": job.ended_at})
    return out


def images(station: Station) -> list[dict[str, str]]:
    """The catalogue's images a person may install (name@version, newest first)."""
    from imager.station import image_store
    return [{"ref": f"{e.name}@{e.version}", "name": e.name, "version": e.version}
            for e in reversed(image_store.catalogue(station.settings).list())]


def _offer(station: Station, summary: dict[str, Any], can: dict[str, bool]
           ) -> dict[str, Any]:
    """What the drive's page offers this person now, with the methods, images and
    techniques to choose from."""
    now: dict[str, Any] = dict(offers(summary, can))
    now["choices"] = []
    if now["erase_method"]:
        try:
            now["choices"] = station.erase_choices(str(summary["id"]))
        except ImagerError:                 # no tools' outputs on record: nothing to offer
            now["erase_method"] = False
    now["images"] = images(station) if now["image"] else []
    now["techniques"] = DESTRUCTION_TECHNIQUES
    return now


def router(station: Station, habilitations: Habilitations) -> APIRouter:
    web = APIRouter()

    @web.get("/drives/{drive_id}", include_in_schema=False)
    def drive(drive_id: int, request: Request) -> Response:
        person = signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            row = s.get(Drive, drive_id)
            if row is None:
                return not_found(request, person, N_("No such drive on this station."))
            summary = items.drive_summary(s, row, with_history=True)
            plan = (row.plan or {}).get("plan") or {}
            problems = (row.plan or {}).get("problems") or []
            docs = list(s.scalars(select(Document).where(Document.drive_id == drive_id)
                                  .order_by(Document.issued_at)))
            gone = withdrawals(s, [d.id for d in docs])
            documents = [{"id": d.id, "kind": d.kind, "issued": d.issued_at,
                          "withdrawn": gone.get(d.id),
                          "files": [k for k in FILES
                                    if (station.settings.documents_dir / f"{d.id}.{k}")
                                    .is_file()]} for d in docs]
            jobs = _jobs(s, drive_id)
            systems = [deployment_summary(d) for d in deployments_of(s, drive_id=drive_id)]
            has_evidence = bool((row.plan or {}).get("evidence"))
        can = habilitations.granted(person.level)
        return render(request, "drive.html", {
            "d": summary, "plan": plan, "problems": problems, "jobs": jobs,
            "documents": documents, "has_evidence": has_evidence, "csrf": person.csrf,
            "systems": systems,
            "can": can, "offer": _offer(station, summary, can),
            "technique": lambda code: labels.word("technique", code, language(request))},
            person=person)

    @web.get("/drives/{drive_id}/evidence", include_in_schema=False)
    def evidence(drive_id: int, request: Request) -> Response:
        signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            row = s.get(Drive, drive_id)
            proof = (row.plan or {}).get("evidence") if row else None
        if proof is None:
            raise NotFound(f"no evidence for drive {drive_id}")
        return json_download(proof, f"drive-{drive_id}-evidence.json")

    @web.get("/documents/{doc_id}.{kind}", include_in_schema=False)
    def document(doc_id: str, kind: str, request: Request) -> Response:
        signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            known = s.get(Document, doc_id) is not None
        path = station.settings.documents_dir / f"{doc_id}.{kind}"
        if not known or kind not in FILES or not path.is_file():
            raise NotFound(f"no file {doc_id}.{kind}")
        return FileResponse(path, filename=path.name)

    return web
