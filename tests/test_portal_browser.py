"""The portal in a real browser (Debian's chromium driven by Playwright, axe-core):
a donor sets its account up from its invitation and signs in, sees both workshops'
donations, downloads its documents and the workshop's certificates, and
`imager cert verify` finds them genuine; donor B gets 404 on every route that takes
an id (pages, JSON and downloads); the public page for a real certificate and for an
altered one; axe on every GET route of the portal's route table (the walk fails on a
route it did not visit); screenshots in docs/portail-*.png.

Real parts: two stations made by the station's CLI push over HTTPS to a real
`imager portal serve` on PostgreSQL (tests/portal_net.py). The browser trusts the
portal's test CA only through `ignore_https_errors` (the TLS itself is checked by
tests/test_portal.py and tests/test_portal_donors.py with that CA)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastapi.routing
import portal_net as pn
import pytest
from browser import CHROMIUM_ARGS, LAPTOP, TIMEOUT_MS, describe, need_browser, serious_violations
from certmaker import make
from clirun import imager
from test_portal_donors import PASSWORD, donor_ref
from test_portal_messages import payload
from test_postgresql import PgServer, pg  # noqa: F401 - the server fixture, used by name

from imager.certify.signing import Trust
from imager.portal.app import Portal as PortalConfig
from imager.portal.app import create_app
from imager.portal.db import PortalDb

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.root, pytest.mark.server]

DOCS = Path(__file__).resolve().parents[1] / "docs"
# GET routes that are no page: what they answer instead (checked elsewhere here).
NOT_PAGES = {
    "/api/portal/v1/health": "the stations' API (JSON)",
    "/compte/dons/{donation_id}/documents/{name}": "a download (PDF, JSON, CSV)",
    "/compte/dons/{donation_id}/certificats-station.pem": "a download (PEM)",
    "/compte/dons/{donation_id}/tete-registre.json": "a download (JSON)",
    "/compte/dons/{donation_id}/rapprochement.csv": "a download (CSV)",
}


@pytest.fixture(scope="module")
def net(pg: PgServer, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
        ) -> Iterator[dict[str, Any]]:
    need_browser()
    base = tmp_path_factory.mktemp("portal-browser")
    ca, ca_file = pn.network_ca(base / "ca")
    tls = pn.portal_tls(base / "tls")
    database = pg.create_database("portal_browser")
    portal = pn.Portal(base / "portal", database, ca_file, tls)
    made = pn.workshops(base, "https://127.0.0.1/verifier", ca)
    try:
        portal.start()
        pn.push_all(portal, made["gap"], made["briancon"])
        yield {**made, "base": base, "portal": portal, "database": database}
    finally:
        portal.stop()


def invite(net: dict[str, Any], *args: str) -> str:
    said = imager(net["base"], "portal", "invite", "--db", net["database"], *args).stdout
    found = re.search(r"/compte/invitation/[\w-]+", said)
    assert found, said
    return found.group(0)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=need_browser(), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def context(browser: Browser, net: dict[str, Any]) -> BrowserContext:
    made = browser.new_context(base_url=net["portal"].url, viewport=LAPTOP, locale="fr-FR",
                               ignore_https_errors=True, accept_downloads=True)
    made.set_default_timeout(TIMEOUT_MS)
    return made


def set_up(page: Page, link: str, login: str) -> None:
    """The invited person chooses a login and a password, then signs in."""
    page.goto(link)
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Créer mon compte").click()
    page.get_by_role("heading", name="Votre compte est prêt").wait_for()
    page.get_by_role("link", name="Se connecter").first.click()
    sign_in(page, login)


def sign_in(page: Page, login: str) -> None:
    if "/compte/connexion" not in page.url:
        page.goto("/compte/connexion")
    page.get_by_label("Identifiant").fill(login)
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Se connecter").click()
    page.get_by_role("heading", name="Mes dons").wait_for()


@pytest.fixture(scope="module")
def accounts(net: dict[str, Any]) -> dict[str, str]:
    return {"a": invite(net, "--name", pn.COMPANY, "--siret", pn.COMPANY_SIRET, "--donor",
                        f"Atelier de Briançon:{_ref(net)}"),
            "b": invite(net, "--name", pn.OTHER, "--siret", pn.OTHER_SIRET),
            "coord": invite(net, "--name", "Coordination du réseau", "--role", "coordinator")}


def _ref(net: dict[str, Any]) -> str:
    with PortalDb.open_url(net["database"]) as db:
        return donor_ref({"db": db}, "Briançon")


def _download(page: Page, link_name: str | re.Pattern[str], folder: Path) -> Path:
    with page.expect_download() as info:
        page.get_by_role("link", name=link_name, exact=True).first.click()
    target = folder / info.value.suggested_filename
    info.value.save_as(target)
    return target


def _verify(net: dict[str, Any], trust: Path, *files: Path) -> str:
    done = imager(net["base"] / "elsewhere", "cert", "verify", "--trust", str(trust),
                  *map(str, files), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_donor_signs_in_and_its_downloads_verify(browser: Browser, net: dict[str, Any],
                                                   accounts: dict[str, str],
                                                   tmp_path: Path) -> None:
    ctx = context(browser, net)
    try:
        page = ctx.new_page()
        set_up(page, accounts["a"], "compta@alpine.example")
        rows = page.locator("table.list tbody tr")
        assert rows.count() == 2
        assert "Atelier de Briançon" in rows.all_inner_texts()[0] + rows.all_inner_texts()[1]
        DOCS.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS / "portail-dons.png"))
        page.get_by_role("row", name=re.compile("Atelier de Gap")).get_by_role(
            "link", name=pn.DONATION_REF).click()
        page.get_by_role("heading", name=f"Don {pn.DONATION_REF}").wait_for()
        page.get_by_label("Votre liste : une ligne par objet").fill(
            f"INV-0001;{pn.LAPTOP_SERIAL}\nINV-0002;SN-ABSENT-42")   # the laptop's serial
        page.get_by_role("button", name="Enregistrer ma liste").click()
        page.get_by_text("Votre liste est enregistrée (2 lignes).").wait_for()
        assert page.get_by_text("attendu, non reçu").count() == 1
        assert page.get_by_role("cell", name="LENOVO ThinkPad T480").count() == 2
        page.screenshot(path=str(DOCS / "portail-don.png"), full_page=True)
        pem = _download(page, "les certificats de l'atelier (fichier PEM)", tmp_path)
        files = [_download(page, name, tmp_path) for name in (
            "PDF", "tableau (CSV)", "données signées (JSON)")]
        drive = [_download(page, re.compile(f"^{kind} de DES-"), tmp_path)
                 for kind in ("PDF", "JSON")]
        said = _verify(net, pem, *files, *drive)
        assert said.count("VALIDE / VALID") == 5 and "NON VALIDE" not in said, said
        head = _download(page, "l'état signé du registre de l'atelier (fichier JSON)", tmp_path)
        assert '"ledger-head"' in head.read_text()
        page.get_by_role("link", name="Comment vérifier les documents vous-même, sans ce "
                                       "site").first.click()
        page.get_by_role("heading", name="Comment vérifier").wait_for()
    finally:
        ctx.close()


def test_donor_b_gets_404_on_every_route_that_takes_an_id(
        browser: Browser, net: dict[str, Any], accounts: dict[str, str]) -> None:
    a, b = context(browser, net), context(browser, net)
    try:
        page = a.new_page()
        sign_in(page, "compta@alpine.example")
        ids = [href.rsplit("/", 1)[1] for href in page.locator(
            "table.list a").evaluate_all("els => els.map(e => e.getAttribute('href'))")]
        hrefs = []
        for number in ids:
            page.goto(f"/compte/dons/{number}")
            hrefs += [h for h in page.locator("a[download]").evaluate_all(
                "els => els.map(e => e.getAttribute('href'))")]
        theirs = [f"/compte/dons/{n}" for n in ids] + hrefs
        assert len(hrefs) >= 10
        mine = b.new_page()
        set_up(mine, accounts["b"], "mairie@stveran.example")
        for path in theirs:
            for headers in ({}, {"Accept": "application/json"}):
                said = b.request.get(path, headers=headers)
                assert said.status == 404, (path, headers, said.status)
                assert "Électricité" not in said.text()
            shown = mine.goto(path) if "/documents/" not in path and "." not in path \
                else None
            if shown is not None:
                assert shown.status == 404
                mine.get_by_role("heading", name="Introuvable").wait_for()
        assert serious_violations(mine) == [], describe(mine.url, serious_violations(mine))
    finally:
        a.close()
        b.close()


def test_the_public_page_for_a_real_and_an_altered_certificate(
        browser: Browser, net: dict[str, Any], tmp_path: Path) -> None:
    des = net["docs"]["gap"]
    ctx = context(browser, net)
    try:
        page = ctx.new_page()
        page.goto(f"/verifier?id={des['id']}&sha256={des['sha256']}")   # the QR code's URL
        page.get_by_role("heading", name=re.compile("Ce document est authentique")).wait_for()
        assert "Atelier de Gap" in page.content()
        page.screenshot(path=str(DOCS / "portail-verification.png"))
        altered = bytearray(Path(des["pdf"]).read_bytes())
        at = altered.index(b"/Producer") if b"/Producer" in altered else len(altered) // 2
        altered[at + 2] ^= 0x01
        (tmp_path / "altere.pdf").write_bytes(altered)
        page.goto("/verifier")
        page.get_by_label("Le fichier PDF ou JSON du document").set_input_files(
            tmp_path / "altere.pdf")
        page.get_by_role("button", name="Vérifier le fichier").click()
        page.get_by_role("heading", name=re.compile("pas authentique")).wait_for()
        sha = des["sha256"]
        other = ("1" if sha[0] == "0" else "0") + sha[1:]     # another hash, whatever it was
        shown = page.goto(f"/verifier?id={des['id']}&sha256={other}")
        assert shown is not None and shown.status == 404
        page.get_by_role("heading", name=re.compile("Document introuvable")).wait_for()
    finally:
        ctx.close()


def _get_routes() -> list[str]:
    """Every GET path of the portal's route table."""
    db = PortalDb.open_url("sqlite://")
    try:
        app = create_app(PortalConfig(db, Trust([make("AC", pathlen=1).cert])))
        flatten = getattr(fastapi.routing, "iter_route_contexts", list)
        return sorted({r.path for r in flatten(app.routes)
                       if "GET" in (getattr(r, "methods", None) or ())})
    finally:
        db.close()


def test_axe_on_every_route_of_the_portal(browser: Browser, net: dict[str, Any],
                                          accounts: dict[str, str]) -> None:
    des = net["docs"]["gap"]
    coordinator = context(browser, net)
    try:
        page = coordinator.new_page()
        set_up(page, accounts["coord"], "coord@reseau.example")
        page.goto("/compte/coordination")
        page.get_by_label("Nom de l'organisme").fill("Collège d'Embrun")
        page.get_by_label("Ses numéros SIRET (séparés par des espaces)").fill(pn.COMPANY_SIRET)
        page.get_by_role("button", name="Créer l'invitation").click()
        link = page.locator("#invitation-link").inner_text()
        invitation = link[link.index("/compte/invitation/"):]
        sent = payload(machine="poste-0042", name="Nadia", contact="06 12 34 56 78",
                       text="Bonjour,\nje n'arrive pas à imprimer. Pouvez-vous m'aider ?")
        with net["portal"].client() as http:
            assert http.post("/api/v1/messages", json=sent,
                             headers={"Idempotency-Key": sent["id"]}).status_code == 201
        page.goto("/compte/coordination/messages")
        page.screenshot(path=str(DOCS / "portail-messages.png"))
        page.goto("/compte/coordination")               # donor B forgot its password
        page.get_by_role("button", name=f"Nouveau lien pour {pn.OTHER} : un nouveau mot "
                                        "de passe").click()
        renew = page.locator("#invitation-link").inner_text()
        renew = renew[renew.index("/compte/invitation/"):]
        page.screenshot(path=str(DOCS / "portail-coordination.png"), full_page=True)
        pages = {
            "/": ["/?lang=en", "/?lang=fr"],          # English, then French again
            "/verifier": ["/verifier", f"/verifier?id={des['id']}&sha256={des['sha256']}"],
            "/v/{doc_id}": [f"/v/{des['id']}?sha256={des['sha256']}"],
            "/v/{doc_id}/{sha256}": [f"/v/{des['id']}/{'0' * 64}"],
            "/compte": ["/compte"],
            "/compte/connexion": [],            # visited signed out, below
            "/compte/invitation/{token}": [],
            "/compte/dons/{donation_id}": ["/compte/dons/999999"],
            "/compte/verifier-hors-ligne": ["/compte/verifier-hors-ligne"],
            "/compte/coordination": ["/compte/coordination"],
            "/compte/coordination/messages": ["/compte/coordination/messages",
                                              "/compte/coordination/messages?non-lus=1"],
        }
        missing = [p for p in _get_routes() if p not in pages and p not in NOT_PAGES]
        assert missing == [], f"GET routes axe does not visit: {missing}"
        found = {}
        for url in [u for urls in pages.values() for u in urls]:
            page.goto(url)
            found[url] = serious_violations(page)
        page.goto("/compte")
        page.get_by_role("button", name="Se déconnecter").click()
        for url in ("/compte/connexion", invitation, invitation + "x", renew):
            page.goto(url)
            found[url] = serious_violations(page)
        page.get_by_role("heading", name="Choisissez un nouveau mot de passe").wait_for()
        assert page.get_by_label("Identifiant").input_value() == "mairie@stveran.example"
        page.goto("/compte/connexion")
        page.get_by_label("Identifiant").fill("personne")
        page.get_by_label("Mot de passe").fill("pas le bon mot de passe")
        page.get_by_role("button", name="Se connecter").click()
        found["wrong password"] = serious_violations(page)
        sign_in(page, "compta@alpine.example")
        page.locator("table.list a").first.click()
        found["a donation"] = serious_violations(page)
        page.get_by_label("Votre liste : une ligne par objet").fill("a;b;c")
        page.get_by_role("button", name="Enregistrer ma liste").click()
        found["a list refused"] = serious_violations(page)
        bad = {url: v for url, v in found.items() if v}
        assert bad == {}, "\n".join(describe(url, v) for url, v in bad.items())
    finally:
        coordinator.close()
