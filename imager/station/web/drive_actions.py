"""What a person does to one drive beyond the policy, from its page or its card:
install the system, erase with another method (habilitation "erase_method"), send
it to destruction ("send_to_destruction") and record its physical destruction in
front of a witness ("destroy"). Each is refused (403) to a person without the
habilitation, whether the button was shown or the request made by hand."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from imager.certify.record import DESTRUCTION_TECHNIQUES
from imager.errors import ImagerError, UsageError
from imager.registry import destruction, items
from imager.registry.accounts import Person
from imager.registry.habilitations import Habilitations
from imager.station.service import Station
from imager.station.web.auth import posted
from imager.station.web.i18n import N_
from imager.station.web.pages import language, render


def refused(request: Request, person: Person, title: str, exc: ImagerError) -> Response:
    """The page saying what was refused and why (400)."""
    return render(request, "message.html", {"title": title, "text": str(exc)},
                  person=person, status=400)


def job_started(request: Request, person: Person, start: Callable[[], object]) -> Response:
    """Start a job with `start`: back to the board, or the page saying why not."""
    try:
        start()
    except ImagerError as exc:
        return refused(request, person, N_("Not started"), exc)
    return RedirectResponse("/board", 303)


def router(station: Station, habilitations: Habilitations) -> APIRouter:
    web = APIRouter()

    @web.post("/drives/{drive_id}/image", include_in_schema=False)
    async def image(drive_id: int, request: Request) -> Response:
        person, form = await posted(station, request, habilitations=habilitations,
                                    action="image")
        name, _, version = form.get("image", "").partition("@")
        return job_started(request, person, lambda: station.image(
            str(drive_id), name, version=version or None, technician=person.name))

    @web.post("/drives/{drive_id}/erase-method", include_in_schema=False)
    async def erase_method(drive_id: int, request: Request) -> Response:
        person, form = await posted(station, request, habilitations=habilitations,
                                    action="erase_method")
        return job_started(request, person, lambda: station.erase(
            str(drive_id), technician=person.name, method=form.get("method") or None))

    @web.post("/drives/{drive_id}/to-destruction", include_in_schema=False)
    async def to_destruction(drive_id: int, request: Request) -> Response:
        person, form = await posted(station, request, habilitations=habilitations,
                                    action="send_to_destruction")
        try:
            with station.registry.session() as s:
                drive = items.find_drive(s, str(drive_id))
                failed = destruction.unrecorded_failure(s, drive)
                if failed is None:
                    destruction.send(s, drive, actor=person.name, reason=form.get("reason", ""))
            if failed is not None:          # its failure's signed record moves it
                await run_in_threadpool(station.issuer().for_job, failed,
                                        language=language(request))
        except ImagerError as exc:
            return refused(request, person, N_("Not done"), exc)
        station.changed()
        return RedirectResponse(f"/drives/{drive_id}", 303)

    @web.post("/drives/{drive_id}/destruction", include_in_schema=False)
    async def destroyed(drive_id: int, request: Request) -> Response:
        person, form = await posted(station, request, habilitations=habilitations,
                                    action="destroy")
        try:
            _check_destruction(station, drive_id, form)
            await run_in_threadpool(         # pyHanko signs in its own event loop
                station.issuer().destruction,
                str(drive_id), technique=form["technique"], witness=form["witness"].strip(),
                witness_title=form.get("witness_title", "").strip() or None,
                technician=person.name, reason=form.get("reason", "").strip(),
                language=language(request))
        except ImagerError as exc:
            return refused(request, person, N_("Not recorded"), exc)
        station.changed()
        return RedirectResponse(f"/drives/{drive_id}", 303)

    return web


def _check_destruction(station: Station, drive_id: int, form: dict[str, str]) -> None:
    with station.registry.session(readonly=True) as s:
        state = items.find_drive(s, str(drive_id)).state
    if state != "to_destroy":
        raise UsageError(f"drive {drive_id} is {state}, not waiting for destruction: send "
                         "it to destruction first (button on its page)")
    if form.get("technique") not in DESTRUCTION_TECHNIQUES:
        raise UsageError(f"technique {form.get('technique')!r}: choose one of "
                         f"{', '.join(DESTRUCTION_TECHNIQUES)}")
    if not form.get("witness", "").strip():
        raise UsageError("the witness's name is missing: a destruction is recorded in "
                         "front of a witness; write their name")
