"""The board keeps itself up to date: an agent's events reach the page as the
cards that changed (Server-Sent Events), with the job's progress, speed and
time left; a failure shows in red with what to do."""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_maker import evidence
from fastapi.testclient import TestClient
from web_client import PASSWORD, browser, dock, quiet_station, send, sign_in, token_of, user

from imager.protocol.proof import public_hex
from imager.registry import accounts
from imager.settings import Settings
from imager.station.api import create_app
from imager.station.policy import ServicePolicy
from imager.station.service import Station
from imager.station.web.board import Meter
from imager.store.db import Registry
from imager.store.models import Agent, Drive
from imager.web.pages import local_time


@pytest.fixture
def station(settings: Settings, registry: Registry) -> Station:
    return quiet_station(settings, registry)


@pytest.fixture
def web(station: Station) -> Iterator[TestClient]:
    user(station, "noe")
    with browser(station) as client:
        sign_in(client, "noe")
        yield client


def _stream(web: TestClient, until: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The card updates the page receives, up to the first for which `until` holds."""
    got: list[dict[str, Any]] = []
    event = ""
    with web.stream("GET", "/board/events") as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            event = line[7:] if line.startswith("event: ") else event
            if line.startswith("data: ") and event == "card" \
                    and json.loads(line[6:])["id"].startswith("drive-"):
                got.append(json.loads(line[6:]))
                if until(got[-1]) or len(got) > 20:
                    break
    return got


def test_an_agents_progress_reaches_the_page_without_reloading(
        web: TestClient, station: Station) -> None:
    agent = dock(station)
    board = web.get("/board")
    assert "Samsung SSD 860" in board.text and "Effacer selon la politique" in board.text
    csrf = token_of(board.text)
    assert web.post("/board/drives/1/erase", data={"csrf": csrf},
                    follow_redirects=False).status_code == 303
    first = _stream(web, lambda card: True)[0]
    assert first["id"] == "drive-1" and "Effacer selon" not in first["html"]

    def report() -> None:      # the agent, while the page listens
        send(station, agent, "job_move", {"job": 1, "target": "running"})
        send(station, agent, "progress", {"job": 1, "phase": "pass", "index": 0,
                                           "done": 1 << 29, "total": 1 << 30})
    threading.Timer(0.3, report).start()
    updates = _stream(web, lambda card: 'value="50"' in card["html"])
    assert 'value="50"' in updates[-1]["html"] and "50 %" in updates[-1]["html"], updates


def test_a_failed_job_shows_in_red_with_what_to_do(web: TestClient, station: Station) -> None:
    agent = dock(station)
    station.erase("1", technician="Noe Martin")
    send(station, agent, "job_move", {"job": 1, "target": "running"})
    send(station, agent, "job_move", {"job": 1, "target": "failed",
                                       "reason": "I/O error at offset 4096"})
    card = html.unescape(web.get("/board").text)
    assert "failed" in card and "Échec : I/O error at offset 4096" in card
    assert "Relancer l'effacement." in card          # the next step, in words


def test_the_meter_gives_speed_and_time_left() -> None:
    meter = Meter()
    meter.read(7, {"phase": "pass", "index": 0, "done": 0, "total": 1000})
    import time
    time.sleep(0.05)
    read = meter.read(7, {"phase": "pass", "index": 0, "done": 500, "total": 1000})
    assert read["percent"] == 50 and read["rate"] > 0 and read["left"] > 0


def test_intake_records_a_donation_and_reads_back_a_qwerty_scanner(
        web: TestClient, station: Station) -> None:
    """A donation, then two serials scanned: one typed right, one by a US-QWERTY
    scanner on this AZERTY station (`&é"'(` for digits): both attached, the second
    read back and said so."""
    agent = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="dock-1",
                                host="bench")
    send(station, agent, "drive_attached", {"evidence": evidence(
        "/dev/sdb", 1 << 30, serial="S4DX0124", model="Samsung SSD 860")})
    page = web.get("/intake")
    csrf = token_of(page.text)
    made = web.post("/intake/donations", data={
        "csrf": csrf, "reference": "DON-2026-007", "donor": "Mairie de Gap",
        "donor_kind": "town_hall", "site": "Gap"})
    assert made.status_code == 200 and "DON-2026-007" in made.text
    done = web.post("/intake/scan", data={"csrf": csrf, "donation": "DON-2026-007",
                                          "kind": "drive",
                                          "labels": "S'DXà&é'\nWDC-99\n"})
    text = html.unescape(done.text)
    assert done.status_code == 200, text
    assert "<b>S4DX0124</b>" in text
    assert "le scanner est réglé en QWERTY (il a tapé S'DXà&é')" in text
    assert "2 éléments ajoutés au don." in text
    with station.registry.session(readonly=True) as s:
        drives = {d.serial: d.donation.reference for d in s.query(Drive).all() if d.donation}
    assert drives == {"S4DX0124": "DON-2026-007", "WDC-99": "DON-2026-007"}


def test_agents_page_pairs_a_waiting_laptop_and_revokes(web: TestClient,
                                                        station: Station) -> None:
    """A laptop waits with a pairing code; a level-1 technician may not pair it (403);
    at level 2 a wrong code is refused and the right one makes it active; then it is
    revoked with its reason."""
    from imager.registry import agents
    with station.registry.session() as s:
        waiting = agents.enrol(s, public_hex(Ed25519PrivateKey.generate()), name="live-usb",
                               kind="machine", host="pc-12", info=None)
    assert waiting.pairing_code
    page = web.get("/agents")
    assert "live-usb" in page.text and waiting.fingerprint in page.text
    csrf = token_of(page.text)
    assert web.post("/agents/pair", data={"csrf": csrf, "code": waiting.pairing_code}
                    ).status_code == 403
    with station.registry.session() as s:
        accounts.set_level(s, "noe", 2)
    wrong = web.post("/agents/pair", data={"csrf": csrf, "code": "0000-0000"})
    assert wrong.status_code == 400 and "unknown or expired pairing code" in wrong.text
    paired = web.post("/agents/pair", data={"csrf": csrf, "code": waiting.pairing_code})
    assert paired.status_code == 200 and "est actif" in html.unescape(paired.text)
    revoked = web.post(f"/agents/{waiting.agent}/revoke",
                       data={"csrf": csrf, "reason": "laptop left the workshop"})
    assert revoked.status_code == 200 and "est révoqué" in html.unescape(revoked.text)
    with station.registry.session(readonly=True) as s:
        assert agents.find_agent(s, str(waiting.agent)).state == "revoked"
        assert [a.action for a in accounts.actions(s)] == ["agent_revoked", "agent_paired"]


def test_a_drives_page_shows_its_plan_history_and_evidence(web: TestClient,
                                                            station: Station) -> None:
    dock(station)
    page = html.unescape(web.get("/drives/1").text)
    assert "Samsung SSD 860" in page and "Le plan" in page
    assert "Méthodes écartées, et pourquoi" in page          # no hdparm output: set aside
    assert "hdparm -N /dev/sdb: not reported by the agent" in page
    assert "inventorié" in html.unescape(page)                # the history, in words
    proof = web.get("/drives/1/evidence")
    assert proof.status_code == 200 and proof.json()["path"] == "/dev/sdb"
    assert web.get("/drives/99").status_code == 404


def test_an_automatic_erasure_names_the_technician_who_took_the_drive_in(
        settings: Settings, registry: Registry) -> None:
    """The policy erases a known donation's drives on its own: the job (and so its
    certificate) names the technician on duty who scanned the drive in."""
    station = Station(settings, registry, ServicePolicy(auto_erase="known-donation",
                                                        auto_certify=False))
    with station.registry.session() as s:
        accounts.create_user(s, login="noe", name="Noé Martin", role="technician",
                             password=PASSWORD, by="test")
    dock(station)
    with TestClient(create_app(station), base_url="https://station.test") as web:
        page = web.get("/login")
        csrf = token_of(page.text)
        web.post("/login", data={"csrf": csrf, "login": "noe", "password": PASSWORD})
        csrf = token_of(web.get("/intake").text)
        web.post("/intake/donations", data={"csrf": csrf, "reference": "DON-2026-008",
                                            "donor": "Mairie de Gap",
                                            "donor_kind": "town_hall"})
        web.post("/intake/scan", data={"csrf": csrf, "donation": "DON-2026-008",
                                       "kind": "drive", "labels": "S4DX01"})
    (job,) = station.store.list()
    assert job.technician == "Noé Martin" and job.donation == "DON-2026-008"


def test_triage_is_confirmed_or_overridden_with_a_reason(web: TestClient,
                                                         station: Station) -> None:
    """A laptop's proposal is confirmed in one click; another choice needs the
    habilitation and a reason, kept with the proposal it overrode."""
    laptop = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="live-usb",
                                 kind="machine", host="pc")
    send(station, laptop, "machine_inventory", {"inventory": {"machine": {
        "vendor": "Dell Inc.", "model": "Latitude 7490", "serial": "6B0N3K2"}}})
    page = web.get("/machines")
    assert "Latitude 7490" in page.text and "Le tri propose" in html.unescape(page.text)
    csrf = token_of(page.text)
    refused = web.post("/machines/1/orientation", data={"csrf": csrf, "choice": "recycling"})
    assert refused.status_code == 403                       # level 1: no override
    with station.registry.session() as s:
        accounts.set_level(s, "noe", 2)
    no_reason = web.post("/machines/1/orientation", data={"csrf": csrf, "choice": "recycling"})
    assert no_reason.status_code == 400 and "demande une raison" in html.unescape(
        no_reason.text)
    done = web.post("/machines/1/orientation", data={"csrf": csrf, "choice": "recycling",
                                                     "why": "écran cassé"},
                    follow_redirects=False)
    assert done.status_code == 303
    with station.registry.session(readonly=True) as s:
        from imager.store.models import Machine
        machine = s.query(Machine).one()
        assert machine.orientation == "recycling" and machine.state == "to_recycling"


def test_a_donations_page_lists_its_drives_and_refuses_an_early_certificate(
        web: TestClient, station: Station) -> None:
    dock(station)
    csrf = token_of(web.get("/intake").text)
    web.post("/intake/donations", data={"csrf": csrf, "reference": "DON-2026-009",
                                        "donor": "Jeanne Petit", "donor_kind": "person"})
    web.post("/intake/scan", data={"csrf": csrf, "donation": "DON-2026-009", "kind": "drive",
                                   "labels": "S4DX01"})
    page = html.unescape(web.get("/donations/DON-2026-009").text)
    assert "Jeanne Petit" in page and "Samsung SSD 860" in page
    early = web.post("/donations/DON-2026-009/certificate", data={"csrf": csrf})
    assert early.status_code == 400 and "sans document" in html.unescape(early.text)
    assert web.get("/donations/DON-0000").status_code == 404


def test_a_laptops_drives_the_policy_leaves_say_why_on_their_cards(
        web: TestClient, station: Station) -> None:
    """A laptop tied to no donation: its drive's card says "inventory only" and how to
    change it; a USB key left in a laptop says to give it back or erase it."""
    laptop = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="live-pxe",
                                 kind="machine", host="laptop")
    send(station, laptop, "drive_attached", {"evidence": evidence(
        "/dev/nvme0n1", 256 << 30, serial="S4DXNF0M1", model="SAMSUNG MZVLB256",
        transport="nvme")})
    send(station, laptop, "drive_attached", {"evidence": evidence(
        "/dev/sdb", 16 << 30, serial="4C530001", model="SanDisk Cruzer", transport="usb")})
    send(station, laptop, "machine_inventory", {"inventory": {"machine": {
        "vendor": "Dell Inc.", "product": "Latitude 7490", "serial": "6B0N3K2"}}})
    with station.registry.session() as s:
        s.get(Agent, laptop).info = {"boot": None, "secure_boot": True}
    page = html.unescape(web.get("/").text)
    assert "Ordinateur lié à aucun don : inventaire seulement." in page
    assert "Clé USB ou carte SD laissée dans l'ordinateur" in page
    assert page.count('Dans l\'ordinateur <a href="/machines/1">Dell Inc. Latitude 7490 · '
                      '6B0N3K2</a> · Secure Boot actif') == 2
    assert "Secure Boot actif" in page


def test_a_secure_boot_refusal_shows_on_the_board_with_what_to_do(
        web: TestClient, station: Station) -> None:
    """The boot service saw a laptop fetch shim and go no further (imager.boot.watch):
    the board says Secure Boot refused it, what that means and what to do; the page
    already open gets the panel from its event stream."""
    from imager.registry import netboot
    from imager.store.db import utcnow
    assert 'id="boots"' in web.get("/board").text               # an empty panel, hidden

    def seen() -> None:         # the boot service, while the page listens
        now = utcnow()
        with station.registry.session() as s:
            netboot.record(s, [
                netboot.Seen("52:54:00:aa:00:01", "shim", now, now, address="10.66.0.185",
                             firmware="uefi", loaders=2, problem="firmware_refused_shim",
                             problem_at=now),
                netboot.Seen("52:54:00:aa:00:02", "initrd", now, now, serial="PF1OK",
                             firmware="uefi", decision="live")])
    threading.Timer(0.3, seen).start()
    panels = []
    with web.stream("GET", "/board/events") as resp:
        for line in resp.iter_lines():
            if line.startswith("data: "):
                panels.append(html.unescape(json.loads(line[6:])["html"]))
                if "Secure Boot" in panels[-1] or len(panels) > 5:
                    break
    assert 'id="boots"' in panels[0] and "Secure Boot" not in panels[0]  # first, as it is
    assert "Secure Boot a refusé le démarrage" in panels[-1]
    page = html.unescape(web.get("/board").text)
    assert "Démarrages sur le réseau (dernière heure)" in page
    assert "Secure Boot a refusé le démarrage" in page and "Microsoft UEFI CA" in page
    assert "52:54:00:aa:00:01" in page and "2 essais" in page
    assert "démarre le système de la station : système de la station" in page
    assert page.index("52:54:00:aa:00:01") < page.index("PF1OK")      # the problem first


def test_an_imager_stick_plugged_in_shows_what_became_of_its_reports(
        web: TestClient, station: Station) -> None:
    """A dock agent said what it did with an imager stick (it has no drive card):
    the board says it, and marks a stick whose reports wait for a person."""
    from imager.store.db import utcnow
    agent = dock(station)
    send(station, agent, "stick_seen", {
        "path": "/dev/sdc", "stick": "serial:SanDisk Cruzer Blade:4C53", "outcome": "waiting",
        "text": "Clé imager branchée : ses rapports attendent qu'un technicien accepte "
                "l'agent live-usb.", "text_en": "Imager stick: its reports wait.",
        "pending": 2, "sent": 0, "left": 2, "agent": "live-usb"},
        at=utcnow().isoformat())
    page = html.unescape(web.get("/board").text)
    assert "Clés imager" in page and "ses rapports attendent" in page
    assert 'class="boot stopped"' in page                    # it needs a person
    assert local_time(utcnow(), "%H:") in page
