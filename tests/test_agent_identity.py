"""Agents the station can trust: one key per agent, enrolled one at a time, proven
on every request. Played as an attacker on the workshop LAN would, against the
station's real API and registry: every attempt is refused, and leaves the
registry as it was."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_maker import evidence
from fastapi import FastAPI
from fastapi.testclient import TestClient

from imager.agent.client import ProofAuth
from imager.protocol import proof
from imager.protocol.proof import public_hex
from imager.registry import agents
from imager.settings import Settings
from imager.station.api import create_app
from imager.station.policy import ServicePolicy
from imager.station.service import Station
from imager.store.db import Registry, utcnow
from imager.store.models import Agent, BootToken

MAC, SERIAL = "52:54:00:12:34:56", "PF2ABCDE"


@pytest.fixture
def station(settings: Settings, registry: Registry) -> Station:
    return Station(settings, registry, ServicePolicy(auto_erase="never", auto_certify=False))


@pytest.fixture
def api(station: Station) -> Iterator[TestClient]:
    with TestClient(create_app(station)) as client:
        yield client


def _as(key: Ed25519PrivateKey) -> ProofAuth:
    return ProofAuth(key)


def _enrol(api: TestClient, key: Ed25519PrivateKey, name: str = "laptop-1",
           **extra: Any) -> httpx.Response:
    return api.post("/api/v1/agents", auth=_as(key), json={
        "public_key": public_hex(key), "name": name, "kind": "machine", "host": "live",
        **extra})


def _operator(station: Station) -> dict[str, str]:
    return {"Authorization": f"Bearer {station.tokens.operator}"}


def _tables(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of the registry but the agents' last-seen times."""
    with closing(sqlite3.connect(settings.data_dir / "registry.sqlite3")) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = {n: db.execute(f'SELECT * FROM "{n}"').fetchall() for n in names}
        columns = [c[1] for c in db.execute("PRAGMA table_info(agents)")]
    seen = columns.index("last_seen_at")
    dump["agents"] = [r[:seen] + r[seen + 1:] for r in dump["agents"]]
    return dump


def test_a_new_key_waits_for_a_technician_and_pairs_with_the_code_it_shows(
        api: TestClient, station: Station) -> None:
    key = Ed25519PrivateKey.generate()
    answer = _enrol(api, key).json()
    assert answer["state"] == "pending" and answer["policy"] is None
    assert answer["fingerprint"] == proof.fingerprint(public_hex(key))
    assert api.post("/api/v1/events", auth=_as(key), json={"events": []}).status_code == 403
    me = api.get("/api/v1/agents/me", auth=_as(key)).json()
    assert me["state"] == "pending"
    paired = api.post("/api/v1/agents/pair", headers=_operator(station),
                      json={"code": answer["pairing_code"], "by": "Lina"})
    assert paired.status_code == 200
    assert paired.json()["enrolled_by"] == "pairing code typed by Lina"
    me = api.get("/api/v1/agents/me", auth=_as(key)).json()
    assert me["state"] == "active" and "policy" in me and me["policy"]
    assert api.post("/api/v1/events", auth=_as(key), json={"events": []}).status_code == 200


def test_taking_a_name_takes_nothing(api: TestClient, station: Station) -> None:
    """Enrolling again under an existing agent's host and name makes another,
    pending agent; the first one keeps working."""
    real, thief = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    real_id = station.enrol_local(public_hex(real), name="laptop-1", host="live", kind="machine")
    stolen = _enrol(api, thief, "laptop-1").json()
    assert stolen["id"] != real_id and stolen["state"] == "pending"
    assert api.post("/api/v1/events", auth=_as(real), json={"events": []}).status_code == 200
    assert api.post("/api/v1/events", auth=_as(thief), json={"events": []}).status_code == 403


def test_a_request_is_refused_without_the_key_replayed_or_altered(
        api: TestClient, station: Station, settings: Settings) -> None:
    key = Ed25519PrivateKey.generate()
    station.enrol_local(public_hex(key), name="dock-1", host="bench")
    body = b'{"events": []}'
    headers = {**proof.sign(key, "POST", "/api/v1/events", body),
               "Content-Type": "application/json"}
    before = _tables(settings)
    assert api.post("/api/v1/events", content=body, headers=headers).status_code == 200
    for attempt, refused in (
            ({"content": body, "headers": headers}, "replayed request"),
            ({"content": b'{"events": [1]}', "headers": {**headers, proof.NONCE: "a" * 32}},
             "not this agent's over this request"),
            ({"content": body, "headers": {"Authorization": "Bearer stolen"}},
             "unsigned request"),
            ({"content": body, "headers": {**proof.sign(key, "POST", "/api/v1/events", body,
                                                        now=0), "Content-Type": "x"}},
             "from the station's clock")):
        resp = api.post("/api/v1/events", **attempt)
        assert resp.status_code == 401 and refused in resp.json()["error"], resp.text
    assert _tables(settings) == before


def test_a_revoked_agent_is_refused_at_its_next_request(api: TestClient,
                                                        station: Station) -> None:
    key = Ed25519PrivateKey.generate()
    agent_id = station.enrol_local(public_hex(key), name="dock-1", host="bench")
    assert api.get("/api/v1/jobs/next", auth=_as(key)).status_code == 200
    revoked = api.post(f"/api/v1/agents/{agent_id}/revoke", headers=_operator(station),
                       json={"reason": "laptop stolen", "by": "Lina"})
    assert revoked.json()["state"] == "revoked"
    resp = api.get("/api/v1/jobs/next", auth=_as(key))
    assert resp.status_code == 403 and "laptop stolen (by Lina)" in resp.json()["error"]
    assert _enrol(api, key).status_code == 403          # and never enrols again


def test_a_boot_token_enrols_one_agent_of_its_laptop_once(api: TestClient,
                                                          station: Station) -> None:
    token = api.post("/api/v1/boot-tokens", headers=_operator(station),
                     json={"mac": MAC.upper(), "serial": SERIAL, "by": "boot service"}
                     ).json()["token"]
    other = _enrol(api, Ed25519PrivateKey.generate(), boot_token=token, macs=["02:00:00:00:00:01"],
                   serial=SERIAL)
    assert other.status_code == 403 and "belongs to another laptop" in other.text
    key = Ed25519PrivateKey.generate()
    first = _enrol(api, key, boot_token=token, macs=[MAC], serial=SERIAL.lower()).json()
    assert first["state"] == "active" and first["policy"]
    again = _enrol(api, Ed25519PrivateKey.generate(), boot_token=token, macs=[MAC],
                   serial=SERIAL)
    assert again.status_code == 403 and "already used" in again.text
    with station.registry.session() as s:
        late = agents.issue_boot_token(s, mac=MAC, serial=SERIAL, by="boot service")
        for row in s.query(BootToken).filter(BootToken.used_at.is_(None)):
            row.expires_at = utcnow() - timedelta(seconds=1)
    expired = _enrol(api, Ed25519PrivateKey.generate(), boot_token=late, macs=[MAC],
                     serial=SERIAL)
    assert expired.status_code == 403 and "expired" in expired.text


def test_pairing_codes_cannot_be_guessed(api: TestClient, station: Station) -> None:
    code = _enrol(api, Ed25519PrivateKey.generate()).json()["pairing_code"]
    wrong = "0000-0000" if code != "0000-0000" else "1111-1111"
    for _ in range(agents.PAIRING_TRIES):
        resp = api.post("/api/v1/agents/pair", headers=_operator(station),
                        json={"code": wrong, "by": "Mallory"})
        assert resp.status_code == 400 and "unknown or expired pairing code" in resp.text
    late = api.post("/api/v1/agents/pair", headers=_operator(station),
                    json={"code": code, "by": "Lina"})
    assert late.status_code == 400                       # the code is void now
    with station.registry.session(readonly=True) as s:
        assert s.query(Agent).one().state == "pending"


def test_every_route_refuses_an_unauthenticated_call(api: TestClient, station: Station,
                                                     settings: Settings) -> None:
    """Walk the route table: no route but health answers a caller with no proof and
    no operator token, nor one whose bearer token is an agent's signature header."""
    before = _tables(settings)
    app: FastAPI = api.app      # type: ignore[assignment]
    routes = app.openapi()["paths"]          # every route, docs served or not
    assert len(routes) > 20
    for template, operations in routes.items():
        path = template.replace("{ref}", "1").replace("{job_id}", "1").replace(
            "{name}", "x").replace("{version}", "1").replace("{part}", "image")
        for method in operations:
            resp = api.request(method, path, json={})
            expected = {200} if path == "/api/v1/health" else {401, 422}
            assert resp.status_code in expected, (method, path, resp.status_code, resp.text)
            if resp.status_code == 422:    # a body checked before the caller: still refused
                assert "events" in path or "agents" in path, (method, path)
    assert _tables(settings) == before


def test_the_agent_key_file_is_private_and_checked(tmp_path: Path) -> None:
    from imager.agent.key import agent_key
    from imager.errors import UsageError
    path = tmp_path / "agent.key"
    key = agent_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert public_hex(agent_key(path)) == public_hex(key)
    path.chmod(0o644)
    with pytest.raises(UsageError, match="readable by others"):
        agent_key(path)


def test_a_flood_of_new_keys_is_refused(api: TestClient, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    """Anyone on the LAN can ask to be enrolled: only so many wait at once."""
    monkeypatch.setattr(agents, "MAX_WAITING", 3)
    for _ in range(3):
        assert _enrol(api, Ed25519PrivateKey.generate()).json()["state"] == "pending"
    flood = _enrol(api, Ed25519PrivateKey.generate())
    assert flood.status_code == 403 and "3 agents already wait for a technician" in flood.text


def test_only_the_agent_holding_a_drive_reports_it_unplugged(api: TestClient,
                                                             station: Station) -> None:
    """Another enrolled agent (or the dock a drive left, late) cannot mark it gone, nor
    take it over by reporting it plugged in while its holder still answers."""
    holder, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    for key, name in ((holder, "dock-1"), (other, "dock-2")):
        station.enrol_local(public_hex(key), name=name, host="bench")
    attached = {"id": "a1", "seq": 1, "at": "2026-12-06T09:00:00Z", "v": 2,
                "kind": "drive_attached",
                "data": {"evidence": evidence("/dev/sdb", 1 << 30, serial="S4DXNF0M1")}}
    gone = {"id": "d1", "seq": 2, "at": "2026-12-06T09:00:01Z", "v": 2,
            "kind": "drive_detached",
            "data": {"identity": "serial::S4DXNF0M1", "path": "/dev/sdb", "reason": "gone"}}

    def send(key: Ed25519PrivateKey, event: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = api.post("/api/v1/events", auth=_as(key),
                                          json={"events": [event]}).json()["results"][0]
        return answer

    assert send(holder, attached)["outcome"] == "applied"
    refused = send(other, gone)
    assert refused["outcome"] == "refused" and "only its holder" in refused["detail"]
    taken = send(other, {**attached, "id": "a2"})
    assert taken["outcome"] == "refused" and "plugged in on agent dock-1" in taken["detail"]
    drives = api.get("/api/v1/drives", headers=_operator(station)).json()
    assert [d["present"] for d in drives] == [True]
    assert send(holder, {**gone, "id": "d2"})["outcome"] == "applied"
    drives = api.get("/api/v1/drives", headers=_operator(station)).json()
    assert [d["present"] for d in drives] == [False]


def test_what_an_agent_says_of_its_boot_is_typed_and_kept(api: TestClient,
                                                          station: Station) -> None:
    """Only `boot` (usb, installed) and `secure_boot` (a boolean) are taken; anything
    else in `info` is refused before it reaches the registry."""
    for bad in ({"boot": "network"}, {"secure_boot": "yes"}, {"notes": "x" * 10_000}):
        refused = _enrol(api, Ed25519PrivateKey.generate(), info=bad)
        assert refused.status_code == 422, (bad, refused.text)
    key = Ed25519PrivateKey.generate()
    assert _enrol(api, key, info={"boot": "usb", "secure_boot": True}).status_code == 200
    with station.registry.session(readonly=True) as s:
        agent = agents.by_key(s, public_hex(key))
        assert agent is not None and agent.boot == "usb"
        assert agent.info == {"boot": "usb", "secure_boot": True}


@pytest.mark.parametrize(("value", "expected"), [
    (b"\x06\x00\x00\x00\x01", True), (b"\x06\x00\x00\x00\x00", False), (None, False)])
def test_secure_boot_is_read_from_the_efi_variable(tmp_path: Path, value: bytes | None,
                                                   expected: bool) -> None:
    from imager.host.owner import secure_boot
    assert secure_boot(tmp_path) is None                      # no /sys/firmware/efi: BIOS
    efivars = tmp_path / "firmware" / "efi" / "efivars"
    efivars.mkdir(parents=True)
    if value is not None:      # the name efivarfs gives it (EFI_GLOBAL_VARIABLE's GUID)
        (efivars / "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c").write_bytes(value)
    assert secure_boot(tmp_path) is expected
