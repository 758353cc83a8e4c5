"""The agents, for the people at the bench: who waits for a technician (type the
code its screen shows, or approve it after comparing the fingerprint), who is
active, and revocation (as compromised: the documents resting on its work are
withdrawn). Habilitation "agents" (imager.registry.habilitations)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from imager.errors import ImagerError
from imager.registry import accounts, agents
from imager.registry.habilitations import Habilitations
from imager.station.service import Station
from imager.station.web.auth import posted, require, signed_in
from imager.station.web.pages import render
from imager.store.models import Agent


def router(station: Station, habilitations: Habilitations) -> APIRouter:
    web = APIRouter()

    def page(request: Request, status: int = 200, **context: object) -> Response:
        person = signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            rows = [agents.summary(a) for a in s.scalars(select(Agent).where(
                Agent.state.in_(("pending", "active", "revoked"))).order_by(Agent.id))]
        return render(request, "agents.html", {
            "csrf": person.csrf, "pending": [a for a in rows if a["state"] == "pending"],
            "active": [a for a in rows if a["state"] == "active"],
            "revoked_agents": [a for a in rows if a["state"] == "revoked"],
            "may": habilitations.allows(person.level, "agents"), **context},
            person=person, status=status)

    @web.get("/agents", include_in_schema=False)
    def agent_list(request: Request) -> Response:
        return page(request)

    @web.post("/agents/pair", include_in_schema=False)
    async def pair(request: Request) -> Response:
        person, form = await posted(station, request, habilitations=habilitations,
                                  action="agents")
        with station.registry.session() as s:     # a wrong code is counted: committed
            paired = agents.pair(s, form.get("code", ""), by=person.name)
            name = paired.name if paired else None
            if paired is not None:
                accounts.record(s, person, "agent_paired", f"{paired.name} ({paired.id})")
        if name is None:
            return page(request, 400, error=agents.WRONG_CODE)
        return page(request, done=name)

    @web.post("/agents/{agent_id}/approve", include_in_schema=False)
    async def approve(agent_id: int, request: Request) -> Response:
        person, _ = await posted(station, request, habilitations=habilitations,
                                  action="agents")
        try:
            with station.registry.session() as s:
                agent = agents.find_agent(s, str(agent_id))
                agents.approve(s, agent, by=person.name)
                accounts.record(s, person, "agent_approved", f"{agent.name} ({agent.id})")
        except ImagerError as exc:
            return page(request, 400, error=str(exc))
        return RedirectResponse("/agents", 303)

    @web.post("/agents/{agent_id}/revoke", include_in_schema=False)
    async def revoke(agent_id: int, request: Request) -> Response:
        person, form = await posted(station, request, habilitations=habilitations,
                                  action="agents")
        from imager.registry import compromise  # loads the signing code: only when used
        compromised = form.get("compromised") == "yes"
        if compromised:
            require(habilitations, person, "withdraw")
        try:
            rev = compromise.revoke(station.registry, str(agent_id),
                                    reason=form.get("reason", ""), by=person.name,
                                    compromised=compromised,
                                    documents_dir=station.settings.documents_dir)
            done = compromise.withdraw(station.issuer(), rev) if compromised else []
            with station.registry.session() as s:
                accounts.record(s, person, "agent_revoked", f"{rev.agent['name']} ({agent_id})",
                                {"compromised": compromised, "reason": form.get("reason", ""),
                                 "withdrawn": [d.id for d in done]})
        except ImagerError as exc:
            return page(request, 400, error=str(exc))
        return page(request, revoked=rev.agent["name"], withdrawn=[d.id for d in done])

    return web
