"""The computers: each laptop's triage proposal (reuse, parts, recycling) with the
rules that fired and what could not be measured, which a technician confirms or
overrides with a reason (habilitation "override_triage"); and each one's page:
its inventory, drives, installed systems and whole history."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from imager.errors import ImagerError, NotFound
from imager.registry import items, machines
from imager.registry.habilitations import Habilitations
from imager.registry.machines import ORIENTATION_FR
from imager.station.service import Station
from imager.station.web.auth import posted, require, signed_in
from imager.station.web.i18n import N_
from imager.station.web.pages import json_download, not_found, render
from imager.store.models import Drive, Machine


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

    @web.get("/machines/{machine_id}", include_in_schema=False)
    def machine_page(machine_id: int, request: Request) -> Response:
        return machine(machine_id, request)

    def machine(machine_id: int, request: Request, status: int = 200,
                **context: object) -> Response:
        person = signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            row = s.get(Machine, machine_id)
            if row is None:
                return not_found(request, person, N_("No such computer on this station."))
            summary = machines.machine_summary(s, row, with_history=True)
            drives = [items.drive_summary(s, d) for d in s.scalars(
                select(Drive).where(Drive.machine_id == machine_id).order_by(Drive.id))]
        return render(request, "machine.html", {
            "m": summary, "p": summary["proposal"] or {}, "drives": drives,
            "names": ORIENTATION_FR, "csrf": person.csrf, "back": "machine", **context},
            person=person, status=status)

    @web.get("/machines/{machine_id}/inventory", include_in_schema=False)
    def inventory(machine_id: int, request: Request) -> Response:
        signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            row = s.get(Machine, machine_id)
            facts = row.inventory if row else None
        if facts is None:
            raise NotFound(f"no inventory for computer {machine_id}")
        return json_download(facts, f"computer-{machine_id}-inventory.json")

    @web.post("/machines/{machine_id}/orientation", include_in_schema=False)
    async def orient(machine_id: int, request: Request) -> Response:
        person, form = await posted(station, request)
        choice, why = form.get("choice", ""), form.get("why", "")
        with station.registry.session(readonly=True) as s:
            proposal = machines.find_machine(s, str(machine_id)).proposal or {}
        def again(**context: object) -> Response:
            """The page the form came from, again, saying what was wrong."""
            if form.get("back") == "machine":
                return machine(machine_id, request, 400, **context)
            return page(request, 400, **context)

        if choice != proposal.get("orientation") or not proposal.get("complete"):
            require(habilitations, person, "override_triage")
            if not why.strip():
                return again(error_for=machine_id)
        try:
            with station.registry.session() as s:
                machines.orient(s, machines.find_machine(s, str(machine_id)), choice,
                                actor=person.name, why=why)
        except ImagerError as exc:
            return again(error=str(exc))
        return RedirectResponse(f"/machines/{machine_id}" if form.get("back") == "machine"
                                else "/machines", 303)

    return web
