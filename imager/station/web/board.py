"""The board: the technician's home, one card per drive an agent sees, with its
state in words, its job's progress, the next step and what may be done now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from imager.errors import ImagerError
from imager.registry import items
from imager.station.service import Station
from imager.station.web.auth import form_of, signed_in
from imager.station.web.i18n import N_
from imager.station.web.pages import render
from imager.store.models import Drive

ERASABLE = ("inventoried", "erase_failed")


def cards(station: Station) -> list[dict[str, Any]]:
    """The drives plugged in now, then those seen before that still need a person."""
    with station.registry.session(readonly=True) as s:
        drives = [items.drive_summary(s, d) for d in s.scalars(
            select(Drive).order_by(Drive.present.desc(), Drive.id))]
    for card in drives:
        job = card["job"]
        card["progress"] = station.progress.get(job["id"]) if job else None
        card["erasable"] = card["present"] and card["state"] in ERASABLE and not (
            job and job["state"] in ("queued", "running", "interrupted"))
    return drives


def router(station: Station) -> APIRouter:
    web = APIRouter()

    @web.get("/board", include_in_schema=False)
    def board(request: Request) -> Response:
        person = signed_in(station, request)
        return render(request, "board.html", {"cards": cards(station), "csrf": person.csrf},
                      person=person)

    @web.post("/board/drives/{drive_id}/erase", include_in_schema=False)
    async def erase(drive_id: int, request: Request) -> Response:
        person = signed_in(station, request)
        await form_of(request, person.csrf)
        try:
            station.erase(str(drive_id), technician=person.name)
        except ImagerError as exc:
            return render(request, "message.html", {"title": N_("Not started"), "text": str(exc)},
                          person=person, status=400)
        return RedirectResponse("/board", 303)

    return web
