"""What a person does to one drive beyond the policy, from its page: erase with
another method (level 2), send it to destruction (level 2, with a reason), record
its destruction in front of a witness (level 3). A person without the level sees no
form and gets 403 from a hand-made request; the history names who decided."""

from __future__ import annotations

import html
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from web_client import browser, dock, quiet_station, sign_in, token_of, user

from imager.registry import accounts, items
from imager.settings import Settings
from imager.station.service import Station
from imager.store.db import Registry
from imager.store.models import Document, Job


@pytest.fixture
def station(settings: Settings, registry: Registry) -> Station:
    made = quiet_station(settings, registry)
    dock(made)                       # drive 1: a Samsung SSD whose tools said nothing
    return made


@pytest.fixture
def web(station: Station) -> Iterator[TestClient]:
    user(station, "noe")                      # a technician, level 1
    with browser(station) as client:
        sign_in(client, "noe")
        yield client


def _level(station: Station, login: str, level: int) -> None:
    with station.registry.session() as s:
        accounts.set_level(s, login, level)


def _history(station: Station) -> list[dict[str, object]]:
    with station.registry.session(readonly=True) as s:
        return items.drive_summary(s, items.find_drive(s, "1"), with_history=True)["history"]


def test_a_supervisor_erases_with_another_method_and_the_history_names_them(
        web: TestClient, station: Station) -> None:
    page = web.get("/drives/1").text
    assert 'id="method"' not in page                       # level 1: no such form
    token = token_of(page)
    refused = web.post("/drives/1/erase-method", data={"csrf": token, "method": "random"})
    assert refused.status_code == 403 and "niveau 2" in refused.text
    _level(station, "noe", 2)
    page = html.unescape(web.get("/drives/1").text)
    assert "Effacer avec une autre méthode" in page
    # the drive's firmware methods are listed, greyed out with why; overwrites are open
    assert 'value="ata-sanitize-crypto" required disabled' in page
    assert "Impossible sur ce disque :" in page and 'value="random" required>' in page
    done = web.post("/drives/1/erase-method", data={"csrf": token, "method": "random"},
                    follow_redirects=False)
    assert done.status_code == 303, done.text
    with station.registry.session(readonly=True) as s:
        job = s.get(Job, 1)
        assert job is not None and job.plan["steps"][0]["method"] == "random"
        assert job.plan["policy"] == station.applier.plans.label     # planned here
    chosen = [e for e in _history(station) if e["kind"] == "method_chosen"]
    assert chosen and chosen[0]["actor"] == "Noe Martin", chosen


def test_a_method_the_drive_cannot_run_is_refused_with_its_reason(
        web: TestClient, station: Station) -> None:
    _level(station, "noe", 2)
    token = token_of(web.get("/drives/1").text)
    firmware = web.post("/drives/1/erase-method",
                        data={"csrf": token, "method": "ata-sanitize-crypto"})
    assert firmware.status_code == 400 and "cannot run on this drive" in firmware.text
    unknown = web.post("/drives/1/erase-method", data={"csrf": token, "method": "shred-it"})
    assert unknown.status_code == 400 and "nist-clear" in unknown.text   # the known ones
    nvme = web.post("/drives/1/erase-method",
                    data={"csrf": token, "method": "nvme-sanitize-crypto"})
    assert nvme.status_code == 400 and "cannot run on a sata-ssd drive" in nvme.text
    with station.registry.session(readonly=True) as s:
        assert s.get(Job, 1) is None                          # nothing was started


def test_destruction_sent_with_a_reason_then_recorded_before_a_witness(
        web: TestClient, station: Station) -> None:
    token = token_of(web.get("/drives/1").text)
    form = {"csrf": token, "reason": "plateau rayé, bruit de clics"}
    assert web.post("/drives/1/to-destruction", data=form).status_code == 403
    _level(station, "noe", 2)
    page = html.unescape(web.get("/drives/1").text)
    assert "Envoyer à la destruction" in page
    no_reason = web.post("/drives/1/to-destruction", data={"csrf": token, "reason": " "})
    assert no_reason.status_code == 400 and "say why" in no_reason.text
    assert web.post("/drives/1/to-destruction", data=form,
                    follow_redirects=False).status_code == 303
    moved = [e for e in _history(station) if e.get("to") == "to_destroy"]
    assert moved and moved[0]["reason"] == form["reason"] and moved[0]["actor"] == "Noe Martin"
    # recording it needs level 3, a known technique and a witness
    record = {"csrf": token, "technique": "shred", "witness": "Hélène Dupré",
              "witness_title": "Secrétaire de mairie"}
    assert web.post("/drives/1/destruction", data=record).status_code == 403
    _level(station, "noe", 3)
    page = html.unescape(web.get("/drives/1").text)
    assert "Enregistrer la destruction" in page and ">broyage<" in page
    no_witness = web.post("/drives/1/destruction", data={**record, "witness": ""})
    assert no_witness.status_code == 400 and "witness" in no_witness.text
    odd = web.post("/drives/1/destruction", data={**record, "technique": "hammer"})
    assert odd.status_code == 400 and "shred" in odd.text
    assert web.post("/drives/1/destruction", data=record,
                    follow_redirects=False).status_code == 303
    with station.registry.session(readonly=True) as s:
        assert items.find_drive(s, "1").state == "destroyed"
        doc = s.query(Document).filter_by(drive_id=1).one()
    assert doc.kind == "destruction" and doc.id.startswith("DES-")
    page = html.unescape(web.get("/drives/1").text)
    assert doc.id in page and f"/documents/{doc.id}.pdf" in page
    pdf = web.get(f"/documents/{doc.id}.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    again = web.post("/drives/1/destruction", data=record)
    assert again.status_code == 400 and "not waiting for destruction" in again.text
