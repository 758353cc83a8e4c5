"""The board shows what waits for the network's portal, and a document issued is
pushed at once: a real `imager serve --portal` station (its pushes every 10 minutes
only) and a real `imager portal serve` over HTTPS on PostgreSQL.

The station issues a destruction record while the portal is down: its board says in
plain French that the portal does not answer, that nothing is lost, and what waits
(one document, one donation). The portal starts: the pusher's retry sends it, the
board says everything is sent and when. A coordinator then issues the donation's
certificate from the station's page: the issuer nudges the pusher and the portal
holds it seconds later, long before the next push is due."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from browser import PASSWORD, add_user
from clirun import imager
from portal_net import Portal, network_ca, portal_tls, station
from sqlalchemy import select
from station_proc import Serve, until
from test_postgresql import PgServer, pg  # noqa: F401 - the server fixture, used by name
from test_web_verify import REF, TECH, _destroy

from imager.portal import models as m
from imager.portal.db import PortalDb

pytestmark = pytest.mark.server

COMPANY = "Mairie de Saint-Véran"


@pytest.fixture(scope="module")
def net(pg: PgServer, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
        ) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("board")
    ca, ca_file = network_ca(base / "ca")
    tls = portal_tls(base / "tls")
    database = pg.create_database("board")
    portal = Portal(base / "portal", database, ca_file, tls)
    data = station(base / "embrun", "Atelier d'Embrun", f"{portal.url}/verifier", ca)
    imager(data, "donors", "add", "--kind", "mairie", COMPANY)
    imager(data, "donations", "add", "--donor", COMPANY, REF)
    imager(data, "technicians", "add", "--level", "Niveau 3", TECH)
    destroyed = _destroy(data, "WD-EMB-0001")
    add_user(data, "lea", role="coordinator", level=3)
    serve = Serve(data, "--no-local-agent", "--portal", portal.url, "--portal-ca",
                  str(tls.ca), "--portal-every", "600")
    try:
        serve.start()
        with httpx.Client(base_url=serve.url, timeout=30) as web:
            _sign_in(web, "lea")
            yield {"serve": serve, "portal": portal, "database": database, "web": web,
                   "destroyed": destroyed, "data": data}
    finally:
        serve.close()
        portal.stop()


def _token(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _sign_in(web: httpx.Client, login: str) -> None:
    page = web.get("/login")
    done = web.post("/login", data={"csrf": _token(page.text), "login": login,
                                    "password": PASSWORD})
    assert done.status_code == 303, done.text


def _portal_part(web: httpx.Client) -> str:
    """The board's part about the portal, as text."""
    page = web.get("/board")
    assert page.status_code == 200, page.text
    found = re.search(r'<section id="portal-status".*?</section>', page.text, re.S)
    assert found, page.text
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(0))).split())


def _held(database: str) -> set[str]:
    with PortalDb.open_url(database) as db, db.session(readonly=True) as s:
        return set(s.scalars(select(m.Document.id)))


def test_the_board_says_what_waits_while_the_portal_is_down(net: dict[str, Any]) -> None:
    net["serve"].console(r"push to the portal .* failed \(PortalUnreachable\)")
    said = until(lambda: (t := _portal_part(net["web"])) and "ne répond pas" in t and t, 30,
                 "the board shows the failed push")
    assert "Envoi au portail du réseau" in said
    assert "En attente d'envoi : 1 document(s), 1 don(s)." in said
    assert "La station réessaie toute seule : rien n'est perdu." in said
    assert "Rien n'est encore envoyé." in said
    english = net["web"].get("/board?lang=en").text
    assert "Waiting to be sent: 1 document(s), 1 donation(s)." in english
    net["web"].get("/board?lang=fr")


def test_once_the_portal_answers_the_board_says_all_is_sent(net: dict[str, Any]) -> None:
    net["portal"].start()
    said = until(lambda: (t := _portal_part(net["web"])) and "Tout est envoyé" in t and t,
                 60, "the pusher's retry reaches the portal and the board says so")
    assert re.search(r"Dernier envoi réussi : 20\d\d-\d\d-\d\d \d\d:\d\d\.", said), said
    assert "UTC" not in said                                  # Paris time, as on the certificates
    assert "ne répond pas" not in said
    assert _held(net["database"]) == {net["destroyed"]["id"]}


def test_a_document_issued_is_pushed_at_once(net: dict[str, Any]) -> None:
    web = net["web"]
    page = web.get(f"/donations/{REF}")
    done = web.post(f"/donations/{REF}/certificate", data={"csrf": _token(page.text)})
    assert done.status_code == 303, done.text
    # The next periodic push is 10 minutes away: only the nudge sends it this soon.
    until(lambda: len(_held(net["database"])) == 2, 30,
          "the donation certificate reaches the portal")
    said = until(lambda: (t := _portal_part(web)) and "Tout est envoyé" in t and t, 30,
                 "the board says everything is sent")
    assert "En attente" not in said


def test_the_live_board_sends_the_portals_part(net: dict[str, Any]) -> None:
    with net["web"].stream("GET", "/board/events") as events:
        for line in events.iter_lines():
            if line.startswith("data: ") and "portal-status" in line:
                break
    said = json.loads(line.removeprefix("data: "))
    assert said["id"] == "portal-status"
    assert "Tout est envoyé au portail." in html.unescape(said["html"])
