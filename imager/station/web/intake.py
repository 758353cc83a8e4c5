"""Intake at the bench: a donation, then the labels of what it brought, scanned.

A barcode scanner is a keyboard; one set to US QWERTY on this AZERTY station
types `&é"'(` for digits: each label is read back (imager.inventory.scanned)
and the page says which ones were, showing what the scanner typed.
"""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from imager.errors import ImagerError
from imager.inventory.scanned import read_labels
from imager.registry.habilitations import Habilitations
from imager.station.service import Station
from imager.station.web.auth import posted, signed_in
from imager.station.web.pages import render
from imager.store import people
from imager.store.models import DONOR_KINDS, Donation, Drive

RECENT = 20


def _donations(station: Station) -> list[dict[str, object]]:
    with station.registry.session(readonly=True) as s:
        counts = dict(s.execute(select(Drive.donation_id, func.count()).group_by(
            Drive.donation_id)).all())
        rows = s.scalars(select(Donation).order_by(Donation.id.desc()).limit(RECENT))
        return [{"reference": d.reference, "donor": d.donor.name, "kind": d.donor.kind,
                 "received_on": d.received_on.isoformat(), "drives": counts.get(d.id, 0)}
                for d in rows]


def router(station: Station, habilitations: Habilitations) -> APIRouter:
    web = APIRouter()

    def page(request: Request, status: int = 200, **context: object) -> Response:
        person = signed_in(station, request)
        return render(request, "intake.html", {"csrf": person.csrf, "kinds": DONOR_KINDS,
                                               "donations": _donations(station), **context},
                      person=person, status=status)

    @web.get("/intake", include_in_schema=False)
    def intake(request: Request) -> Response:
        return page(request, chosen=request.query_params.get("donation"))

    @web.post("/intake/donations", include_in_schema=False)
    async def new_donation(request: Request) -> Response:
        person, form = await posted(station, request, habilitations=habilitations,
                                  action="intake")
        try:
            with station.registry.session() as s:
                don = people.receive_donation(
                    s, form.get("reference", ""), form.get("donor", ""),
                    form.get("donor_kind", ""), date.today(),
                    intake_site=form.get("site") or None)
                reference = don.reference
        except ImagerError as exc:
            return page(request, 400, error=str(exc), form=form)
        return page(request, chosen=reference, done=reference)

    @web.post("/intake/scan", include_in_schema=False)
    async def scan(request: Request) -> Response:
        person, form = await posted(station, request, habilitations=habilitations,
                                  action="intake")
        labels = read_labels(form.get("labels", ""))
        donation = form.get("donation", "")
        wanted = [r.label for r in labels]
        kind = form.get("kind", "drive")
        try:
            attached = station.intake(donation, drives=wanted if kind == "drive" else [],
                                      machines=wanted if kind == "machine" else [],
                                      actor=person.name)
        except ImagerError as exc:
            return page(request, 400, error=str(exc), chosen=donation, scanned=labels)
        return page(request, chosen=donation, scanned=labels, attached=attached)

    return web
