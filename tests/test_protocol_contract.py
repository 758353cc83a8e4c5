"""The agent protocol as a contract: the JSON of every event kind is pinned
(tests/data/protocol/events-v2.json), the agent's own code writes events that
fit it, and the station answers 422 naming the field for an event that does
not (an unknown kind, a missing field, a field nobody reads)."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from imager.agent.client import ProofAuth, StationClient, StationRefused
from imager.agent.outbox import Outbox
from imager.agent.remote import RemoteJobStore
from imager.host.owner import Owner
from imager.model import DriveIdentity, ErasePlan
from imager.protocol import events as ev
from imager.protocol.jobs import JobView
from imager.protocol.proof import public_hex
from imager.settings import Settings
from imager.station.api import create_app
from imager.station.policy import ServicePolicy
from imager.station.service import Station
from imager.store.db import Registry

PINNED = DATA / "protocol" / "events-v2.json"


def _pinned() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(PINNED.read_text())["events"]
    return events


def test_every_event_kind_has_its_pinned_json() -> None:
    assert sorted(e["kind"] for e in _pinned()) == sorted(ev.KINDS)
    assert ev.PROTOCOL_VERSION == 2 and all(e["v"] == 2 for e in _pinned())


@pytest.mark.parametrize("pinned", _pinned(), ids=lambda e: e["kind"])
def test_the_pinned_json_of_each_kind_reads_and_writes_unchanged(pinned: dict[str, Any]
                                                                  ) -> None:
    (event,) = ev.parse_events([pinned])
    assert event.model_dump(mode="json") == pinned, (
        "the protocol changed: if on purpose, give it a new version (PROTOCOL_VERSION) "
        f"and pin the new JSON in {PINNED}")
    plan = pinned["data"].get("plan")
    if plan is not None and pinned["kind"] != "job_event":
        assert json.loads(json.dumps(ErasePlan.from_dict(plan).to_dict())) == plan


def _job_plan() -> dict[str, Any]:
    plan: dict[str, Any] = next(e for e in _pinned() if e["kind"] == "job_plan")["data"]["plan"]
    return plan


@pytest.mark.parametrize("version", [None, 1, 3])
def test_an_event_of_another_version_is_refused_with_the_fix(version: int | None) -> None:
    """Version 1 carried the agent's own plan (and events before it had no `v`): the
    station refuses them and says to update the agent, whose drives are then reported
    again by their evidence."""
    old = {k: v for k, v in _pinned()[1].items() if k != "v"}
    with pytest.raises(ev.BadEvent, match=f"protocol version {version or 1}: this station "
                                          "speaks version 2.*update the agent"):
        ev.parse_events([old if version is None else {**old, "v": version}])


def test_the_agents_own_code_writes_events_that_fit_the_contract(tmp_path: Path) -> None:
    """A real outbox and the agent's job store, every kind they write, read back
    by the station's parser with nothing lost."""
    outbox = Outbox(tmp_path / "spool")
    plan = ErasePlan.from_dict(_job_plan())
    ident = DriveIdentity(path="/dev/sdb", size=1 << 30, serial="S1", transport="sata")
    job = JobView(id=7, kind="erase", state="queued", device_path="/dev/sdb",
                  drive_identity=ident.key, drive_size=ident.size, plan=plan, checkpoint=None,
                  report=None, reason=None, donation=None, technician=None,
                  created_at=datetime.now(UTC), started_at=None, ended_at=None)
    store = RemoteJobStore(outbox, job)
    store.move(7, "running", owner=Owner.me())
    store.event(7, "pass_done", "pass 1", {"index": 0})
    store.replace_plan(7, plan, kind="method_refused", message="refused")
    store.save_checkpoint(7, {"index": 0, "offset": 4096, "seconds": 1.0})
    store.record_drive(ident)
    store.progress(7, "pass", 0, 4096, 1 << 30)
    outbox.put("drive_detached", {"identity": ident.key, "path": ident.path,
                                  "reason": "unplugged"})
    sent = outbox.pending()
    parsed = ev.parse_events(sent)
    assert [e.kind for e in parsed] == ["job_move", "job_event", "job_plan", "job_checkpoint",
                                        "job_drive", "progress", "drive_detached"]
    assert [e.model_dump(mode="json") for e in parsed] == sent


def test_the_agent_cannot_spool_an_event_the_station_would_refuse(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "spool")
    with pytest.raises(ev.BadEvent, match=r"drive_detached\.data\.identity"):
        outbox.put("drive_detached", {"path": "/dev/sdb"})
    with pytest.raises(ev.BadEvent, match="unknown event kind 'drive_exploded'"):
        outbox.put("drive_exploded", {})
    assert outbox.pending() == []


@pytest.fixture
def api(settings: Settings, registry: Registry) -> Iterator[TestClient]:
    """The station's API, called by an enrolled agent (every request signed)."""
    station = Station(settings, registry, ServicePolicy(auto_erase="never",
                                                        auto_certify=False))
    key = Ed25519PrivateKey.generate()
    station.enrol_local(public_hex(key), name="dock-1", host="bench")
    with TestClient(create_app(station)) as client:
        client.auth = ProofAuth(key)
        yield client


def _send(api: TestClient, *events: dict[str, Any]) -> Any:
    return api.post("/api/v1/events", json={"events": list(events)})


def _bad(mutate: Any) -> dict[str, Any]:
    event = copy.deepcopy(_pinned()[0])
    mutate(event)
    return event


@pytest.mark.parametrize(("mutate", "named"), [
    (lambda e: e.update(kind="drive_exploded"), "unknown event kind 'drive_exploded'"),
    (lambda e: e.pop("kind"), "has no 'kind'"),
    (lambda e: e["data"]["evidence"].pop("lsblk"),
     "events.0.drive_attached.data.evidence.lsblk: Field required"),
    (lambda e: e["data"].update(sanitization_class="purge"),
     "events.0.drive_attached.data.sanitization_class: Extra inputs are not permitted"),
    (lambda e: e["data"].update(plan=_job_plan()),
     "events.0.drive_attached.data.plan: Extra inputs are not permitted"),
    (lambda e: e.update(id=""), "events.0.drive_attached.id"),
    (lambda e: e.update(v=3), "protocol version 3"),
    (lambda e: e.update(seq=2**64), "events.0.drive_attached.seq"),
    (lambda e: e["data"]["evidence"].update(tools=[e["data"]["evidence"]["tools"][0]] * 33),
     "events.0.drive_attached.data.evidence.tools"),
], ids=["unknown-kind", "no-kind", "missing-field", "unknown-field", "agent-plan", "no-id",
        "future-version", "seq-too-large", "too-many-tools"])
def test_a_malformed_event_is_refused_422_with_its_field_named(
        api: TestClient, mutate: Any, named: str) -> None:
    good = _pinned()[3]                          # a heartbeat: refused with the bad one
    resp = _send(api, good, _bad(mutate))
    assert resp.status_code == 422, resp.text
    assert named.replace("events.0", "events.1") in resp.json()["error"]
    assert _send(api, good).json()["results"][0]["outcome"] == "applied"


def test_the_pinned_events_are_answered_by_the_station(api: TestClient) -> None:
    """Every pinned event is read by the station: applied, or refused by the registry
    (job 7 is no job of this agent) but never refused as malformed."""
    resp = _send(api, *_pinned())
    assert resp.status_code == 200, resp.text
    outcomes = {r["id"]: r["outcome"] for r in resp.json()["results"]}
    assert outcomes["e1"] == outcomes["e2"] == outcomes["e3"] == outcomes["e4"] == "applied"
    assert {outcomes[f"e{i}"] for i in range(5, 12)} == {"refused"}


def test_a_spooled_event_that_does_not_fit_is_set_aside_not_sent(tmp_path: Path) -> None:
    """A spool edited by hand (or from an agent of another protocol) must not block
    the events behind it: the bad one is kept as .damaged for a person."""
    outbox = Outbox(tmp_path / "spool")
    first = outbox.put("heartbeat", {})
    bad = tmp_path / "spool" / f"{first['seq'] + 1:020d}-bad.event.json"
    bad.write_text(json.dumps({**_pinned()[1], "kind": "drive_exploded"}))
    outbox.put("heartbeat", {})
    assert [e["kind"] for e in outbox.pending()] == ["heartbeat", "heartbeat"]
    assert bad.with_suffix(".damaged").exists() and not bad.exists()


DEPLOYED = {"result": {"path": "/dev/sdb", "ok": True, "written_bytes": 4096, "ranges": 1,
                       "verify": "full", "verified_bytes": 4096, "mismatches": [],
                       "error": None, "write_seconds": 0.1, "verify_seconds": 0.1,
                       "sample_seed": None},
            "after": {"hostname": "pc-01"}}


@pytest.mark.parametrize(("change", "named"), [
    ({"after": ["grow"]}, "data.after: Input should be a valid dictionary"),
    ({"result": {**DEPLOYED["result"], "ok": "false"}},
     "data.result.ok: Input should be a valid boolean"),
    ({"result": {**DEPLOYED["result"], "mismatches": [[0, -1]]}},
     "data.result.mismatches.0.1: Input should be greater than or equal to 0"),
], ids=["after-not-a-dict", "ok-as-text", "negative-mismatch"])
def test_a_deployment_that_does_not_fit_is_refused_422(api: TestClient,
                                                        change: dict[str, Any],
                                                        named: str) -> None:
    event = {"id": "d1", "seq": 1, "at": "2026-12-06T09:00:00Z", "v": 2, "kind": "job_event",
             "data": {"job": 7, "kind": "deployment", "message": "written",
                      "data": {**DEPLOYED, **change}}}
    resp = _send(api, event)
    assert resp.status_code == 422, resp.text
    assert "not a deployment: " + named in resp.json()["error"]
    event["data"]["data"] = DEPLOYED
    assert _send(api, event).status_code == 200


def test_an_erasure_is_reported_with_a_report_that_reads(settings: Settings,
                                                         registry: Registry) -> None:
    """An erase job moved to erased without its report, or with one that is not an
    erase report, is refused: a certificate is made of that report."""
    station = Station(settings, registry, ServicePolicy(auto_erase="never",
                                                        auto_certify=False))
    agent_id = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="dock-1",
                                   host="bench")
    plan = ErasePlan.from_dict(_job_plan())
    ident = DriveIdentity(path="/dev/sdb", size=1 << 30, serial="S1", transport="sata")
    job = station.store.create_erase(ident, plan, agent_id=agent_id)
    owner = dataclasses.asdict(Owner.me())

    def move(target: str, report: dict[str, Any] | None, n: int) -> dict[str, Any]:
        (answer,) = station.receive(agent_id, ev.parse_events([{
            "id": f"m{n}", "seq": n, "at": "2026-12-06T09:00:00Z", "v": 2, "kind": "job_move",
            "data": {"job": job, "target": target, "report": report, "owner": owner}}]))
        return answer

    assert move("running", None, 1)["outcome"] == "applied"
    assert move("erased", {"outcome": "erased"}, 2)["outcome"] == "refused"
    assert station.store.get(job).state == "running"      # not readable: refused alone
    assert move("erased", None, 3)["detail"] == (
        f"Unfit: job {job}: an erasure is reported with its report")
    assert station.store.get(job).state == "failed"       # does not fit: the job fails


def test_the_events_a_station_refuses_as_malformed_are_set_aside_and_the_rest_go_on(
        api: TestClient, tmp_path: Path) -> None:
    """A station of another protocol version (here: an event edited after it was
    spooled) answers 422 naming the event: the agent sets that one aside and sends
    the others, instead of sending the same batch forever."""
    client = StationClient("http://station", Ed25519PrivateKey.generate())
    client._http = api                  # the test client, signing as the enrolled agent
    outbox = Outbox(tmp_path / "spool")
    outbox.put("heartbeat", {})
    outbox.put("heartbeat", {})
    first, second = outbox.pending()
    events = [first, {**second, "data": {"beat": 1}}]
    with pytest.raises(StationRefused) as refused:
        client.send(events)
    assert refused.value.status == 422 and refused.value.bad_events == (1,)
    outbox.refused([events[i]["id"] for i in refused.value.bad_events], str(refused.value))
    assert [e["id"] for e in outbox.pending()] == [first["id"]]
    assert outbox.set_aside == 1 and len(list((tmp_path / "spool").glob("*.damaged"))) == 1
    assert [a["outcome"] for a in client.send(outbox.pending())] == ["applied"]
