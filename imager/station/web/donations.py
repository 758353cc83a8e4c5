"""A donation's page: its donor, its drives and where each stands, its documents
(the donation certificate issued once every drive has its own)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from imager.errors import ImagerError, NotFound
from imager.registry import items
from imager.registry.issue import withdrawals
from imager.station.service import Station
from imager.station.web.auth import posted, signed_in
from imager.station.web.detail import FILES
from imager.station.web.pages import not_found, render
from imager.store import people
from imager.store.models import Document, Drive


def router(station: Station) -> APIRouter:
    web = APIRouter()

    def page(request: Request, reference: str, status: int = 200, **context: object
             ) -> Response:
        person = signed_in(station, request)
        with station.registry.session(readonly=True) as s:
            try:
                don = people.find_donation(s, reference)
            except NotFound as exc:
                return not_found(request, person, str(exc))
            drives = [items.drive_summary(s, d) for d in s.scalars(
                select(Drive).where(Drive.donation_id == don.id).order_by(Drive.id))]
            docs = list(s.scalars(select(Document).where(
                Document.donation_id == don.id, Document.drive_id.is_(None),
                Document.kind == "donation").order_by(Document.issued_at)))
            gone = withdrawals(s, [d.id for d in docs])
            info = {"reference": don.reference, "donor": don.donor.name,
                    "kind": don.donor.kind, "received_on": don.received_on.isoformat(),
                    "site": don.intake_site}
        documents = [{"id": d.id, "issued": d.issued_at, "withdrawn": gone.get(d.id),
                      "files": [k for k in FILES if (station.settings.documents_dir /
                                                     f"{d.id}.{k}").is_file()]}
                     for d in docs]
        return render(request, "donation.html", {"don": info, "drives": drives,
                                                 "documents": documents,
                                                 "csrf": person.csrf, **context},
                      person=person, status=status)

    @web.get("/donations/{reference}", include_in_schema=False)
    def donation(reference: str, request: Request) -> Response:
        return page(request, reference)

    @web.post("/donations/{reference}/certificate", include_in_schema=False)
    async def certificate(reference: str, request: Request) -> Response:
        person, _ = await posted(station, request)
        try:
            # In a worker thread: pyHanko signs the PDF with asyncio.run (not in a loop).
            await run_in_threadpool(station.issuer().donation, reference)
        except ImagerError as exc:
            return page(request, reference, 400, error=str(exc))
        station.changed()
        return RedirectResponse(f"/donations/{reference}", 303)

    return web
