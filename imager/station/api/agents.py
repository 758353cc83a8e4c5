"""The agents' API: enrolment, events, jobs.

`POST /api/v1/agents` (enrolment token) returns the agent's own token and the
station's erase policy; `POST /api/v1/events` sends typed events (idempotent
by id; imager.protocol.events); `GET /api/v1/jobs/next?wait=S` long-polls for
jobs.
"""

# No `from __future__ import annotations`: FastAPI reads the bodies and
# dependencies of these nested functions from their live annotations.
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException
from pydantic import BaseModel, Field

from imager.protocol.events import Event
from imager.station.api.auth import agent_check, bearer
from imager.station.service import Station

MAX_EVENTS = 500


class Registration(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    kind: str = "dock"
    host: str = Field(min_length=1, max_length=200)
    info: dict[str, Any] | None = None


class Events(BaseModel):
    events: list[Event] = Field(max_length=MAX_EVENTS)


def router(station: Station) -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    agent = agent_check(station)

    @api.post("/agents")
    def register(body: Registration,
                 authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        try:
            agent_id, token = station.register(bearer(authorization), name=body.name,
                                               kind=body.kind, host=body.host, info=body.info)
        except PermissionError as exc:
            raise HTTPException(401, f"{exc}: use the station's enrolment token") from exc
        return {"agent": agent_id, "token": token, "policy": station.policy_text()}

    @api.post("/events")
    def events(body: Events, agent_id: Annotated[int, Depends(agent)]) -> dict[str, Any]:
        return {"results": station.receive(agent_id, body.events)}

    @api.get("/jobs/next")
    def next_jobs(agent_id: Annotated[int, Depends(agent)], wait: float = 0.0
                  ) -> dict[str, Any]:
        return {"jobs": station.jobs_for(agent_id, wait=min(max(wait, 0.0), 30.0))}

    return api
