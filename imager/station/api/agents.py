"""The agents' API: enrolment, events, jobs. Every request is signed with the
agent's own key (imager.protocol.proof).

`POST /api/v1/agents` enrols the key the request is signed with: active with a
boot token, else pending with a pairing code to show; `GET /api/v1/agents/me`
tells an agent its state (and, once active, the erase policy);
`POST /api/v1/events` sends typed events (idempotent by id;
imager.protocol.events); `GET /api/v1/jobs/next?wait=S` long-polls for jobs;
`POST /api/v1/jobs/N/verify-seed` gives a job's sampled-verification seed, drawn
by the station once the job's write passes are reported (409 before).
"""

# No `from __future__ import annotations`: FastAPI reads the bodies and
# dependencies of these nested functions from their live annotations.
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from imager.protocol.events import Event
from imager.station.api.auth import agent_check, refusal, signed
from imager.station.service import Station

MAX_EVENTS = 500


class AgentInfo(BaseModel):
    """What an agent says of its machine's boot (kept as said, on its certificates)."""

    model_config = ConfigDict(extra="forbid")
    boot: Literal["usb", "installed"] | None = None
    secure_boot: StrictBool | None = None


class Enrolment(BaseModel):
    public_key: str = Field(min_length=64, max_length=64)      # Ed25519, raw, hex
    name: str = Field(min_length=1, max_length=200)
    kind: str = "dock"
    host: str = Field(min_length=1, max_length=200)
    info: AgentInfo | None = None
    boot_token: str | None = Field(default=None, max_length=200)
    macs: list[str] = Field(default_factory=list, max_length=64)
    serial: str | None = Field(default=None, max_length=200)


class Events(BaseModel):
    events: list[Event] = Field(max_length=MAX_EVENTS)


def router(station: Station) -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    agent = agent_check(station)
    any_agent = agent_check(station, pending_ok=True)

    def told(state: dict[str, Any]) -> dict[str, Any]:
        policy = station.policy_text() if state["state"] == "active" else None
        return {**state, "policy": policy}

    @api.post("/agents")
    async def enrol(body: Enrolment, request: Request) -> dict[str, Any]:
        try:
            enrolled = station.auth.enrol(
                await signed(request), body.public_key, name=body.name, kind=body.kind,
                host=body.host, info=body.info.model_dump() if body.info else None,
                boot_token=body.boot_token, macs=tuple(body.macs), serial=body.serial)
        except PermissionError as exc:
            raise refusal(exc) from exc
        return told({"id": enrolled.agent, "state": enrolled.state,
                     "fingerprint": enrolled.fingerprint,
                     "pairing_code": enrolled.pairing_code})

    @api.get("/agents/me")
    def me(agent_id: Annotated[int, Depends(any_agent)]) -> dict[str, Any]:
        return told(station.auth.state(agent_id))

    @api.post("/events")
    def events(body: Events, agent_id: Annotated[int, Depends(agent)]) -> dict[str, Any]:
        return {"results": station.receive(agent_id, body.events)}

    @api.get("/jobs/next")
    def next_jobs(agent_id: Annotated[int, Depends(agent)], wait: float = 0.0
                  ) -> dict[str, Any]:
        return {"jobs": station.jobs_for(agent_id, wait=min(max(wait, 0.0), 30.0)),
                "laptop": station.laptop_next(agent_id)}

    @api.post("/jobs/{job_id}/verify-seed")
    def verify_seed(job_id: int, agent_id: Annotated[int, Depends(agent)]) -> dict[str, Any]:
        return {"seed": station.verify_seed(agent_id, job_id)}

    return api
