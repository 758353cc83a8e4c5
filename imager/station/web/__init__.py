"""The station's web pages for the people at the bench (server-rendered, French
first): sign-in, the shared tablet's PIN switch, the first coordinator's setup,
the board. Mounted on the station's API app by `mount`."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from imager.registry.habilitations import load as load_habilitations
from imager.station.service import Station
from imager.station.web import (
    agents,
    auth,
    board,
    detail,
    donations,
    drive_actions,
    intake,
    jobs,
    people,
    triage,
    verify,
)
from imager.station.web.auth import Forbidden, LoginNeeded
from imager.station.web.i18n import N_
from imager.station.web.pages import HERE, render


def mount(app: FastAPI, station: Station) -> None:
    """Add the web pages and their assets to `app`."""
    habilitations = load_habilitations(station.settings)
    app.include_router(auth.router(station))
    app.include_router(board.router(station, habilitations))
    app.include_router(intake.router(station, habilitations))
    app.include_router(people.router(station, habilitations))
    app.include_router(agents.router(station, habilitations))
    app.include_router(detail.router(station, habilitations))
    app.include_router(drive_actions.router(station, habilitations))
    app.include_router(donations.router(station))
    app.include_router(jobs.router(station))
    app.include_router(triage.router(station, habilitations))
    app.include_router(verify.router(station))
    # The station's own assets, then the shared ones (imager/web/static: the style sheet).
    app.mount("/static", StaticFiles(directory=HERE / "static",
                                     packages=[("imager.web", "static")]), name="static")

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, exc: LoginNeeded) -> Response:
        return RedirectResponse(f"/login?next={exc.path}", 303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return render(request, "message.html", {"title": N_("Not allowed"), "text": exc.why},
                      status=403)
