"""Triage: each laptop's proposal (reuse, parts, recycling) with the rules that
fired and what could not be measured; a technician confirms it, or overrides it
with a reason (habilitation "override_triage")."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from imager.errors import ImagerError
from imager.registry import machines
from imager.registry.habilitations import Habilitations
from imager.registry.machines import ORIENTATION_FR
from imager.station.service import Station
from imager.station.web.auth import posted, require, signed_in
from imager.station.web.pages import render
from imager.store.models import Machine


def router(station: Station, habilitations: Habilitations) -> APIRouter:
    web = APIRouter()

    def page(request: Request, status: int = 200, **context: object) -> Response:
        person = signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            rows = [machines.machine_summary(s, m)
                    for m in s.scalars(select(Machine).order_by(Machine.id.desc()))]
        return render(request, "machines.html", {
            "csrf": person.csrf, "machines": rows, "names": ORIENTATION_FR, **context},
            person=person, status=status)

    @web.get("/machines", include_in_schema=False)
    def machine_list(request: Request) -> Response:
        return page(request)

    @web.post("/machines/{machine_id}/orientation", include_in_schema=False)
    async def orient(machine_id: int, request: Request) -> Response:
        person, form = await posted(station, request)
        choice, why = form.get("choice", ""), form.get("why", "")
        with station.registry.session(readonly=True) as s:
            proposal = machines.find_machine(s, str(machine_id)).proposal or {}
        if choice != proposal.get("orientation") or not proposal.get("complete"):
            require(habilitations, person, "override_triage")
            if not why.strip():
                return page(request, 400, error_for=machine_id)
        try:
            with station.registry.session() as s:
                machines.orient(s, machines.find_machine(s, str(machine_id)), choice,
                                actor=person.name, why=why)
        except ImagerError as exc:
            return page(request, 400, error=str(exc))
        return RedirectResponse("/machines", 303)

    return web
