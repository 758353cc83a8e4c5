"""Donors' accounts on the portal: a coordinator invites, the invited person sets the
account up, signs in and sees its donations from both workshops (Gap knows it by its
SIRET, Briançon by its donor number there); donor B sees none of them (404 on every
route that takes an id: HTML, JSON and downloads); forms without their token are
refused; sign-ins are limited per address and an account locks; an expired or used
invitation opens nothing; the donor's asset numbers are compared with what came in.

Real parts: two stations made by the station's own CLI, certified by a network CA,
push over HTTPS to a real `imager portal serve`, on PostgreSQL and on SQLite (the same
code); the rate limits are checked on an app of the same database in this process."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from clirun import imager
from fastapi.testclient import TestClient
from portal_net import (
    COMPANY,
    COMPANY_SIRET,
    DONATION_REF,
    LAPTOP_SERIAL,
    OTHER,
    OTHER_SIRET,
    Portal,
    network_ca,
    portal_tls,
    push_all,
    workshops,
)
from sqlalchemy import select
from test_postgresql import PgServer, pg  # noqa: F401 - the server fixture, used by name
from test_web_verify import MODEL

from imager.certify.keys import load_cert
from imager.certify.signing import Trust
from imager.portal import models as m
from imager.portal.app import Portal as PortalConfig
from imager.portal.app import create_app
from imager.portal.db import PortalDb
from imager.store.db import utcnow

pytestmark = [pytest.mark.root, pytest.mark.server]

PASSWORD = "correct horse battery"
OFFICE = "127.0.0.2"             # another client address, for its own sign-in limit
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def stations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("donors")
    ca, ca_file = network_ca(base / "ca")
    tls = portal_tls(base / "tls")
    # The stations print a verify_url; the portals of this module answer at /verifier.
    made = workshops(base, "https://127.0.0.1/verifier", ca)
    return {"base": base, "ca": ca, "ca_file": ca_file, "tls": tls, **made}


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def net(request: pytest.FixtureRequest, stations: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A portal on `param`, both stations pushed to it, a donor invited and set up."""
    base: Path = stations["base"] / request.param
    base.mkdir()
    if request.param == "postgresql":
        server: PgServer = request.getfixturevalue("pg")
        database = server.create_database("portal_donors")
    else:
        database = f"sqlite:///{base / 'portal.sqlite3'}"
    portal = Portal(base / "portal", database, stations["ca_file"], stations["tls"])
    try:
        portal.start()
        push_all(portal, stations["gap"], stations["briancon"])
        db = PortalDb.open_url(database)
        yield {**stations, "portal": portal, "db": db, "database": database}
        db.close()
    finally:
        portal.stop()


def invite(net: dict[str, Any], *args: str) -> str:
    """`imager portal invite` on the portal's database: the link's path."""
    said = imager(net["base"], "portal", "invite", "--db", net["database"], "--portal",
                  net["portal"].url, *args).stdout
    link = re.search(r"https://\S+/compte/invitation/[\w-]+", said)
    assert link, said
    return link.group(0).removeprefix(net["portal"].url)


def set_up(net: dict[str, Any], path: str, login: str) -> None:
    with net["portal"].client() as http:
        page = http.get(path)
        assert page.status_code == 200 and "Créer votre compte" in page.text, page.text
        done = http.post(path, data={"login": login, "password": PASSWORD})
        assert done.status_code == 200 and "Votre compte est prêt" in done.text, done.text


@contextmanager
def signed_in(net: dict[str, Any], login: str, password: str = PASSWORD,
              source: str | None = None) -> Iterator[httpx.Client]:
    """An HTTPS client signed in as `login` (through the sign-in form), from the
    loopback address `source` if given."""
    with net["portal"].client(source) as http:
        yield _sign_in(http, login, password)


def _sign_in(http: httpx.Client, login: str, password: str) -> httpx.Client:
    form = http.get("/compte/connexion")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token, form.text
    done = http.post("/compte/connexion", data={"csrf": token.group(1), "login": login,
                                                 "password": password})
    assert done.status_code == 303 and done.headers["location"] == "/compte", done.text
    cookie = done.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie, cookie
    return http


def donor_ref(net: dict[str, Any], workshop: str) -> str:
    with net["db"].session(readonly=True) as s:
        return s.scalars(select(m.Donation.donor_ref).join(m.Station).where(
            m.Station.name.contains(workshop), m.Donation.reference == DONATION_REF)).one()


@pytest.fixture(scope="module")
def donors(net: dict[str, Any]) -> dict[str, Any]:
    """Donor A (COMPANY: its SIRET, and its donor number at Briançon), donor B (OTHER)."""
    a = invite(net, "--name", COMPANY, "--siret", COMPANY_SIRET, "--donor",
               f"Atelier de Briançon:{donor_ref(net, 'Briançon')}")
    set_up(net, a, "compta@alpine.example")
    set_up(net, invite(net, "--name", OTHER, "--siret", OTHER_SIRET), "mairie@stveran.example")
    return {"a": "compta@alpine.example", "b": "mairie@stveran.example", "a_link": a}


def test_a_donor_sees_its_donations_from_both_workshops(net: dict[str, Any],
                                                        donors: dict[str, Any]) -> None:
    with signed_in(net, donors["a"]) as http:
        listed = http.get("/compte", headers=JSON).json()["donations"]
        assert sorted(d["workshop"] for d in listed) == ["Atelier de Briançon", "Atelier de Gap"]
        assert all(d["reference"] == DONATION_REF and d["destroyed"] == 1 for d in listed)
        page = http.get("/compte").text
        assert "Mes dons" in page and "Atelier de Briançon" in page
        for d in listed:
            view = http.get(f"/compte/dons/{d['id']}", headers=JSON).json()
            assert view["drives"][0]["state"] == "destroyed"
            [cert] = view["donation_certificates"]
            for ext in ("pdf", "csv", "json"):
                got = http.get(f"/compte/dons/{d['id']}/documents/{cert['id']}.{ext}")
                assert got.status_code == 200 and got.content, (ext, got.text)
                assert "attachment" in got.headers["content-disposition"]
            page = http.get(f"/compte/dons/{d['id']}").text
            assert "Détruit" in page and "Le certificat du don" in page
            pem = http.get(f"/compte/dons/{d['id']}/certificats-station.pem").text
            assert pem.count("BEGIN CERTIFICATE") >= 2
            head = http.get(f"/compte/dons/{d['id']}/tete-registre.json")
            assert head.status_code == 200 and "ledger-head" in head.text


def test_donor_b_gets_404_on_every_route_that_takes_an_id(net: dict[str, Any],
                                                          donors: dict[str, Any]) -> None:
    with signed_in(net, donors["a"]) as http:
        theirs = http.get("/compte", headers=JSON).json()["donations"]
        docs = [(d["id"], doc["id"]) for d in theirs
                for doc in http.get(f"/compte/dons/{d['id']}", headers=JSON).json()["documents"]]
    with signed_in(net, donors["b"]) as http:
        mine = http.get("/compte", headers=JSON).json()["donations"]
        assert [d["reference"] for d in mine] == ["DON-2026-0200"]
        paths = [f"/compte/dons/{i}" for i in (d["id"] for d in theirs)] + \
            [f"/compte/dons/{d['id']}/{leaf}" for d in theirs
             for leaf in ("certificats-station.pem", "tete-registre.json",
                          "rapprochement.csv")] + \
            [f"/compte/dons/{i}/documents/{doc}.{ext}" for i, doc in docs
             for ext in ("pdf", "json", "csv")] + \
            ["/compte/dons/999999", "/compte/dons/abc", "/compte/dons/1e3/documents/x.pdf",
             f"/compte/dons/{mine[0]['id']}/documents/{docs[0][1]}.pdf"]   # A's doc, B's id
        for path in paths:
            for headers in ({}, JSON):
                said = http.get(path, headers=headers)
                assert said.status_code == 404, (path, headers, said.status_code)
                assert COMPANY not in html.unescape(said.text) and "WD-" not in said.text
        posted = http.post(f"/compte/dons/{theirs[0]['id']}/attendus",
                           data={"csrf": _csrf(http), "assets": "X1"})
        assert posted.status_code == 404


def _csrf(http: httpx.Client) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', http.get("/compte").text)
    assert found
    return found.group(1)


def test_forms_without_their_token_are_refused(net: dict[str, Any],
                                               donors: dict[str, Any]) -> None:
    with signed_in(net, donors["a"]) as http:
        mine = http.get("/compte", headers=JSON).json()["donations"][0]["id"]
        for data in ({"assets": "X"}, {"assets": "X", "csrf": "forged"}):
            said = http.post(f"/compte/dons/{mine}/attendus", data=data)
            assert said.status_code == 403, said.text
        assert http.post("/compte/deconnexion", data={}).status_code == 403
        assert http.get("/compte").status_code == 200            # still signed in
        assert http.post("/compte/deconnexion", data={"csrf": _csrf(http)}).status_code == 303
        assert http.get("/compte").status_code == 303            # signed out
    with net["portal"].client() as http:                       # sign-in: double submit
        said = http.post("/compte/connexion", data={"csrf": "x", "login": donors["a"],
                                                     "password": PASSWORD})
        assert said.status_code == 403


def test_a_used_or_expired_invitation_opens_nothing(net: dict[str, Any],
                                                    donors: dict[str, Any]) -> None:
    with net["portal"].client() as http:
        used = http.post(donors["a_link"], data={"login": "autre", "password": PASSWORD})
        assert used.status_code == 404 and http.get(donors["a_link"]).status_code == 404
    late = invite(net, "--name", "Association Les Écrans")
    with net["db"].session() as s:
        row = s.scalars(select(m.Invitation).order_by(m.Invitation.id.desc())).first()
        assert row is not None
        row.expires_at = utcnow() - timedelta(minutes=1)
    with net["portal"].client() as http:
        assert http.get(late).status_code == 404
        said = http.post(late, data={"login": "ecrans", "password": PASSWORD})
        assert said.status_code == 404 and "expiré" in said.text
    with net["db"].session(readonly=True) as s:
        assert all(len(i.token_sha256) == 64 for i in s.scalars(select(m.Invitation)))
        assert late.rsplit("/", 1)[1] not in {i.token_sha256 for i in s.scalars(
            select(m.Invitation))}


def test_asset_numbers_expected_versus_received(net: dict[str, Any],
                                                donors: dict[str, Any]) -> None:
    with signed_in(net, donors["a"]) as http:
        gap = next(d for d in http.get("/compte", headers=JSON).json()["donations"]
                   if d["workshop"] == "Atelier de Gap")
        url = f"/compte/dons/{gap['id']}"
        drives = http.get(url, headers=JSON).json()["drives"]
        assert [(d["serial"], d["machine_serial"], d["machine_model"]) for d in drives] == [
            ("WD-GAP-0001", LAPTOP_SERIAL, "LENOVO ThinkPad T480")]
        # A company's register lists laptops: the laptop's serial, spelt its own way.
        listing = ("Numéro d'inventaire;Numéro de série\nINV-001;pf1-gap-7x\n"
                   "INV-002;SN-LOST-9\nINV-003;wd-gap-0001\n")
        said = http.post(f"{url}/attendus", data={"csrf": _csrf(http), "assets": listing})
        assert said.status_code == 303
        assets = http.get(url, headers=JSON).json()["assets"]
        assert [(a["asset"], a["match"], a["model"]) for a in assets] == [
            ("INV-001", "received", "LENOVO ThinkPad T480"), ("INV-002", "missing", None),
            ("INV-003", "received", MODEL)]                 # a drive's serial matches too
        page = http.get(url).text
        assert "reçu" in page and "attendu, non reçu" in page
        assert LAPTOP_SERIAL in page and "LENOVO ThinkPad T480" in page
        table = http.get(f"{url}/rapprochement.csv")
        assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
        assert f'filename="rapprochement-{DONATION_REF}.csv"' in table.headers[
            "content-disposition"]
        assert table.content.decode("utf-8-sig").split("\r\n") == [
            "Votre numéro d'inventaire;Numéro de série;Modèle;Résultat",
            "INV-001;pf1-gap-7x;LENOVO ThinkPad T480;reçu",
            "INV-002;SN-LOST-9;;attendu, non reçu", f"INV-003;wd-gap-0001;{MODEL};reçu", ""]
        english = http.get(f"{url}/rapprochement.csv?lang=en").content.decode("utf-8-sig")
        assert english.startswith("Your asset number;Serial number;Model;Result\r\n")
        formula = http.post(f"{url}/attendus", data={"csrf": _csrf(http),
                                                     "assets": "=HYPERLINK(1);+33"})
        assert formula.status_code == 303
        cells = http.get(f"{url}/rapprochement.csv").content.decode("utf-8-sig")
        assert "\r\n'=HYPERLINK(1);'+33;;" in cells                # never run as formulas
        bad = http.post(f"{url}/attendus", data={"csrf": _csrf(http),
                                                 "assets": "a;b;c;d"})
        assert bad.status_code == 400 and "ligne 1" in bad.text
        huge = http.post(f"{url}/attendus", data={"csrf": _csrf(http),
                                                  "assets": "SN\n" * 2001})
        assert huge.status_code == 400
        other = http.post(f"{url}/attendus", data={"csrf": _csrf(http), "assets": "SN-X"})
        assert other.status_code == 303
        rows = http.get(url, headers=JSON).json()["assets"]
        assert [(a["serial"], a["match"]) for a in rows] == [
            ("SN-X", "missing"), (LAPTOP_SERIAL, "unexpected")]     # the laptop, once


def test_sign_ins_are_limited_per_address_and_an_account_locks(net: dict[str, Any],
                                                               donors: dict[str, Any]) -> None:
    trust = Trust(load_cert(net["ca_file"]))
    db = PortalDb.open_url(net["database"])
    try:
        app = create_app(PortalConfig(db, trust, login_tries=8))
        with TestClient(app, base_url="https://testserver") as http:
            def attempt(login: str, password: str) -> int:
                http.cookies.clear()                 # a new visitor, the same address
                form = http.get("/compte/connexion")
                token = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert token
                return http.post("/compte/connexion", data={
                    "csrf": token.group(1), "login": login, "password": password},
                    follow_redirects=False).status_code
            assert [attempt(donors["b"], "wrong password!") for _ in range(5)] == [401] * 5
            assert attempt(donors["b"], PASSWORD) == 401          # locked: the right one too
            assert attempt("nobody@example.org", "x" * 12) == 401
            assert attempt(donors["a"], PASSWORD) == 303
            assert attempt(donors["a"], PASSWORD) == 429           # 9th from this address
    finally:
        db.close()
    with db.session(readonly=True) as s:
        locked = s.scalars(select(m.Account).where(m.Account.login == donors["b"])).one()
        assert locked.locked_until is not None


def test_a_coordinator_invites_from_its_page(net: dict[str, Any],
                                             donors: dict[str, Any]) -> None:
    set_up(net, invite(net, "--name", "Coordination du réseau", "--role", "coordinator"),
           "coord@reseau.example")
    with signed_in(net, donors["a"]) as http:
        assert http.get("/compte/coordination").status_code == 403
    with signed_in(net, "coord@reseau.example") as http:
        page = html.unescape(http.get("/compte/coordination").text)
        assert COMPANY in page and "compta@alpine.example" in page
        made = http.post("/compte/coordination/invitations", data={
            "csrf": _csrf(http), "name": "Collège de Embrun", "sirets": "19050009900011",
            "donors": "", "role": "donor"})
        link = re.search(r"https://\S+/compte/invitation/[\w-]+", made.text)
        assert made.status_code == 200 and link, made.text
        assert "/compte/invitation/" not in http.get("/compte/coordination").text  # once
        refused = http.post("/compte/coordination/invitations", data={
            "csrf": _csrf(http), "name": "X", "sirets": "123", "role": "donor"})
        assert refused.status_code == 400 and "SIRET" in refused.text
    set_up(net, link.group(0).removeprefix(net["portal"].url), "college@embrun.example")



def _account_id(net: dict[str, Any], login: str) -> int:
    with net["db"].session(readonly=True) as s:
        return s.scalars(select(m.Account.id).where(m.Account.login == login)).one()


def _sign_in_refused(net: dict[str, Any], login: str, password: str) -> None:
    with net["portal"].client(OFFICE) as http:
        form = re.search(r'name="csrf" value="([^"]+)"', http.get("/compte/connexion").text)
        assert form
        said = http.post("/compte/connexion", data={"csrf": form.group(1), "login": login,
                                                     "password": password})
        assert said.status_code != 303, said.text


def test_a_coordinator_makes_a_new_link_and_disables_an_account(
        net: dict[str, Any], donors: dict[str, Any]) -> None:
    """From another office (its own sign-in limit: this module signs in often)."""
    college, coord = "college@embrun.example", "coord@reseau.example"
    account, me = _account_id(net, college), _account_id(net, coord)
    with signed_in(net, college, source=OFFICE) as theirs, \
            signed_in(net, coord, source=OFFICE) as http:
        page = html.unescape(http.get("/compte/coordination").text)
        assert f"/compte/coordination/comptes/{me}/invitation" in page
        assert f"/compte/coordination/comptes/{me}/etat" not in page      # not oneself
        said = http.post(f"/compte/coordination/comptes/{account}/etat",
                         data={"csrf": _csrf(http), "active": "0"})
        assert said.status_code == 200 and "est désactivé" in html.unescape(said.text)
        assert theirs.get("/compte").status_code == 303                 # its session ended
        _sign_in_refused(net, college, PASSWORD)
        again = http.post(f"/compte/coordination/comptes/{account}/invitation",
                          data={"csrf": _csrf(http)})
        assert again.status_code == 400 and "réactivez-le" in html.unescape(again.text)
        assert http.post(f"/compte/coordination/comptes/{account}/etat",
                         data={"csrf": _csrf(http), "active": "1"}).status_code == 200
        links = []
        for _ in range(2):                   # the first link, lost, is replaced
            made = http.post(f"/compte/coordination/comptes/{account}/invitation",
                             data={"csrf": _csrf(http)})
            found = re.search(r"https://\S+/compte/invitation/[\w-]+", made.text)
            assert made.status_code == 200 and found, made.text
            links.append(found.group(0).removeprefix(net["portal"].url))
        mine = http.post(f"/compte/coordination/comptes/{me}/etat",
                         data={"csrf": _csrf(http), "active": "0"})
        assert mine.status_code == 400 and "votre propre compte" in html.unescape(mine.text)
        for path in ("/compte/coordination/comptes/99999/etat",
                     "/compte/coordination/comptes/x/invitation"):
            assert http.post(path, data={"csrf": _csrf(http), "active": "0"}
                             ).status_code == 404
        assert http.post(f"/compte/coordination/comptes/{account}/etat",
                         data={"active": "0"}).status_code == 403       # no form token
    with net["portal"].client(OFFICE) as http:
        assert http.get(links[0]).status_code == 404
        page = html.unescape(http.get(links[1]).text)
        assert "Choisissez un nouveau mot de passe" in page and college in page
        done = http.post(links[1], data={"login": college, "password": "autre mot de passe"})
        assert done.status_code == 200 and "Votre compte est prêt" in done.text
    _sign_in_refused(net, college, PASSWORD)                     # the old password
    with signed_in(net, college, "autre mot de passe", OFFICE) as http:
        assert http.get("/compte").status_code == 200


def test_coordinators_read_the_beneficiaries_messages_and_mark_them_read(
        net: dict[str, Any], donors: dict[str, Any]) -> None:
    """A laptop's message reaches the coordinators' page (a donor's account is
    refused it); marked read, it says who read it."""
    from test_portal_messages import payload
    sent = payload(machine="poste-0042", text="Bonjour,\nle wifi ne marche pas.",
                   contact="06 12 34 56 78")
    with net["portal"].client() as http:
        posted = http.post("/api/v1/messages", json=sent,
                           headers={"Idempotency-Key": sent["id"]})
        assert posted.status_code in (200, 201), posted.text
    with signed_in(net, donors["a"]) as http:
        assert http.get("/compte/coordination/messages").status_code == 403
    set_up(net, invite(net, "--name", "Coordination des messages", "--role", "coordinator"),
           f"messages-{net['database'][:5]}@reseau.example")
    with signed_in(net, f"messages-{net['database'][:5]}@reseau.example") as http:
        page = html.unescape(http.get("/compte/coordination/messages?non-lus=1").text)
        assert "poste-0042" in page and "le wifi ne marche pas." in page
        assert "06 12 34 56 78" in page and "effacés après 90 jours" in page
        done = http.post("/compte/coordination/messages/lus", follow_redirects=False,
                         data={"csrf": _csrf(http), "ids": sent["id"]})
        assert done.status_code == 303, done.text
        page = html.unescape(http.get(done.headers["location"]).text)
        assert "Marqués comme lus : 1." in page and "Lu le " in page
        assert "Coordination des messages" in page
        unread = html.unescape(http.get("/compte/coordination/messages?non-lus=1").text)
        assert sent["id"] not in unread and "le wifi ne marche pas." not in unread
        refused = http.post("/compte/coordination/messages/lus", data={"ids": sent["id"]})
        assert refused.status_code == 403
