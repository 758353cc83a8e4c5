"""The web pages' accounts: the first coordinator's one-time setup link, sign-in
with argon2 hashes and a lock after wrong passwords, server-side sessions that a
disabled account loses at its next request, form tokens (CSRF) on every form,
the shared tablet's PIN switch, French first and English on request."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from web_client import PASSWORD, browser, quiet_station, sign_in, token_of, user

from imager.registry import accounts
from imager.settings import Settings
from imager.station.api import create_app
from imager.station.service import Station
from imager.station.web.i18n import translations
from imager.store.db import Registry
from imager.store.models import User


@pytest.fixture
def station(settings: Settings, registry: Registry) -> Station:
    return quiet_station(settings, registry)


@pytest.fixture
def web(station: Station) -> Iterator[TestClient]:
    with browser(station) as client:
        yield client


def test_the_first_coordinator_is_made_through_a_one_time_setup_link(
        web: TestClient, station: Station) -> None:
    with station.registry.session() as s:
        assert accounts.needs_setup(s)
        token = accounts.new_setup_link(s)
    assert web.get("/setup?token=made-up").status_code == 404
    form = web.get(f"/setup?token={token}")
    assert form.status_code == 200 and "coordinateur" in form.text
    short = web.post("/setup", data={"token": token, "login": "lina", "name": "Lina Martin",
                                     "password": "short"})
    assert short.status_code == 400 and "password too short" in short.text
    done = web.post("/setup", data={"token": token, "login": "lina", "name": "Lina Martin",
                                    "password": PASSWORD}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/login"
    again = web.post("/setup", data={"token": token, "login": "eve", "name": "Eve",
                                     "password": PASSWORD})
    assert again.status_code == 404
    with station.registry.session() as s:
        (user,) = s.query(User).all()
        assert user.role == "coordinator" and user.password_hash.startswith("$argon2id$")
        assert not accounts.needs_setup(s)


def test_sign_in_sets_a_server_side_session_that_a_disabled_account_loses(
        web: TestClient, station: Station) -> None:
    user(station, "noe")
    assert web.get("/board", follow_redirects=False).headers["location"] == \
        "/login?next=/board"
    assert sign_in(web, "noe") == 303
    cookie = next(c for c in web.cookies.jar if c.name == "imager_session")
    assert cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
    board = web.get("/board")
    assert board.status_code == 200 and "Noe Martin" in board.text
    with station.registry.session() as s:
        accounts.disable(s, "noe")
    assert web.get("/board", follow_redirects=False).status_code == 303


def test_each_sign_in_gets_a_new_session(web: TestClient, station: Station) -> None:
    user(station, "noe")
    sign_in(web, "noe")
    first = web.cookies.get("imager_session")
    sign_in(web, "noe")
    assert web.cookies.get("imager_session") not in (None, first)


def test_wrong_passwords_lock_the_account(web: TestClient, station: Station) -> None:
    user(station, "noe")
    for _ in range(accounts.LOCK_AFTER):
        assert sign_in(web, "noe", "wrong password!") == 401
    page = web.get("/login")
    locked = web.post("/login", data={"csrf": token_of(page.text), "login": "noe",
                                      "password": PASSWORD})
    assert locked.status_code == 401 and "account locked" in locked.text
    assert sign_in(web, "nobody", "wrong password!") == 401       # same answer, unknown


def test_a_form_without_its_token_or_with_another_sessions_is_refused(
        web: TestClient, station: Station, settings: Settings) -> None:
    user(station, "noe")
    user(station, "ada")
    bare = web.post("/login", data={"login": "noe", "password": PASSWORD})
    assert bare.status_code == 403 and "form token" in bare.text
    sign_in(web, "noe")
    with TestClient(create_app(station), base_url="https://station.test") as other:
        sign_in(other, "ada")
        theirs = token_of(other.get("/board").text)
    for data in ({}, {"csrf": theirs}):
        refused = web.post("/logout", data=data)
        assert refused.status_code == 403, refused.text
    assert web.get("/board").status_code == 200        # still signed in


def test_the_shared_tablet_switches_technician_with_a_pin(web: TestClient,
                                                          station: Station) -> None:
    user(station, "tablet", role="technician")
    user(station, "ada", pin="4321")
    sign_in(web, "tablet")
    csrf = token_of(web.get("/switch").text)
    wrong = web.post("/switch", data={"csrf": csrf, "login": "ada", "pin": "0000"})
    assert wrong.status_code == 401 and "wrong login or PIN" in wrong.text
    done = web.post("/switch", data={"csrf": csrf, "login": "ada", "pin": "4321"},
                    follow_redirects=False)
    assert done.status_code == 303
    board = web.get("/board")
    assert "Ada Martin" in board.text and token_of(board.text) != csrf   # a new form token


def test_pages_are_french_first_and_english_on_request(web: TestClient) -> None:
    assert "Se connecter" in web.get("/login").text
    english = web.get("/login?lang=en")
    assert "Sign in" in english.text and 'lang="en"' in english.text
    assert "Sign in" in web.get("/login").text                      # remembered


def test_every_message_of_the_pages_has_its_french() -> None:
    web_dir = Path(accounts.__file__).resolve().parents[1] / "station" / "web"
    found = {message for *_, message, _, _ in extract_from_dir(
        web_dir, method_map=[("**.py", "python"), ("**/templates/**.html", "jinja2")],
        keywords={"_": None, "N_": None, "gettext": None, "ngettext": (1, 2)})}
    with (web_dir / "locale" / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        french = read_po(fh, locale="fr")
    missing = sorted(str(m) for m in found
                     if m and (french.get(m if isinstance(m, str) else m[0]) is None
                               or not french[m if isinstance(m, str) else m[0]].string))
    assert not missing, f"add their French to locale/fr/LC_MESSAGES/messages.po: {missing}"
    assert translations("fr").gettext("Board") == "Tableau de bord"


def test_an_action_above_a_persons_level_is_refused_even_by_hand(
        station: Station, settings: Settings) -> None:
    """Habilitations are data: with a station profile asking level 2 to erase, a level-1
    technician's hand-made POST (right session, right form token) is refused 403, not
    only hidden; once a supervisor raised the level, the same request goes through."""
    from imager.certify.identity import SHIPPED
    (settings.data_dir / "station.yaml").write_text(
        SHIPPED.read_text().replace("  erase: 1 ", "  erase: 2 "))
    user(station, "noe")
    with TestClient(create_app(station), base_url="https://station.test") as web:
        sign_in(web, "noe")
        csrf = token_of(web.get("/board").text)
        refused = web.post("/board/drives/1/erase", data={"csrf": csrf})
        assert refused.status_code == 403, refused.text
        assert "demande le niveau 2, Noe Martin a le niveau 1" in html.unescape(refused.text)
        with station.registry.session() as s:
            accounts.set_level(s, "noe", 2)
        allowed = web.post("/board/drives/1/erase", data={"csrf": csrf})
        assert allowed.status_code == 400 and "drive" in allowed.text.lower()  # no drive 1


def test_only_managers_see_people_and_only_a_coordinator_creates_accounts(
        web: TestClient, station: Station) -> None:
    user(station, "noe")
    user(station, "sam", role="supervisor")
    sign_in(web, "noe")
    assert web.get("/people").status_code == 403
    sign_in(web, "sam")
    page = web.get("/people")
    assert page.status_code == 200 and "Noe Martin" in page.text
    create = web.post("/people", data={"csrf": token_of(page.text), "login": "eve",
                                       "name": "Eve", "role": "technician",
                                       "password": PASSWORD})
    assert create.status_code == 403                      # a supervisor does not create
    raised = web.post("/people/noe/level", data={"csrf": token_of(page.text), "level": "2"},
                      follow_redirects=False)
    assert raised.status_code == 303
    with station.registry.session() as s:
        assert s.query(User).filter_by(login="noe").one().level == 2
        (done,) = accounts.actions(s)
        assert (done.actor, done.action, done.target) == ("Sam Martin (sam)", "level_set", "noe")
    assert "Qui a fait quoi" in web.get("/people").text


def test_a_coordinator_creates_a_technician_with_a_pin(web: TestClient,
                                                       station: Station) -> None:
    user(station, "lina", role="coordinator")
    sign_in(web, "lina")
    page = web.get("/people")
    done = web.post("/people", data={"csrf": token_of(page.text), "login": "ada",
                                     "name": "Ada Lovelace", "role": "technician",
                                     "level": "1", "password": PASSWORD, "pin": "2468"},
                    follow_redirects=False)
    assert done.status_code == 303
    assert "Ada Lovelace" in web.get("/people").text


def test_sign_ins_from_one_address_are_limited(web: TestClient) -> None:
    from imager.station.web.auth import LOGIN_TRIES
    answers = [sign_in(web, f"nobody{n}", "wrong password!") for n in range(LOGIN_TRIES + 1)]
    assert answers[:LOGIN_TRIES] == [401] * LOGIN_TRIES and answers[-1] == 429
