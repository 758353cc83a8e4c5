"""A laptop erased from a USB stick with no network: the agent plans from the
station's signed policy (the offline kit), verifies in full, spools the report;
at sync the station checks the policy is its own, plans the drive again from
the evidence, and files and certifies the erasure only when the plans agree."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from clirun import imager
from conftest import need_root
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_maker import evidence
from station_proc import Serve, bare_station, until

from imager.agent.outbox import Outbox
from imager.agent.remote import RemoteJobStore
from imager.certify.keys import station_keys
from imager.erase import offline_policy
from imager.erase.plan import plan_for
from imager.erase.policy import SHIPPED
from imager.errors import UsageError
from imager.inventory.evidence import DriveEvidence, read
from imager.jobs.erase import run_erase
from imager.model import DriveIdentity
from imager.protocol import events as ev
from imager.protocol.jobs import JobView
from imager.protocol.proof import public_hex
from imager.settings import Settings
from imager.station.policy import ServicePolicy
from imager.station.service import Station
from imager.store.db import Registry
from imager.store.models import Job

MiB = 1 << 20
SUFFIX = ".event.json"


# -- over real processes: kit, offline erasure, sync -----------------------------------

station = pytest.fixture(name="station")(bare_station)


def _erase_offline(laptop: Path, kit: Path, stick: Path) -> None:
    """A laptop with one 32 MiB lab drive, erased by the offline agent from `kit`."""
    imager(laptop, "lab", "up", "--drives", "1", "--size-gib", str(32 / 1024))
    try:
        imager(laptop, "agent", "run", "--offline-kit", str(kit), "--erase", "--once",
               "--only-lab", "--boot", "usb", "--name", "live-usb", "--spool", str(stick))
    finally:
        imager(laptop, "lab", "down")


def test_a_laptop_erased_offline_is_certified_at_sync(tmp_path: Path, station: Serve) -> None:
    need_root()
    station.start()
    kit, stick, laptop = tmp_path / "usb" / "kit", tmp_path / "usb" / "spool", tmp_path / "pc"
    made = imager(station.data, "agent", "kit", str(kit))
    assert "imager agent run --offline-kit" in made.stdout
    _erase_offline(laptop, kit, stick)
    (spooled,) = [json.loads(p.read_text()) for p in stick.glob(f"*{SUFFIX}")]
    assert spooled["kind"] == "offline_erasure"
    report = spooled["data"]["report"]
    assert report["outcome"] == "erased" and report["verification"]["mode"] == "full"
    assert list((stick / "offline").iterdir()), "the job's trail stays on the stick"

    first = imager(station.data, "agent", "sync", "--station", station.url, "--spool",
                   str(stick), check=False)
    assert first.returncode == 2 and "waits for a technician" in first.stderr
    station.approve("live-usb")
    done = imager(station.data, "agent", "sync", "--station", station.url, "--spool",
                  str(stick))
    assert "applied 1," in done.stdout, done.stdout
    (job,) = station.get("/api/v1/jobs")
    assert job["state"] == "erased" and job["report"]["job_id"] == job["id"]
    until(lambda: [d for d in station.get("/api/v1/drives") if d["state"] == "certified"],
          60, "the drive is certified")
    (record,) = [json.loads(p.read_text())["document"]
                 for p in (station.data / "documents").glob("EFF-*.json")]
    assert record["agent"]["name"] == "live-usb" and record["agent"]["boot"] == "usb"
    assert record["sanitization"]["policy"] == report["plan"]["policy"]


def test_a_laptop_erased_offline_receives_the_kits_system_recorded_at_sync(
        tmp_path: Path, station: Serve) -> None:
    """The kit carries a signed catalogue image: each drive erased and verified offline
    receives it, read back in full; at sync the station files the erasure, then the
    deployment (its catalogue holds that image), and certifies the drive."""
    need_root()
    from test_image_after import build_image
    station.start()
    kit, stick, laptop = tmp_path / "usb" / "kit", tmp_path / "usb" / "spool", tmp_path / "pc"
    small = build_image(tmp_path, "label: gpt\nsize=2MiB, type=uefi\ntype=linux\n",
                        size=12 * MiB)
    imager(station.data, "image", "create", str(small), "--name", "lab", "--version", "1")
    unsigned = imager(station.data, "agent", "kit", str(kit), "--image", "lab", check=False)
    assert "imager image sign lab 1" in unsigned.stderr, unsigned.stderr
    imager(station.data, "image", "sign", "lab", "1")
    made = imager(station.data, "agent", "kit", str(kit), "--image", "lab")
    assert "lab-1.manifest.json" in made.stdout, made.stdout
    _erase_offline(laptop, kit, stick)
    spooled = sorted((json.loads(p.read_text()) for p in stick.glob(f"*{SUFFIX}")),
                     key=lambda e: e["seq"])
    assert [e["kind"] for e in spooled] == ["offline_erasure", "offline_deployment"]
    written = spooled[1]["data"]
    assert written["result"]["ok"] and written["result"]["verify"] == "full", written
    assert written["image"]["name"] == "lab" and "error" not in (written["after"] or {})
    first = imager(station.data, "agent", "sync", "--station", station.url, "--spool",
                   str(stick), check=False)
    assert first.returncode == 2
    station.approve("live-usb")
    done = imager(station.data, "agent", "sync", "--station", station.url, "--spool",
                  str(stick))
    assert "applied 2," in done.stdout, done.stdout
    until(lambda: [d for d in station.get("/api/v1/drives") if d["state"] == "certified"],
          60, "the drive is certified")
    with closing(sqlite3.connect(station.data / "registry.sqlite3")) as db:
        rows = db.execute("SELECT image_name, image_version, ok, verify, erasure_job_id, "
                          "actor FROM deployments").fetchall()
        (job,) = db.execute("SELECT id FROM jobs WHERE kind = 'erase'").fetchall()
    assert rows == [("lab", "1", 1, "full", job[0], "agent live-usb (hors ligne / offline)")]


# -- in the station: what is refused of an offline report -------------------------------

@dataclasses.dataclass
class Offline:
    station: Station
    agent: int
    data: dict[str, Any]        # a genuine offline_erasure's data

    def send(self, data: dict[str, Any], n: int = 1) -> dict[str, Any]:
        (answer,) = self.station.receive(self.agent, ev.parse_events([{
            "id": f"o{n}", "seq": n, "at": "2026-12-06T09:00:00Z", "v": 2,
            "kind": "offline_erasure", "data": data}]))
        return answer


@pytest.fixture
def offline(settings: Settings, registry: Registry, tmp_path: Path) -> Offline:
    """A virtio drive's evidence and a genuine report of the offline plan, carried out on
    a file of the same size (then named as the drive), with the station's own kit."""
    station = Station(settings, registry, ServicePolicy(auto_erase="never",
                                                        auto_certify=False))
    agent = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="live-usb",
                                host="pc")
    offline_policy.write_kit(tmp_path / "kit", SHIPPED.read_text(), station_keys(settings))
    kit = offline_policy.read_kit(tmp_path / "kit")
    proof = evidence("/dev/vdb", 8 * MiB, serial="VIRTIO-7", model="QEMU HARDDISK",
                     transport="virtio")
    caps = read(DriveEvidence.from_dict(proof), settings)
    plan = offline_policy.for_offline(plan_for(caps, kit.policy))
    disk = tmp_path / "vdb.img"
    with disk.open("wb") as fh:
        fh.truncate(8 * MiB)
    ident = DriveIdentity(path=str(disk), size=8 * MiB, transport="file",
                          backing_file=str(disk.resolve()))
    view = JobView(id=1, kind="erase", state="queued", device_path=str(disk),
                   drive_identity=ident.key, drive_size=ident.size, plan=plan, checkpoint=None,
                   report=None, reason=None, donation=None, technician=None,
                   created_at=datetime.now(UTC), started_at=None, ended_at=None)
    report = run_erase(RemoteJobStore(Outbox(tmp_path / "trail"), view), 1, settings,
                       stop=threading.Event(), allow_files=True).to_dict()
    report["device"] = dataclasses.asdict(caps.identity)
    return Offline(station, agent, {"evidence": proof, "policy": kit.signed, "report": report})


def test_the_genuine_offline_report_is_filed_as_a_job(offline: Offline,
                                                      registry: Registry) -> None:
    assert offline.send(offline.data)["outcome"] == "applied"
    with registry.session(readonly=True) as s:
        (job,) = s.query(Job).all()
        assert job.state == "erased" and job.agent_id == offline.agent
        assert job.report is not None and job.report["job_id"] == job.id


def _tampered_policy(data: dict[str, Any]) -> dict[str, Any]:
    signed = json.loads(data["policy"])
    signed["document"]["policy"] = signed["document"]["policy"].replace(
        "verify: full", "verify: sample")
    return {**data, "policy": json.dumps(signed)}


def _another_method(data: dict[str, Any]) -> dict[str, Any]:
    plan = data["report"]["plan"]
    step = {**plan["steps"][0], "method": "nist-clear-ones"}
    return {**data, "report": {**data["report"], "plan": {**plan, "steps": [step]}}}


def _class_raised(data: dict[str, Any]) -> dict[str, Any]:
    plan = data["report"]["plan"]
    step = {**plan["steps"][0], "sanitization_class": "purge"}
    return {**data, "report": {**data["report"], "plan": {**plan, "steps": [step]}}}


def _sampled(data: dict[str, Any]) -> dict[str, Any]:
    plan = data["report"]["plan"]
    return {**data, "report": {**data["report"], "plan": {**plan, "verify": "sample"}}}


def _other_drive(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "evidence": evidence("/dev/vdb", 8 * MiB, serial="VIRTIO-8",
                                         model="QEMU HARDDISK", transport="virtio")}


@pytest.mark.parametrize(("forge", "named"), [
    (_tampered_policy, "signed policy refused"),
    (_another_method, "the station plans"),
    (_class_raised, "the station plans"),
    (_sampled, "the station plans"),
    (_other_drive, "not the job's drive"),
], ids=["policy-altered", "another-method", "class-raised", "sampled-offline",
        "report-of-another-drive"])
def test_an_offline_report_the_station_would_not_plan_is_refused(
        offline: Offline, registry: Registry, forge: Any, named: str) -> None:
    answer = offline.send(forge(offline.data))
    assert answer["outcome"] == "refused" and named in answer["detail"], answer
    with registry.session(readonly=True) as s:
        assert s.query(Job).count() == 0


def test_a_kit_from_another_station_is_refused(tmp_path: Path, offline: Offline) -> None:
    other = Settings(data_dir=tmp_path / "elsewhere")
    offline_policy.write_kit(tmp_path / "kit2", SHIPPED.read_text(), station_keys(other))
    foreign = offline_policy.read_kit(tmp_path / "kit2")
    answer = offline.send({**offline.data, "policy": foreign.signed})
    assert answer["outcome"] == "refused" and "signed policy refused" in answer["detail"]


def test_an_altered_kit_is_refused_by_the_agent(tmp_path: Path, settings: Settings) -> None:
    offline_policy.write_kit(tmp_path / "kit", SHIPPED.read_text(), station_keys(settings))
    signed = tmp_path / "kit" / offline_policy.KIT_POLICY
    signed.write_text(signed.read_text().replace("verify: full", "verify: sample"))
    with pytest.raises(UsageError, match="signed policy refused"):
        offline_policy.read_kit(tmp_path / "kit")


def _written(offline: Offline, identity: str, sha256: str) -> dict[str, Any]:
    result = {"path": "/dev/vdb", "ok": True, "written_bytes": 4096, "ranges": 1,
              "verify": "full", "verified_bytes": 4096, "mismatches": [], "error": None,
              "write_seconds": 0.1, "verify_seconds": 0.1}
    return {"identity": identity, "image": {"name": "lab", "version": "1", "sha256": sha256},
            "result": result, "after": None}


def _deployment_answer(offline: Offline, data: dict[str, Any], n: int) -> dict[str, Any]:
    (answer,) = offline.station.receive(offline.agent, ev.parse_events([{
        "id": f"d{n}", "seq": 10 + n, "at": "2026-12-06T09:00:00Z", "v": 2,
        "kind": "offline_deployment", "data": data}]))
    return answer


def test_an_offline_deployment_needs_the_erasure_first_and_the_catalogues_image(
        offline: Offline, settings: Settings, registry: Registry, tmp_path: Path) -> None:
    from test_bmap import sample_raw

    from imager.imaging.catalogue import Catalogue
    from imager.imaging.create import create
    from imager.store.models import Deployment, Drive
    create(sample_raw(tmp_path / "sample.raw"), Catalogue.of(settings).root, name="lab",
           version="1", level=1)
    entry = Catalogue.of(settings).get("lab", "1")
    real = entry.manifest["image"]["sha256"]
    identity = "serial:QEMU HARDDISK:VIRTIO-7"
    before = _deployment_answer(offline, _written(offline, identity, real), 1)
    assert before["outcome"] == "refused" and "no offline erasure of it" in before["detail"]
    assert offline.send(offline.data)["outcome"] == "applied"
    other = _deployment_answer(offline, _written(offline, identity, "0" * 64), 2)
    assert other["outcome"] == "refused"
    assert "not the one in this station's catalogue" in other["detail"]
    assert _deployment_answer(offline, _written(offline, identity, real), 3
                              )["outcome"] == "applied"
    with registry.session(readonly=True) as s:
        (dep,) = s.query(Deployment).all()
        assert dep.ok and dep.image_name == "lab" and dep.erasure_job_id is not None
        assert s.query(Drive).one().state == "imaged"
