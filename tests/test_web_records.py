"""The pages that keep the record: the jobs (newest first) and one job's events,
a computer's page (inventory, triage decided there, drives, history), and a
person's page with what they did (for managers, and for the person)."""

from __future__ import annotations

import html
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from web_client import browser, dock, quiet_station, send, sign_in, token_of, user

from imager.protocol.proof import public_hex
from imager.settings import Settings
from imager.station.service import Station
from imager.store.db import Registry


@pytest.fixture
def station(settings: Settings, registry: Registry) -> Station:
    return quiet_station(settings, registry)


@pytest.fixture
def web(station: Station) -> Iterator[TestClient]:
    user(station, "noe", level=2)
    with browser(station) as client:
        sign_in(client, "noe")
        yield client


def test_the_jobs_list_and_a_jobs_page_with_what_its_agent_reported(
        web: TestClient, station: Station) -> None:
    agent = dock(station)
    station.erase("1", technician="Noe Martin")
    send(station, agent, "job_move", {"job": 1, "target": "running"})
    send(station, agent, "job_move", {"job": 1, "target": "failed",
                                      "reason": "I/O error at offset 4096"})
    listed = html.unescape(web.get("/jobs").text)
    assert 'href="/jobs/1"' in listed and "Samsung SSD 860" in listed
    assert "I/O error at offset 4096" in listed and "Noe Martin" in listed
    page = html.unescape(web.get("/jobs/1").text)
    assert "Ce que son agent a signalé" in page and "I/O error at offset 4096" in page
    assert 'href="/drives/1"' in page and "dock-1" in page
    assert web.get("/jobs/99").status_code == 404


def test_a_computers_page_decides_its_triage_and_keeps_its_history(
        web: TestClient, station: Station) -> None:
    laptop = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="live-usb",
                                 kind="machine", host="pc")
    send(station, laptop, "machine_inventory", {"inventory": {"machine": {
        "vendor": "Dell Inc.", "model": "Latitude 7490", "serial": "6B0N3K2"}}})
    page = html.unescape(web.get("/machines/1").text)
    assert "Latitude 7490" in page and "6B0N3K2" in page and "Le tri propose" in page
    assert "/machines/1/inventory" in page
    inventory = web.get("/machines/1/inventory")
    assert inventory.json()["machine"]["serial"] == "6B0N3K2"
    form = {"csrf": token_of(page), "choice": "recycling", "back": "machine"}
    no_reason = web.post("/machines/1/orientation", data=form)
    assert no_reason.status_code == 400 and "Latitude 7490" in no_reason.text  # same page
    done = web.post("/machines/1/orientation", data={**form, "why": "charnière cassée"},
                    follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/machines/1"
    page = html.unescape(web.get("/machines/1").text)
    assert "Décidé" in page and "charnière cassée" in page and "Noe Martin" in page
    assert web.get("/machines/7").status_code == 404


def test_a_persons_page_shows_what_they_did_to_managers_and_to_themselves(
        web: TestClient, station: Station) -> None:
    dock(station)
    token = token_of(web.get("/drives/1").text)
    web.post("/drives/1/to-destruction", data={"csrf": token, "reason": "plateau rayé"})
    mine = html.unescape(web.get("/people/noe").text)
    assert "Ce que la personne a fait" in mine and "inventorié → à détruire" in mine
    assert 'href="/drives/1"' in mine and "plateau rayé" in mine
    assert "envoyer un disque à la destruction" in mine          # what level 2 allows
    user(station, "ada")
    assert web.get("/people/ada").status_code == 403          # a technician: only their own
    user(station, "vera", role="supervisor")
    with browser(station) as other:
        sign_in(other, "vera")
        seen = html.unescape(other.get("/people/noe").text)
        assert "plateau rayé" in seen
        assert other.get("/people/nobody").status_code == 404
