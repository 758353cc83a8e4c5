"""The portal's pages (server-rendered, French first, imager.web.pages): its home
page and the public verification at the path the certificates' QR codes print
(imager.web.verify, answered by imager.portal.lookup), with the shared style sheet."""

from __future__ import annotations

import gettext
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from imager.portal.lookup import PublicLookup
from imager.web import verify as shared
from imager.web.i18n import N_, catalogue
from imager.web.pages import Pages

HERE = Path(__file__).parent
LOCALE_DIR = HERE / "locale"
# First segments of the portal's other pages and API: --verify-path never takes them.
TAKEN = {"api", "static", "v", "compte"}

LEAD = N_("This page tells you whether a document from a workshop of the network is "
          "genuine: an erasure certificate, a destruction record or a donation certificate. "
          "You do not need an account.")
GENUINE = N_("A workshop of the network issued it: its name is below. The workshop had "
             "not withdrawn it when it last sent its news to the network.")
SIGNED = N_("A workshop of the network signed this document, but it has not sent it here "
            "yet. Try again later, or ask the workshop that gave it to you.")
UNCONFIRMED = N_("The problem is on our side. Try again later, or ask the workshop that "
                 "gave it to you.")
# The station's words, but for who answers: the network, from what its workshops sent.
STATES = {**shared.STATES, **{state: (shared.STATES[state][0], text) for state, text in (
    ("genuine", GENUINE), ("signed", SIGNED), ("unconfirmed", UNCONFIRMED))}}


def translations(lang: str) -> gettext.NullTranslations:
    """The portal's catalogue of `lang`, the shared pages' behind it."""
    return catalogue(lang, LOCALE_DIR)


pages = Pages(HERE / "templates", translations)


def mount(app: FastAPI, lookup: PublicLookup, verify_path: str) -> None:
    """Add the portal's pages and the shared style sheet to `app`."""
    web = APIRouter()

    @web.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        return pages.render(request, "home.html", {"path": verify_path})

    app.include_router(web)
    app.include_router(shared.router(verify_path, look_up=lookup.look_up,
                                     check_upload=lookup.check_upload, render=pages.render,
                                     lead=LEAD, states=STATES))
    app.mount("/static", StaticFiles(packages=[("imager.web", "static")]), name="static")
