"""The pages end to end in a real browser (Debian's chromium driven by Playwright)
on a real station, `imager serve --lab 2 --auto-erase never` on loopback: the
setup link printed on its console makes the coordinator, who signs in and erases
a lab drive from the board; a wrong password; hand-made forms without their
token; the shared tablet's PIN switch; sign-in and the board with the keyboard
only; screenshots at a laptop's and a tablet's size.

The other accounts are made directly in the station's registry (tests/browser.py
`add_user`): the pages to manage users do not exist yet."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from browser import (
    LAPTOP,
    PASSWORD,
    TABLET,
    add_user,
    describe,
    form_token,
    need_browser,
    screenshot,
    serious_violations,
    setup_link,
    sideways_overflow,
    sign_in,
)
from conftest import need_root
from station_proc import Serve, plugged_in, until

from imager.certify.identity import load_profile
from imager.certify.render import qr_text
from imager.registry.accounts import ROLE_NAMES
from imager.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.root

ERASE = "Effacer selon la politique"


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    need_browser()                  # first: no station for nothing
    need_root()
    serve = Serve(tmp_path_factory.mktemp("web") / "station", "--lab", "2",
                  "--lab-size-mib", "16", "--auto-erase", "never")
    try:
        serve.start()
        plugged_in(serve, 2)
        yield serve
    finally:
        serve.close()


@pytest.fixture(scope="module")
def web_url(station: Serve) -> str:
    return station.url


def _jobs(station: Serve) -> list[tuple[Any, ...]]:
    """Each job: its drive, and the name of the technician who started it."""
    with closing(sqlite3.connect(station.data / "registry.sqlite3")) as db:
        return db.execute("SELECT jobs.drive_id, technicians.name FROM jobs LEFT JOIN "
                          "technicians ON technicians.id = jobs.technician_id "
                          "ORDER BY jobs.id").fetchall()


def _focused(page: Page) -> str:
    """The element that has the keyboard's focus: its id, or its tag and text."""
    described: str = page.evaluate(
        "(() => { const e = document.activeElement;"
        " return e.id ? '#' + e.id : e.tagName.toLowerCase() + ':' + e.textContent.trim(); })()")
    return described


def _reloaded_state(page: Page, card: Locator) -> str:
    """The card's state in words once the page is reloaded, as a person would."""
    page.reload()
    return card.locator(".state").inner_text()


def test_the_setup_link_makes_the_coordinator_who_erases_a_drive_from_the_board(
        station: Serve, page: Page) -> None:
    link = setup_link(station)
    page.goto(link)
    page.get_by_label("Nom complet").fill("Lina Martin")
    page.get_by_label("Identifiant").fill("lina")
    page.get_by_label("Mot de passe").fill(PASSWORD)
    page.get_by_role("button", name="Créer le coordinateur").click()
    page.wait_for_url("**/login")
    again = page.goto(link)
    assert again is not None and again.status == 404          # used once
    assert page.get_by_role("heading", name="Lien de configuration non valable").is_visible()

    sign_in(page, "lina")
    assert page.url.endswith("/board")
    assert page.get_by_text(f"Lina Martin ({ROLE_NAMES['coordinator'][0]})").is_visible()
    cards = page.locator("li.card")
    assert cards.count() == 2
    drives = {d["id"]: d for d in plugged_in(station, 2)}
    for card in cards.all():
        drive = drives[int((card.get_attribute("id") or "").removeprefix("drive-"))]
        assert drive["serial"] in card.inner_text()
        assert card.get_by_role("button", name=ERASE).is_visible()

    first = cards.first
    erased = int((first.get_attribute("id") or "").removeprefix("drive-"))
    first.get_by_role("button", name=ERASE).click()
    page.wait_for_url("**/board")
    assert _jobs(station) == [(erased, "Lina Martin")]
    card = page.locator(f"#drive-{erased}")
    assert card.get_by_role("button", name=ERASE).count() == 0
    until(lambda: _reloaded_state(page, card) != "inventorié", 60,
          "the board shows the erasure after a reload")     # live updates come later (SSE)

    page.get_by_role("button", name="Se déconnecter").click()
    page.wait_for_url("**/login")
    page.goto("/board")
    assert page.url.endswith("/login?next=/board")


def test_a_wrong_password_is_refused_in_french(station: Serve, page: Page) -> None:
    add_user(station.data, "noe")
    page.goto("/login")
    page.get_by_label("Identifiant").fill("noe")
    page.get_by_label("Mot de passe").fill("not the password")
    with page.expect_response("**/login") as answer:
        page.get_by_role("button", name="Se connecter").click()
    assert answer.value.status == 401
    assert "identifiant ou mot de passe incorrect" in page.get_by_role("alert").inner_text()
    sign_in(page, "noe")
    assert page.url.endswith("/board")


def test_a_hand_made_form_without_its_token_or_with_another_sessions_is_refused(
        station: Serve, page: Page, browser: Browser) -> None:
    add_user(station.data, "ines")
    add_user(station.data, "omar")
    other = browser.new_context(base_url=station.url)
    try:
        theirs = other.new_page()
        sign_in(theirs, "omar")
        their_token = form_token(theirs)
    finally:
        other.close()
    sign_in(page, "ines")
    drive = plugged_in(station, 2)[-1]["id"]
    jobs = _jobs(station)
    for path in (f"/board/drives/{drive}/erase", "/logout"):
        forms: list[dict[str, str | float | bool]] = [{}, {"csrf": their_token}]
        for form in forms:
            refused = page.request.post(path, form=form, max_redirects=0)
            assert refused.status == 403, (path, form, refused.status)
            assert "jeton de formulaire manquant ou périmé" in refused.text()
    assert _jobs(station) == jobs                               # nothing started
    page.goto("/board")
    assert page.url.endswith("/board")                          # still signed in


def test_the_shared_tablet_switches_technician_with_a_pin(station: Serve,
                                                          page: Page) -> None:
    add_user(station.data, "tablette")
    add_user(station.data, "ada", pin="4321")
    sign_in(page, "tablette")
    page.get_by_role("link", name="Changer de technicien").click()
    page.get_by_label("Identifiant").fill("ada")
    page.get_by_label("Code PIN").fill("0000")
    page.get_by_role("button", name="Changer", exact=True).click()
    assert "identifiant ou code PIN incorrect" in page.get_by_role("alert").inner_text()
    page.get_by_label("Identifiant").fill("ada")
    page.get_by_label("Code PIN").fill("4321")
    page.get_by_role("button", name="Changer", exact=True).click()
    page.wait_for_url("**/board")
    assert page.get_by_text(f"Ada Martin ({ROLE_NAMES['technician'][0]})").is_visible()


def test_screenshots_at_a_laptops_and_a_tablets_size(station: Serve, page: Page,
                                                     tmp_path: Path) -> None:
    """One drive erased, the other waiting for its erasure (the keyboard's test
    erases it after). IMAGER_SCREENSHOTS=docs refreshes the laptop's pictures in
    docs/ (look at them before committing)."""
    folder = Path(os.environ.get("IMAGER_SCREENSHOTS") or tmp_path)
    add_user(station.data, "camille")
    page.goto("/login")
    shots = [screenshot(page, folder / "page-connexion.png")]
    assert sideways_overflow(page) == 0
    sign_in(page, "camille")
    assert page.locator("li.card").count() == 2
    for size, path in ((LAPTOP, folder / "page-tableau.png"),
                       (TABLET, tmp_path / "page-tableau-tablette.png")):
        shots.append(screenshot(page, path, size))
        assert sideways_overflow(page) == 0, f"the board scrolls sideways at {size}"
    assert all(p.stat().st_size > 10_000 for p in shots), shots


def test_sign_in_and_the_board_with_the_keyboard_only(station: Serve, page: Page) -> None:
    add_user(station.data, "yanis")
    page.goto("/login")
    until(lambda: _focused(page) == "#login", 10,                 # the cursor waits there
          "the sign-in field has the focus (autofocus, applied once the page is shown)")
    page.keyboard.type("yanis")
    page.keyboard.press("Tab")
    assert _focused(page) == "#password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert _focused(page) == "button:Se connecter"
    page.keyboard.press("Shift+Tab")
    with page.expect_navigation(url="**/board"):
        page.keyboard.press("Enter")                            # Enter sends the form
    jobs = len(_jobs(station))
    seen: list[str] = []
    while _focused(page) != f"button:{ERASE}":
        assert len(seen) < 30, f"Tab never reaches a button {ERASE!r}: {seen}"
        page.keyboard.press("Tab")
        seen.append(_focused(page))
    with page.expect_navigation(url="**/board"):
        page.keyboard.press("Enter")
    assert len(_jobs(station)) == jobs + 1
    # the page keeps itself up to date: the card reaches "certifié" without a reload
    page.evaluate("window.notReloaded = true")
    until(lambda: page.locator("li.card", has_text="certifié").count() == 2, 120,
          "both cards say certifié")
    assert page.evaluate("window.notReloaded === true")      # the same page all along


def test_the_coordinator_creates_a_technician_and_a_supervisor_who_sets_levels(
        station: Serve, page: Page) -> None:
    """On the People page (the coordinator of the first test): a technician with a
    bench PIN and a supervisor; the supervisor signs in and raises the technician's
    level; the record says who did what."""
    sign_in(page, "lina")
    page.goto("/people")
    for name, login, role in (("Ada Lovelace", "ada.l", "technicien ou technicienne"),
                              ("Sam Martin", "sam", "superviseur ou superviseuse")):
        page.get_by_label("Nom complet").fill(name)
        page.get_by_label("Identifiant").fill(login)
        page.get_by_label("Rôle").select_option(label=role)
        page.get_by_label("Mot de passe (10 caractères ou plus)").fill(PASSWORD)
        if login == "ada.l":
            page.get_by_label("Code PIN pour la tablette partagée").fill("2468")
        page.get_by_role("button", name="Créer le compte").click()
        page.wait_for_url("**/people")
        assert page.get_by_role("cell", name=name, exact=True).is_visible()
    page.get_by_role("button", name="Se déconnecter").click()
    sign_in(page, "sam")
    page.goto("/people")
    page.get_by_label("Niveau de Ada Lovelace").select_option("2")
    page.locator("form[action='/people/ada.l/level']").get_by_role("button").click()
    page.wait_for_url("**/people")
    assert page.get_by_label("Niveau de Ada Lovelace").input_value() == "2"
    assert page.get_by_role("cell", name="Sam Martin (sam)").first.is_visible()
    assert page.get_by_role("button", name="Créer le compte").count() == 0  # not his to do


# What an AZERTY station shows for each key a US-QWERTY scanner sends (the inverse of
# imager.inventory.scanned, written out here so that the test does not use the code
# it checks).
QWERTY_ON_AZERTY = str.maketrans({
    "1": "&", "2": "é", "3": '"', "4": "'", "5": "(", "6": "-", "7": "è", "8": "_",
    "9": "ç", "0": "à", "Q": "A", "A": "Q", "W": "Z", "Z": "W", "M": "?"})


def test_intake_in_the_browser_reads_back_a_qwerty_scanner(station: Serve,
                                                           page: Page) -> None:
    """A donation, then both lab drives' serials in the scan box: one typed right,
    one as a US-QWERTY scanner types it on this AZERTY station; both are attached,
    and the page says which one was read back."""
    add_user(station.data, "zoe")
    sign_in(page, "zoe")
    page.goto("/intake")
    page.get_by_label("Référence (par exemple DON-2026-001)").fill("DON-2026-0100")
    page.get_by_label("Donateur", exact=True).fill("Mairie d'Embrun")
    page.get_by_label("Type de donateur").select_option("town_hall")
    page.get_by_role("button", name="Enregistrer le don").click()
    assert page.get_by_text("Le don DON-2026-0100 est enregistré").is_visible()
    first, second = (d["serial"] for d in plugged_in(station, 2))
    typed = second.translate(QWERTY_ON_AZERTY)
    assert typed != second
    page.get_by_label("Numéros de série ou étiquettes").fill(f"{first}\n{typed}\n")
    page.get_by_role("button", name="Ajouter au don").click()
    assert page.get_by_text("2 éléments ajoutés au don.").is_visible()
    assert page.get_by_text(f"le scanner est réglé en QWERTY (il a tapé {typed})").is_visible()
    donation = {d["serial"]: d["donation"] for d in station.get("/api/v1/drives")}
    assert donation[first] == donation[second] == "DON-2026-0100"


def test_the_qr_url_of_a_real_certificate_opens_the_public_page(station: Serve,
                                                                page: Page) -> None:
    """The URL in the QR code of a certificate the station issued for a lab drive opens,
    without an account, the page saying it is authentic; an altered hash and an
    unknown id give the same 'not found' page."""
    with closing(sqlite3.connect(f"file:{station.data / 'registry.sqlite3'}?mode=ro",
                                 uri=True)) as db:
        found = until(lambda: db.execute("SELECT id, json_sha256 FROM documents WHERE kind = "
                                         "'erasure' ORDER BY id").fetchone(), 120,
                      "a lab drive's certificate is issued")
    doc_id, sha = found
    url = urlsplit(qr_text(doc_id, sha, load_profile(Settings(data_dir=station.data))
                           .verify_url))
    page.goto(f"{url.path}?{url.query}")
    assert page.get_by_role("heading", name="Ce document est authentique.").is_visible()
    altered = ("0" if sha[0] != "0" else "1") + sha[1:]
    page.goto(f"/v/{doc_id}/{altered}")
    wrong = page.content()
    page.goto(f"/v/EFF-2026-ZZZZ-ZZZZ/{sha}")
    assert page.content() == wrong


def test_an_action_above_the_technicians_level_is_refused_even_by_hand(
        station: Serve, page: Page) -> None:
    """Pairing agents needs level 2: a level-1 technician sees no pairing form, and the
    same request made by hand from the signed-in page (right token) is refused 403."""
    add_user(station.data, "hugo")
    sign_in(page, "hugo")
    page.goto("/agents")
    assert page.get_by_role("button", name="Appairer").count() == 0
    refused = page.request.post("/agents/pair", form={"csrf": form_token(page),
                                                      "code": "1234-5678"}, max_redirects=0)
    assert refused.status == 403
    assert "habilitation insuffisante" in refused.text() and "niveau 2" in refused.text()


def test_a_failing_drive_turns_red_with_what_to_do(station: Serve, page: Page,
                                                   tmp_path: Path) -> None:
    """A lab drive whose writes fail for real (a loop device over a 64 MiB file on a
    24 MiB tmpfs: past 24 MiB the kernel answers ENOSPC, an I/O error to the
    station): erased from the board, its card turns red with the reason and the next
    step, without a reload."""
    import random
    import subprocess

    from imager.host.virtual import made_up_label, write_label
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    image, device = mount / "failing.img", ""
    try:
        subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
        label = made_up_label(random.Random(7))
        write_label(Settings(data_dir=station.data), image, label)   # a lab bay, for --lab
        device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                                capture_output=True, text=True).stdout.strip()
        add_user(station.data, "lea")
        sign_in(page, "lea")
        card = page.locator("li.card", has_text=label["serial"])
        until(lambda: page.reload() and card.count() == 1, 60, "the failing drive's card")
        card.get_by_role("button", name=ERASE).click()
        page.wait_for_url("**/board")
        page.evaluate("window.notReloaded = true")
        red = page.locator("li.card.failed", has_text=label["serial"])
        until(lambda: red.count() == 1, 120, "the card turns red")
        text = red.inner_text()
        assert "Échec :" in text and "Relancer l'effacement" in text, text
        assert page.evaluate("window.notReloaded === true")
        assert red.get_by_role("button", name="Envoyer à la destruction").count() == 0
        _destroyed(station, page, label["serial"])
    finally:
        if device:
            subprocess.run(["losetup", "-d", device], check=False)
        subprocess.run(["umount", str(mount)], check=False)


def _destroyed(station: Serve, page: Page, serial: str) -> None:
    """A supervisor sends the failed drive to destruction from its card: the signed
    record of the failed erasure is issued; someone of level 3 records its
    destruction before a witness: the signed destruction record."""
    add_user(station.data, "rose", role="supervisor", level=2)
    sign_in(page, "rose")
    card = page.locator("li.card", has_text=serial)
    card.get_by_role("button", name="Envoyer à la destruction").click()
    page.wait_for_url("**/drives/*")
    body = page.locator("main")
    until(lambda: "NEF-" in body.inner_text(), 60, "the record of the failed erasure")
    assert "à détruire" in body.inner_text()
    assert page.get_by_role("button", name="Enregistrer et signer").count() == 0
    add_user(station.data, "marc", role="supervisor", level=3)
    drive_page = page.url
    sign_in(page, "marc")
    page.goto(drive_page)
    page.get_by_label("Comment il a été détruit").select_option("drill")
    page.get_by_label("Nom du témoin").fill("Hélène Dupré")
    page.get_by_role("button", name="Enregistrer et signer").click()
    page.wait_for_url(drive_page)
    text = page.locator("main").inner_text()
    assert "DES-" in text and "détruit" in text, text


def test_the_system_is_installed_from_the_board_on_a_certified_drive(
        station: Serve, page: Page, tmp_path: Path) -> None:
    """An image in the station's catalogue: a certified drive's card offers to install
    it; the lab agent writes it and reads it back; the card says so without a reload."""
    from clirun import imager
    from test_image_after import MiB, build_image
    small = build_image(tmp_path, "label: gpt\nsize=2MiB, type=uefi\ntype=linux\n",
                        size=12 * MiB)                      # the lab drives have 16 MiB
    imager(station.data, "image", "create", str(small), "--name", "bureau-solidaire",
           "--version", "2026.12")
    add_user(station.data, "sami")
    sign_in(page, "sami")
    install = page.get_by_role("button", name="Installer le système")
    if install.count() == 0:                   # no drive erased yet: erase one first
        page.get_by_role("button", name=ERASE).first.click()
        page.wait_for_url("**/board")
    until(lambda: install.count() > 0, 180, "a certified drive (without a reload)")
    card = page.locator("li.card", has=install.first)
    drive = card.first.get_attribute("id")
    install.first.click()
    page.wait_for_url("**/board")
    page.evaluate("window.notReloaded = true")
    done = page.locator(f"#{drive} .state")
    installed = page.locator(f"#{drive} .ok")
    until(lambda: installed.count() and "bureau-solidaire 2026.12" in installed.inner_text(),
          120, "the system is installed")
    assert done.inner_text() == "certifié"          # its erasure certificate still holds
    assert page.evaluate("window.notReloaded === true")
    page.goto(f"/drives/{drive.removeprefix('drive-')}" if drive else "/board")
    assert "bureau-solidaire" in page.locator("main").inner_text()


def test_the_board_says_a_secure_boot_refusal_and_what_to_do(station: Serve, page: Page,
                                                             tmp_path: Path) -> None:
    """The boot service (another process) saw a laptop refuse shim: the board, already
    open, shows it in plain French with what to do, readable and accessible.
    IMAGER_SCREENSHOTS=docs refreshes docs/page-tableau-secure-boot.png."""
    from imager.registry import netboot
    from imager.store.db import Registry, utcnow
    add_user(station.data, "lucie")
    sign_in(page, "lucie")
    registry = Registry.open(Settings(data_dir=station.data))
    try:
        now = utcnow()
        with registry.session() as s:
            netboot.record(s, [netboot.Seen(
                "52:54:00:aa:00:01", "shim", now, now, address="10.66.0.185",
                firmware="uefi", loaders=2, problem="firmware_refused_shim", problem_at=now)])
    finally:
        registry.close()
    alert = page.get_by_role("alert").filter(has_text="Secure Boot a refusé le démarrage")
    alert.wait_for(timeout=20_000)                  # from the page's event stream
    assert "Microsoft UEFI CA" in alert.inner_text()
    violations = serious_violations(page)
    assert violations == [], describe("/board", violations)
    folder = Path(os.environ.get("IMAGER_SCREENSHOTS") or tmp_path)
    screenshot(page, folder / "page-tableau-secure-boot.png")
    assert sideways_overflow(page) == 0
