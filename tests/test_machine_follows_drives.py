"""A laptop's drives belong to it, and the laptop follows them through erasure,
imaging and certification: events of a real (in-process) station, as a laptop's
agent sends them."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_maker import evidence

from imager.protocol.events import BadEvent, parse_events
from imager.protocol.proof import public_hex
from imager.registry import items, machines
from imager.settings import Settings
from imager.station.service import ServicePolicy, Station
from imager.store import people
from imager.store.db import Registry
from imager.store.models import Drive, Job, Machine

LAPTOP_KEY = Ed25519PrivateKey.generate()


def _event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "at": "2026-12-06T09:00:00+00:00", "v": 2, "kind": kind,
            "data": data}


def _attached(serial: str) -> dict[str, Any]:
    return _event("drive_attached", {"evidence": evidence(
        f"/dev/nvme{serial[-1]}n1", 256 << 30, serial=serial, model="SAMSUNG MZVLB256HAHQ",
        transport="nvme")})


INVENTORY = _event("machine_inventory", {
    "inventory": {"machine": {"vendor": "Dell Inc.", "model": "Latitude 7490",
                              "serial": "6B0N3K2"}}})


@pytest.fixture
def station(settings: Settings, registry: Registry) -> Station:
    return Station(settings, registry, ServicePolicy(auto_erase="never", auto_certify=False))


def _laptop(station: Station, *events: dict[str, Any]) -> int:
    agent_id = station.enrol_local(public_hex(LAPTOP_KEY), name="live-usb", kind="machine",
                                   host="laptop-1")     # the same laptop's agent each time
    answers = station.receive(agent_id, parse_events(list(events)))
    assert [a["outcome"] for a in answers] == ["applied"] * len(events), answers
    return agent_id


def _move(station: Station, serial: str, *states: str) -> str | None:
    """Move the drive through `states`; the state of its machine after it."""
    with station.registry.session() as s:
        drive = s.query(Drive).filter_by(serial=serial).one()
        for state in states:
            items.move(s, drive, state, actor="Lina", reason="test")
        machine = s.get(Machine, drive.machine_id) if drive.machine_id else None
        return machine.state if machine else None


@pytest.mark.parametrize("inventory_first", [True, False])
def test_the_drives_a_laptops_agent_reports_are_the_laptops(station: Station,
                                                            inventory_first: bool) -> None:
    drive = _attached("S4DXNF0M1")
    _laptop(station, *([INVENTORY, drive] if inventory_first else [drive, INVENTORY]))
    with station.registry.session(readonly=True) as s:
        machine = s.query(Machine).one()
        view = machines.machine_summary(s, machine, with_history=True)
        assert view["drives"] == [s.query(Drive).one().id]
        assert view["state"] == "inventoried"
        kinds = [e["kind"] for e in items.drive_summary(s, s.query(Drive).one(),
                                                        with_history=True)["history"]]
        assert kinds.count("in_machine") == 1


def test_the_machine_follows_its_drives_through_the_flow(station: Station) -> None:
    _laptop(station, INVENTORY, _attached("S4DXNF0M1"))
    assert _move(station, "S4DXNF0M1", "erasing") == "erasing"
    assert _move(station, "S4DXNF0M1", "erased") == "erased"
    assert _move(station, "S4DXNF0M1", "imaging") == "imaging"
    assert _move(station, "S4DXNF0M1", "imaged") == "imaged"
    assert _move(station, "S4DXNF0M1", "certified") == "certified"
    with station.registry.session(readonly=True) as s:
        machine = s.query(Machine).one()
        moves = [(e["from"], e["to"]) for e in machines.machine_summary(
            s, machine, with_history=True)["history"] if e["kind"] == "move"]
        reasons = {e.reason for e in items.history(s, machine) if e.kind == "move"}
    assert moves == [("received", "inventoried"), ("inventoried", "erasing"),
                     ("erasing", "erased"), ("erased", "imaging"), ("imaging", "imaged"),
                     ("imaged", "certified")]
    assert any("the machine follows its drives" in r for r in reasons)


def test_two_drives_a_failure_first_then_work_then_the_least_advanced(
        station: Station) -> None:
    _laptop(station, INVENTORY, _attached("S4DXNF0M1"), _attached("WD-WX21A9"))
    assert _move(station, "S4DXNF0M1", "erasing") == "erasing"
    assert _move(station, "S4DXNF0M1", "erased") == "inventoried"   # the other waits
    assert _move(station, "WD-WX21A9", "erasing") == "erasing"
    assert _move(station, "WD-WX21A9", "erase_failed") == "erase_failed"
    assert _move(station, "WD-WX21A9", "erasing", "erased") == "erased"


def test_a_machine_outside_the_flow_stays_where_it_is(station: Station) -> None:
    _laptop(station, INVENTORY, _attached("S4DXNF0M1"))
    with station.registry.session() as s:
        machines.orient(s, s.query(Machine).one(), "parts", actor="Lina", why="écran cassé")
    assert _move(station, "S4DXNF0M1", "erasing", "erased") == "to_parts"


def test_machine_state_of_drive_states() -> None:
    assert items.machine_state([]) is None
    assert items.machine_state(["to_destroy"]) is None
    assert items.machine_state(["certified", "imaged"]) == "imaged"
    assert items.machine_state(["certified", "imaging", "erase_failed"]) == "erase_failed"
    assert items.machine_state(["erased", "imaging"]) == "imaging"
    assert items.machine_state(["inventoried", "certified"]) == "inventoried"
    assert items.machine_state(["to_destroy", "certified"]) is None   # it waits


def test_moves_forward_marked_backward_a_conflict(station: Station) -> None:
    _laptop(station, _attached("S4DXNF0M1"))
    _move(station, "S4DXNF0M1", "erasing", "erased", "imaging", "imaged")
    _laptop(station, INVENTORY)      # the machine appears after its drive's work
    with station.registry.session(readonly=True) as s:
        machine = s.query(Machine).one()
        moves = [(e.to_state, e.data) for e in items.history(s, machine) if e.kind == "move"]
    assert machine.state == "imaged"
    assert moves[1:] == [("erasing", {"passed_through": True, "towards": "imaged"}),
                         ("erased", {"passed_through": True, "towards": "imaged"}),
                         ("imaging", {"passed_through": True, "towards": "imaged"}),
                         ("imaged", None)]
    assert _move(station, "S4DXNF0M1", "certified") == "certified"
    # erased again: a certified machine cannot go back through imaging to erasing
    assert _move(station, "S4DXNF0M1", "erasing") == "certified"
    with station.registry.session(readonly=True) as s:
        last = items.history(s, s.query(Machine).one())[-1]
    assert last.kind == "conflict" and last.data == {"wanted": "erasing"}


def test_a_machine_another_live_agent_reports_is_not_taken(station: Station) -> None:
    """Another agent reporting the same machine (its DMI facts are on its sticker)
    while the first still answers is refused; the triage is the station's own."""
    _laptop(station, INVENTORY)
    other = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="intruder",
                                kind="machine", host="somewhere")
    (answer,) = station.receive(other, parse_events([{**INVENTORY, "id": uuid.uuid4().hex}]))
    assert answer["outcome"] == "refused", answer
    assert "is reported by agent live-usb, which still answers" in answer["detail"]
    with station.registry.session() as s:
        machine = s.query(Machine).one()
        assert machine.identity == "serial:dell inc.:6B0N3K2"
        assert machine.proposal is not None and machine.proposal["orientation"]


def test_a_triage_the_agent_proposes_is_refused() -> None:
    with pytest.raises(BadEvent, match=r"data\.proposal: Extra inputs are not permitted"):
        parse_events([{**INVENTORY, "data": {**INVENTORY["data"],
                                             "proposal": {"orientation": "reuse"}}}])


# --- what the policy may erase on its own in a laptop ------------------------------

def _policy_station(settings: Settings, registry: Registry, auto_erase: str) -> Station:
    return Station(settings, registry, ServicePolicy(auto_erase=auto_erase,
                                                     auto_certify=False))


def _donation(station: Station, *, laptop_serial: str) -> None:
    """The laptop's SMBIOS serial, scanned at intake into donation DON-1."""
    with station.registry.session() as s:
        people.add_donor(s, "société", "Alpes Conseil SARL")
        people.add_donation(s, "DON-1", "Alpes Conseil SARL", date(2026, 12, 1))
    station.intake("DON-1", drives=[], machines=[laptop_serial], actor="Lina")


def _jobs_and_donations(station: Station) -> dict[str, tuple[int, bool]]:
    """Drive serial -> (its erase jobs, whether it has a donation)."""
    with station.registry.session(readonly=True) as s:
        return {d.serial: (s.query(Job).filter_by(drive_id=d.id).count(),
                           d.donation_id is not None) for d in s.query(Drive)}


@pytest.mark.parametrize("auto_erase", ["always", "known-donation"])
def test_a_laptop_tied_to_no_donation_is_only_inventoried(
        settings: Settings, registry: Registry, auto_erase: str) -> None:
    """Any machine on the bench network may boot the station: without a donation it
    is inventoried, and the policy erases none of its drives, even "always"."""
    station = _policy_station(settings, registry, auto_erase)
    _laptop(station, _attached("S4DXNF0M1"), INVENTORY)
    assert _jobs_and_donations(station) == {"S4DXNF0M1": (0, False)}
    with station.registry.session(readonly=True) as s:
        drive = s.query(Drive).one()
        assert machines.held_back(s, drive) == "no_donation"
        assert s.query(Machine).one().state == "inventoried"


@pytest.mark.parametrize("inventory_first", [True, False])
def test_a_laptop_of_a_donation_has_its_drive_erased_by_the_policy(
        settings: Settings, registry: Registry, inventory_first: bool) -> None:
    """Intake scanned the laptop's serial: its internal drive comes from that donation
    and the policy erases it; a USB key and an SD card left in it are listed with it
    but wait for a person, and do not hold the laptop back."""
    station = _policy_station(settings, registry, "known-donation")
    _donation(station, laptop_serial="6B0N3K2")
    key = _event("drive_attached", {"evidence": evidence(
        "/dev/sdb", 16 << 30, serial="4C530001", model="SanDisk Cruzer", transport="usb")})
    card = _event("drive_attached", {"evidence": evidence(
        "/dev/mmcblk0", 32 << 30, serial="0xa1b2c3d4", model="SD32G", transport="mmc")})
    drives = [_attached("S4DXNF0M1"), key, card]
    _laptop(station, *([INVENTORY, *drives] if inventory_first else [*drives, INVENTORY]))
    assert _jobs_and_donations(station) == {"S4DXNF0M1": (1, True), "4C530001": (0, False),
                                            "0xa1b2c3d4": (0, False)}
    with station.registry.session(readonly=True) as s:
        machine = s.query(Machine).one()
        assert machine.donation_id is not None
        assert sorted(machines.machine_summary(s, machine)["drives"]) == sorted(
            d.id for d in s.query(Drive))
        usb = s.query(Drive).filter_by(serial="4C530001").one()
        assert machines.held_back(s, usb) == "removable"
    assert _move(station, "S4DXNF0M1", "erasing", "erased") == "erased"
