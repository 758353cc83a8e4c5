"""The technicians' tools (operator token): drives, machines and their
orientation, jobs, donations, intake, erase, image (an OS image onto an erased
drive; several drives at once with `POST /api/v1/drives/image`, one stream per
agent), resume; agents (list, approve, pair, rename, revoke) and single-use
boot tokens.
"""

# No `from __future__ import annotations`: FastAPI reads live annotations.
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from imager.certify.withdrawal import PREFIX as WITHDRAWAL_PREFIX
from imager.errors import UsageError
from imager.protocol.jobs import view_to_dict
from imager.registry import agents, items, machines
from imager.station.api.auth import operator_check
from imager.station.service import Station
from imager.store import people
from imager.store.models import Agent, Drive, Machine


class EraseRequest(BaseModel):
    technician: str | None = None
    donation: str | None = None
    method: str | None = None     # instead of the policy's plan (firmware or overwrite)


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


class Decision(BaseModel):
    by: str = Field(min_length=1, max_length=200)       # the technician deciding


class PairRequest(Decision):
    code: str = Field(min_length=8, max_length=20)


class RenameRequest(Decision):
    name: str = Field(min_length=1, max_length=200)


class RevokeRequest(Decision):
    reason: str = Field(min_length=1, max_length=2000)
    compromised: bool = False    # answer with the documents resting on its work
    withdraw: bool = False       # with compromised: withdraw them (as `imager cert withdraw`)


class BootTokenRequest(Decision):
    mac: str = Field(max_length=20)
    serial: str = Field(min_length=1, max_length=200)
    minutes: int = agents.BOOT_TOKEN_MINUTES


def router(station: Station) -> APIRouter:
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(operator_check(station))])

    @api.get("/drives")
    def drives() -> list[dict[str, Any]]:
        with station.registry.session(readonly=True) as s:
            return [items.drive_summary(s, d)
                    for d in s.scalars(select(Drive).order_by(Drive.id))]

    @api.get("/drives/{ref}")
    def drive(ref: str) -> dict[str, Any]:
        with station.registry.session(readonly=True) as s:
            return items.drive_summary(s, items.find_drive(s, ref), with_history=True)

    @api.post("/drives/{ref}/erase")
    def erase(ref: str, body: EraseRequest) -> dict[str, Any]:
        return {"job": station.erase(ref, technician=body.technician, donation=body.donation,
                                     method=body.method)}

    @api.get("/machines")
    def machine_list() -> list[dict[str, Any]]:
        with station.registry.session(readonly=True) as s:
            return [machines.machine_summary(s, m)
                    for m in s.scalars(select(Machine).order_by(Machine.id))]

    @api.get("/machines/{ref}")
    def machine(ref: str) -> dict[str, Any]:
        with station.registry.session(readonly=True) as s:
            return machines.machine_summary(s, machines.find_machine(s, ref),
                                            with_history=True)

    @api.post("/machines/{ref}/orientation")
    def orientation(ref: str, body: OrientationRequest) -> dict[str, Any]:
        with station.registry.session() as s:
            tech = people.find_technician(s, body.technician)
            m = machines.find_machine(s, ref)
            machines.orient(s, m, body.choice, actor=tech.name, why=body.why)
            return machines.machine_summary(s, m)

    @api.post("/drives/{ref}/image")
    def image(ref: str, body: ImageRequest) -> dict[str, Any]:
        return {"job": station.image(ref, body.image, version=body.version,
                                     technician=body.technician, hostname=body.hostname,
                                     verify=body.verify, grow=body.grow)}

    @api.post("/drives/image")
    def image_drives(body: ImageDrivesRequest) -> dict[str, Any]:
        """Several drives at once (a dock's): checked together, one stream per agent."""
        return {"jobs": station.image_drives(
            [str(d) for d in body.drives], body.image, version=body.version,
            technician=body.technician, hostname=body.hostname, verify=body.verify,
            grow=body.grow)}

    @api.get("/jobs")
    def jobs() -> list[dict[str, Any]]:
        return [{**view_to_dict(j), "progress": station.progress.get(j.id)}
                for j in station.store.list()]

    @api.get("/jobs/{job_id}")
    def job(job_id: int) -> dict[str, Any]:
        view = station.store.get(job_id, with_events=True)
        out = view_to_dict(view)
        out["events"] = [{"seq": e.seq, "at": e.at.isoformat(), "kind": e.kind,
                          "message": e.message, "data": e.data} for e in view.events]
        return {**out, "progress": station.progress.get(job_id)}

    @api.post("/jobs/{job_id}/resume")
    def resume(job_id: int) -> dict[str, Any]:
        station.resume(job_id)
        return {"job": job_id}

    @api.post("/donations")
    def donation(body: DonationRequest) -> dict[str, Any]:
        day = date.fromisoformat(body.received_on) if body.received_on else date.today()
        with station.registry.session() as s:
            don = people.receive_donation(s, body.reference, body.donor, body.donor_kind, day,
                                          intake_site=body.site)
            return {"reference": don.reference, "donor": don.donor.name, "id": don.id}

    @api.post("/intake")
    def intake(body: IntakeRequest) -> dict[str, Any]:
        return {"attached": station.intake(body.donation, drives=body.drives,
                                           machines=body.machines,
                                           actor=body.technician or "intake")}

    # -- agents: enrolled one at a time, renamed, revoked -------------------------

    @api.get("/agents")
    def agent_list() -> list[dict[str, Any]]:
        with station.registry.session(readonly=True) as s:
            return [agents.summary(a) for a in s.scalars(select(Agent).order_by(Agent.id))]

    @api.post("/agents/pair")
    def pair(body: PairRequest) -> dict[str, Any]:
        with station.registry.session() as s:
            agent = agents.pair(s, body.code, by=body.by)
            paired = agents.summary(agent) if agent else None
        if paired is None:              # the wrong try is counted (committed) first
            raise UsageError(agents.WRONG_CODE)
        return paired

    @api.post("/agents/{ref}/approve")
    def approve(ref: str, body: Decision) -> dict[str, Any]:
        with station.registry.session() as s:
            agent = agents.find_agent(s, ref)
            agents.approve(s, agent, by=body.by)
            return agents.summary(agent)

    @api.post("/agents/{ref}/rename")
    def rename(ref: str, body: RenameRequest) -> dict[str, Any]:
        with station.registry.session() as s:
            agent = agents.find_agent(s, ref)
            agents.rename(agent, body.name)
            return agents.summary(agent)

    @api.post("/agents/{ref}/revoke")
    def revoke(ref: str, body: RevokeRequest) -> dict[str, Any]:
        """Revoke an agent; `compromised`: also the documents resting on its work (each
        with its withdrawal, if it has one); `withdraw`: withdraw the others."""
        from imager.registry import compromise  # loads the signing code: only when used
        if body.withdraw and not body.compromised:
            raise UsageError("withdraw: the documents of a compromised agent only; add "
                             '"compromised": true')
        rev = compromise.revoke(station.registry, ref, reason=body.reason, by=body.by,
                                compromised=body.compromised,
                                documents_dir=station.settings.documents_dir)
        done = compromise.withdraw(station.issuer(), rev) if body.withdraw else []
        if not body.compromised:
            return rev.agent
        return {**rev.agent, "newly_revoked": rev.newly, "withdrawal_reason": rev.reason,
                "resting": [d.to_dict() for d in rev.resting],
                "withdrawn": [{"id": i.id, "withdraws": i.id.removeprefix(WITHDRAWAL_PREFIX),
                               "seq": i.seq} for i in done]}

    @api.post("/boot-tokens")
    def boot_token(body: BootTokenRequest) -> dict[str, Any]:
        with station.registry.session() as s:
            return {"token": agents.issue_boot_token(s, mac=body.mac, serial=body.serial,
                                                     by=body.by, minutes=body.minutes)}

    return api
