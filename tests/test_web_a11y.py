"""Accessibility: axe-core in Debian's chromium on every page of the station's
route table (each GET route outside the API and the assets), on a real station
(`imager serve --lab 2`, one drive erased), first signed out, then signed in as
the coordinator; and on the pages a form leaves behind (a wrong password, a
wrong PIN, a form without its token).

The walk fails on a GET route it did not visit: a new page must be reachable
here (its path parameters filled in `_url`, or listed in NOT_PAGES saying why
it is not a page), and on any serious or critical violation, printed with the
elements at fault."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from browser import (
    add_user,
    describe,
    need_browser,
    serious_violations,
    setup_link,
    sign_in,
)
from conftest import need_root
from route_table import routes
from station_proc import Serve, plugged_in

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.root

# GET routes outside /api/ that answer something else than a page (an event
# stream, a PDF to download): each with why.
NOT_PAGES: dict[str, str] = {
    "/board/events": "the board's Server-Sent Events stream, read by the board page",
    "/drives/{drive_id}/evidence": "a JSON file to download: the tools' outputs",
    "/documents/{doc_id}.{kind}": "a document's PDF or signed JSON to download",
    "/machines/{machine_id}/inventory": "a JSON file to download: a computer's inventory",
}
DONATION = "DON-A11Y-001"


@dataclass(frozen=True)
class Site:
    """The station and the real values its pages' addresses are filled with."""

    station: Serve
    setup_token: str
    drive: int
    job: int


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    need_browser()                  # first: no station for nothing
    need_root()
    serve = Serve(tmp_path_factory.mktemp("a11y") / "station", "--lab", "2",
                  "--lab-size-mib", "16", "--auto-erase", "never")
    try:
        serve.start()
        token = parse_qs(urlsplit(setup_link(serve)).query)["token"][0]
        drives = plugged_in(serve, 2)
        job = serve.post(f"/api/v1/drives/{drives[0]['id']}/erase", {})["job"]
        serve.post("/api/v1/donations", {"reference": DONATION, "donor": "Mairie de Gap",
                                         "donor_kind": "town_hall"})
        serve.post("/api/v1/intake", {"donation": DONATION, "machines": ["PF3ABC12"]})
        yield Site(serve, token, drives[0]["id"], job)
    finally:
        serve.close()


@pytest.fixture(scope="module")
def web_url(site: Site) -> str:
    return site.station.url


def page_routes(folder: Path) -> list[str]:
    """The GET routes of the route table that are neither the API nor the assets."""
    return [path for method, path in routes(folder)
            if method == "GET" and not path.startswith(("/api/", "/static"))]


def _url(template: str, site: Site) -> str:
    """The route's address with real values for its parameters."""
    values = {"drive_id": site.drive, "job_id": site.job, "reference": DONATION,
              "machine_id": 1, "login": "lina",          # the computer at intake, a person
              # the public verification's answer for a document it does not know
              "doc_id": "EFF-2026-AAAA-BBBB", "sha256": "0" * 64}

    def value(found: re.Match[str]) -> str:
        name = found.group(1).split(":")[0]
        assert name in values, f"{template}: no real value for {{{name}}}: add one in _url"
        return str(values[name])

    path = re.sub(r"\{([^}]+)\}", value, template)
    return f"{path}?token={site.setup_token}" if path == "/setup" else path


def _axe(page: Page, where: str) -> list[str]:
    found = serious_violations(page)
    return [describe(where, found)] if found else []


def test_every_page_of_the_route_table_has_no_serious_accessibility_violation(
        site: Site, page: Page, tmp_path: Path) -> None:
    pages = [p for p in page_routes(tmp_path / "route-table") if p not in NOT_PAGES]
    assert {"/login", "/board", "/switch", "/setup"} <= set(pages), pages
    visited: set[str] = set()
    checked: set[tuple[str, str]] = set()
    problems: list[str] = []
    for signed in ("signed out", "signed in"):
        if signed == "signed in":       # after /setup was seen with its link still valid
            add_user(site.station.data, "lina", role="coordinator")
            sign_in(page, "lina")
        for template in pages:
            # "commit": headers first, as an event stream never ends loading
            answer = page.goto(_url(template, site), wait_until="commit")
            assert answer is not None, template
            assert answer.headers["content-type"].startswith("text/html"), (
                f"GET {template} answers {answer.headers['content-type']}, not a page: "
                f"list it in NOT_PAGES saying why")
            page.wait_for_load_state()
            if urlsplit(page.url).path == "/login" and template != "/login":
                continue                                  # needs a session: next round
            visited.add(template)
            if (signed, page.url) not in checked:
                checked.add((signed, page.url))
                problems += _axe(page, f"GET {template} ({signed}, {answer.status})")
    missed = sorted(set(pages) - visited)
    assert not missed, (f"pages of the route table this test did not visit: {missed}: fill "
                        f"their parameters in _url, or list them in NOT_PAGES saying why")
    assert not problems, "\n\n".join(problems)


def test_the_pages_a_form_leaves_have_no_serious_accessibility_violation(
        site: Site, page: Page) -> None:
    add_user(site.station.data, "noe")
    add_user(site.station.data, "ada", pin="4321")
    problems: list[str] = []
    page.goto("/login")
    page.get_by_label("Identifiant").fill("noe")
    page.get_by_label("Mot de passe").fill("not the password")
    page.get_by_role("button", name="Se connecter").click()
    assert page.get_by_role("alert").is_visible()
    problems += _axe(page, "POST /login, a wrong password")
    sign_in(page, "noe")
    page.goto("/switch")
    page.get_by_label("Identifiant").fill("ada")
    page.get_by_label("Code PIN").fill("0000")
    page.get_by_role("button", name="Changer", exact=True).click()
    assert page.get_by_role("alert").is_visible()
    problems += _axe(page, "POST /switch, a wrong PIN")
    page.goto("/board")
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    with page.expect_response("**/logout") as answer:
        page.get_by_role("button", name="Se déconnecter").click()
    assert answer.value.status == 403
    problems += _axe(page, "POST /logout without its form token (403)")
    assert not problems, "\n\n".join(problems)
