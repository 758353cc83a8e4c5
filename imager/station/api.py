"""The station's HTTP API (FastAPI): agents and the technicians' tools.

Agents: `POST /api/v1/agents` (enrolment token) returns the agent's own
token and the station's erase policy; `POST /api/v1/events` sends events
(idempotent by id); `GET /api/v1/jobs/next?wait=S` long-polls for jobs.
The image store (agent or operator token): `GET /api/v1/images`, and each
image's files with range requests (a dropped download resumes).
Technicians' tools (operator token): drives, machines (and their orientation),
jobs, donations, intake, erase, image (an OS image onto an erased drive; several
drives at once with `POST /api/v1/drives/image`, one stream per agent),
resume. Every error is JSON `{"error": "..."}` naming the thing and the fix.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies of
# these nested functions from their live annotations.
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from imager import __version__
from imager.errors import ImagerError, NotFound
from imager.protocol.jobs import view_to_dict
from imager.registry import items, machines
from imager.station import image_store
from imager.station.service import Station
from imager.store import people
from imager.store.models import Drive, Machine

MAX_EVENTS = 500


class Registration(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: str = "dock"
    host: str = Field(min_length=1, max_length=200)
    info: dict[str, Any] | None = None


class Events(BaseModel):
    events: list[dict[str, Any]] = Field(max_length=MAX_EVENTS)


class EraseRequest(BaseModel):
    technician: str | None = None
    donation: str | None = None


class ImageRequest(BaseModel):
    image: str
    version: str | None = None
    technician: str | None = None
    hostname: str | None = None
    verify: str = "full"
    grow: str = "now"


class ImageDrivesRequest(ImageRequest):
    drives: list[str | int] = Field(min_length=1, max_length=64)   # ids, serials...


class DonationRequest(BaseModel):
    reference: str
    donor: str
    donor_kind: str = "person"
    received_on: str | None = None
    site: str | None = None


class OrientationRequest(BaseModel):
    choice: str
    technician: str
    why: str = ""


class IntakeRequest(BaseModel):
    donation: str
    drives: list[str] = []
    machines: list[str] = []
    technician: str | None = None


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise HTTPException(401, "jeton manquant / missing token: send "
                                 "'Authorization: Bearer TOKEN'")
    return authorization.removeprefix("Bearer ").strip()


def create_app(station: Station) -> FastAPI:
    app = FastAPI(title="imager station", version=__version__)

    def agent(authorization: Annotated[str | None, Header()] = None) -> int:
        try:
            return station.agent_of(_bearer(authorization))
        except PermissionError as exc:
            raise HTTPException(401, str(exc)) from exc

    def operator(authorization: Annotated[str | None, Header()] = None) -> None:
        if not station.tokens.is_operator(_bearer(authorization)):
            raise HTTPException(401, "jeton opérateur invalide / wrong operator token: see "
                                     f"{station.tokens.path(station.settings)}")

    def reader(authorization: Annotated[str | None, Header()] = None) -> None:
        """Agents and operators: both may read the image store."""
        token = _bearer(authorization)
        if station.tokens.is_operator(token):
            return
        try:
            station.agent_of(token)
        except PermissionError as exc:
            raise HTTPException(401, f"{exc}: use an agent or operator token") from exc

    @app.exception_handler(ImagerError)
    async def imager_error(_request: Request, exc: ImagerError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=404 if isinstance(
            exc, NotFound) else 400)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.get("/api/v1/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    # -- agents ------------------------------------------------------------

    @app.post("/api/v1/agents")
    def register(body: Registration,
                 authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        try:
            agent_id, token = station.register(_bearer(authorization), name=body.name,
                                               kind=body.kind, host=body.host, info=body.info)
        except PermissionError as exc:
            raise HTTPException(401, f"{exc}: use the station's enrolment token") from exc
        return {"agent": agent_id, "token": token, "policy": station.policy_text()}

    @app.post("/api/v1/events")
    def events(body: Events, agent_id: Annotated[int, Depends(agent)]) -> dict[str, Any]:
        return {"results": station.receive(agent_id, body.events)}

    @app.get("/api/v1/jobs/next")
    def next_jobs(agent_id: Annotated[int, Depends(agent)], wait: float = 0.0
                  ) -> dict[str, Any]:
        return {"jobs": station.jobs_for(agent_id, wait=min(max(wait, 0.0), 30.0))}

    # -- the image store (agents deploy from it; range requests resume) --------

    @app.get("/api/v1/images", dependencies=[Depends(reader)])
    def images() -> list[dict[str, Any]]:
        return [image_store.describe(e) for e in image_store.catalogue(station.settings).list()]

    @app.get("/api/v1/images/{name}/{version}/{part}", dependencies=[Depends(reader)])
    def image_file(name: str, version: str, part: str) -> FileResponse:
        path = image_store.file_of(station.settings, name, version, part)
        return FileResponse(path, filename=path.name,
                            media_type="application/octet-stream")

    # -- technicians ---------------------------------------------------------

    @app.get("/api/v1/drives", dependencies=[Depends(operator)])
    def drives() -> list[dict[str, Any]]:
        with station.registry.session(readonly=True) as s:
            return [items.drive_summary(s, d)
                    for d in s.scalars(select(Drive).order_by(Drive.id))]

    @app.get("/api/v1/drives/{ref}", dependencies=[Depends(operator)])
    def drive(ref: str) -> dict[str, Any]:
        with station.registry.session(readonly=True) as s:
            return items.drive_summary(s, items.find_drive(s, ref), with_history=True)

    @app.post("/api/v1/drives/{ref}/erase", dependencies=[Depends(operator)])
    def erase(ref: str, body: EraseRequest) -> dict[str, Any]:
        return {"job": station.erase(ref, technician=body.technician, donation=body.donation)}

    @app.get("/api/v1/machines", dependencies=[Depends(operator)])
    def machine_list() -> list[dict[str, Any]]:
        with station.registry.session(readonly=True) as s:
            return [machines.machine_summary(s, m)
                    for m in s.scalars(select(Machine).order_by(Machine.id))]

    @app.get("/api/v1/machines/{ref}", dependencies=[Depends(operator)])
    def machine(ref: str) -> dict[str, Any]:
        with station.registry.session(readonly=True) as s:
            return machines.machine_summary(s, machines.find_machine(s, ref),
                                            with_history=True)

    @app.post("/api/v1/machines/{ref}/orientation", dependencies=[Depends(operator)])
    def orientation(ref: str, body: OrientationRequest) -> dict[str, Any]:
        with station.registry.session() as s:
            tech = people.find_technician(s, body.technician)
            m = machines.find_machine(s, ref)
            machines.orient(s, m, body.choice, actor=tech.name, why=body.why)
            return machines.machine_summary(s, m)

    @app.post("/api/v1/drives/{ref}/image", dependencies=[Depends(operator)])
    def image(ref: str, body: ImageRequest) -> dict[str, Any]:
        return {"job": station.image(ref, body.image, version=body.version,
                                     technician=body.technician, hostname=body.hostname,
                                     verify=body.verify, grow=body.grow)}

    @app.post("/api/v1/drives/image", dependencies=[Depends(operator)])
    def image_drives(body: ImageDrivesRequest) -> dict[str, Any]:
        """Several drives at once (a dock's): checked together, one stream per agent."""
        return {"jobs": station.image_drives(
            [str(d) for d in body.drives], body.image, version=body.version,
            technician=body.technician, hostname=body.hostname, verify=body.verify,
            grow=body.grow)}

    @app.get("/api/v1/jobs", dependencies=[Depends(operator)])
    def jobs() -> list[dict[str, Any]]:
        return [{**view_to_dict(j), "progress": station.progress.get(j.id)}
                for j in station.store.list()]

    @app.get("/api/v1/jobs/{job_id}", dependencies=[Depends(operator)])
    def job(job_id: int) -> dict[str, Any]:
        view = station.store.get(job_id, with_events=True)
        out = view_to_dict(view)
        out["events"] = [{"seq": e.seq, "at": e.at.isoformat(), "kind": e.kind,
                          "message": e.message, "data": e.data} for e in view.events]
        return {**out, "progress": station.progress.get(job_id)}

    @app.post("/api/v1/jobs/{job_id}/resume", dependencies=[Depends(operator)])
    def resume(job_id: int) -> dict[str, Any]:
        station.resume(job_id)
        return {"job": job_id}

    @app.post("/api/v1/donations", dependencies=[Depends(operator)])
    def donation(body: DonationRequest) -> dict[str, Any]:
        from datetime import date
        day = date.fromisoformat(body.received_on) if body.received_on else date.today()
        with station.registry.session() as s:
            try:
                donor = people.find_donor(s, body.donor)
            except NotFound:
                donor = people.add_donor(s, body.donor_kind, body.donor)
            don = people.add_donation(s, body.reference, donor, day, intake_site=body.site)
            return {"reference": don.reference, "donor": donor.name, "id": don.id}

    @app.post("/api/v1/intake", dependencies=[Depends(operator)])
    def intake(body: IntakeRequest) -> dict[str, Any]:
        return {"attached": station.intake(body.donation, drives=body.drives,
                                           machines=body.machines,
                                           actor=body.technician or "intake")}

    return app
