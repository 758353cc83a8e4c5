"""The station's public verification page (imager.web.verify), answered from its own
documents and ledger (imager.certify.public, imager.certify.local), at the path of
its profile's verify_url."""

from __future__ import annotations

from fastapi import APIRouter

from imager.certify.identity import load_profile
from imager.certify.local import LocalCheck
from imager.certify.public import check_upload, look_up
from imager.errors import UsageError
from imager.settings import Settings
from imager.station.service import Station
from imager.station.web.pages import render
from imager.web import verify as shared
from imager.web.verify import DEFAULT_PATH, LOOKUPS, MAX_UPLOAD, SHORT, WINDOW, wants_json

__all__ = ["DEFAULT_PATH", "LOOKUPS", "MAX_UPLOAD", "SHORT", "WINDOW", "router",
           "verify_path", "wants_json"]
# First segments of the station's other pages and API: a profile's verify_url never
# takes them over.
_TAKEN = {"api", "static", "login", "logout", "setup", "switch", "board", "v", "docs",
          "redoc", "openapi.json"}


def verify_path(settings: Settings) -> str:
    """Where the certificates' QR codes lead on this station: the path of the profile's
    verify_url; DEFAULT_PATH when it has none, or one another page of the station uses."""
    try:
        url = load_profile(settings).verify_url
    except UsageError:
        return DEFAULT_PATH                 # the station says why when it issues
    return shared.path_of(url, _TAKEN)


def router(station: Station) -> APIRouter:
    """The verification page's routes, public."""
    local = LocalCheck(station.settings, station.registry)
    documents = station.settings.documents_dir
    return shared.router(
        verify_path(station.settings), render=render,
        look_up=lambda doc_id, sha256: look_up(doc_id, sha256, local.current(), documents),
        check_upload=lambda data: check_upload(data, local.current()))
