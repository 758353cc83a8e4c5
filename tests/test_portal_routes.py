"""The listeners split: the portal faces the Internet, so it serves none of the
station's routes. Its route table against the station's (tests/route_table.py): they
share the public verification (the URL the QR codes print), the style sheet and a
home page of its own, nothing else; every other station path answers 404 on the
portal, whatever its method; no handler of the portal comes from the station, and
the portal's process loads no station or agent module. Its pages have their French."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fastapi.routing
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from certmaker import make
from fastapi import FastAPI
from fastapi.testclient import TestClient
from route_table import routes

from imager.certify.signing import Trust
from imager.portal import web as portal_web
from imager.portal.app import Portal, create_app
from imager.portal.db import PortalDb
from imager.web import i18n

# What the station and the portal both answer: the public verification and its assets,
# and "/" (each its own home page).
PUBLIC = {("GET", "/verifier"), ("POST", "/verifier"), ("GET", "/v/{doc_id}"),
          ("GET", "/v/{doc_id}/{sha256}"), ("GET", "/static/style.css"), ("GET", "/")}

# The donors' and coordinators' pages (imager.portal.account_web): the portal's own.
ACCOUNTS = {(method, path) for method, path in (
    ("GET", "/compte"), ("GET", "/compte/connexion"), ("POST", "/compte/connexion"),
    ("POST", "/compte/deconnexion"), ("GET", "/compte/invitation/{token}"),
    ("POST", "/compte/invitation/{token}"), ("GET", "/compte/dons/{donation_id}"),
    ("POST", "/compte/dons/{donation_id}/attendus"),
    ("GET", "/compte/dons/{donation_id}/documents/{name}"),
    ("GET", "/compte/dons/{donation_id}/certificats-station.pem"),
    ("GET", "/compte/dons/{donation_id}/tete-registre.json"),
    ("GET", "/compte/dons/{donation_id}/rapprochement.csv"),
    ("GET", "/compte/verifier-hors-ligne"), ("GET", "/compte/coordination"),
    ("POST", "/compte/coordination/invitations"), ("GET", "/compte/coordination/messages"),
    ("POST", "/compte/coordination/comptes/{account_id}/invitation"),
    ("POST", "/compte/coordination/comptes/{account_id}/etat"),
    ("POST", "/compte/coordination/messages/lus"))}


@pytest.fixture
def portal_app(tmp_path: Path) -> Iterator[FastAPI]:
    db = PortalDb.open_url(f"sqlite:///{tmp_path / 'portal.sqlite3'}")
    try:
        yield create_app(Portal(db, Trust([make("AC du réseau", pathlen=1).cert])))
    finally:
        db.close()


def _table(app: FastAPI) -> list[tuple[str, str, str]]:
    """(method, path, module of its handler) of every route of `app`."""
    flatten = getattr(fastapi.routing, "iter_route_contexts", list)
    found = []
    for route in flatten(app.routes):
        if getattr(route, "path", None) == "/static":
            found.append(("GET", "/static/style.css", "starlette.staticfiles"))
            continue
        module = route.endpoint.__module__
        found += [(method, route.path, module) for method in sorted(route.methods)]
    return found


def test_the_portal_serves_no_route_of_the_station(portal_app: FastAPI,
                                                   tmp_path: Path) -> None:
    portal = _table(portal_app)
    station = set(routes(tmp_path / "station"))
    assert not [r for r in portal if r[2].startswith(("imager.station", "imager.agent"))]
    shared = {(method, path) for method, path, _ in portal} & station
    assert shared == PUBLIC
    assert {(method, path) for method, path, _ in portal} - PUBLIC - ACCOUNTS == {
        ("GET", "/api/portal/v1/health"), ("POST", "/api/portal/v1/state"),
        ("POST", "/api/portal/v1/push"), ("POST", "/api/v1/messages")}
    assert {(method, path) for method, path, _ in portal} >= ACCOUNTS


def test_every_station_path_is_not_found_on_the_portal(portal_app: FastAPI,
                                                       tmp_path: Path) -> None:
    station = [r for r in routes(tmp_path / "station") if r not in PUBLIC]
    assert len(station) > 50            # the agents', technicians' and bench pages
    answered = {}
    with TestClient(portal_app) as client:
        for method, path in station:
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            answered[(method, path)] = client.request(method, concrete).status_code
    assert {k: v for k, v in answered.items() if v != 404} == {}


def test_the_portal_loads_no_station_or_agent_module() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, imager.portal.app, imager.cli.portal; "
         "print('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.startswith(("imager.station", "imager.agent"))]


def _messages(folder: Path) -> set[str]:
    return {m if isinstance(m, str) else m[0] for *_, m, _, _ in extract_from_dir(
        folder, method_map=[("**.py", "python"), ("**/templates/**.html", "jinja2")],
        keywords={"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)}) if m}


def _french(*folders: Path) -> set[str]:
    found = set()
    for folder in folders:
        with (folder / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
            found |= {str(m.id) for m in read_po(fh, locale="fr") if m.id and m.string}
    return found


def test_every_message_of_the_portal_and_the_shared_pages_has_its_french() -> None:
    shared = Path(i18n.__file__).parent
    assert _messages(shared) - _french(i18n.SHARED_LOCALE) == set()
    portal = Path(portal_web.__file__).parent
    assert _messages(portal) - _french(portal_web.LOCALE_DIR, i18n.SHARED_LOCALE) == set()
    assert portal_web.translations("fr").gettext("Check a document") == "Vérifier un document"
