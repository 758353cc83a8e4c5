"""A laptop booted from the station goes on by the station's policy: its drive is
erased (only when the laptop is tied to a donation), certified, receives the
policy's laptop image once its triage says reuse (confirmed by a person when the
policy asks it), and its live system is told to restart once its system is on
its drive; a laptop tied to no donation restarts once inventoried. In-process
station; the jobs' moves are made by hand where an agent would report them."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from clirun import env_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from evidence_maker import evidence
from station_proc import Serve, bare_station
from test_bmap import sample_raw

from imager.imaging.catalogue import Catalogue
from imager.imaging.create import create
from imager.protocol.events import parse_events
from imager.protocol.proof import public_hex
from imager.registry import deployments, items, machines
from imager.settings import Settings
from imager.station.policy import ServicePolicy
from imager.station.service import Station
from imager.store import people
from imager.store.db import Registry, utcnow
from imager.store.models import Document, Drive, Job, Machine

SERIAL = "6B0N3K2"


def _event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "at": "2026-12-06T09:00:00+00:00", "v": 2, "kind": kind,
            "data": data}


def _station(settings: Settings, registry: Registry, tmp_path: Path, *,
             confirm_triage: bool = True) -> Station:
    create(sample_raw(tmp_path / "sample.raw"), Catalogue.of(settings).root, name="bureau",
           version="1", level=1)
    return Station(settings, registry, ServicePolicy(
        auto_erase="known-donation", auto_certify=False, laptop_image="bureau",
        confirm_triage=confirm_triage))


def _boot_laptop(station: Station, *, tied: bool) -> int:
    """The laptop's live agent reports its inventory and its NVMe drive."""
    if tied:
        with station.registry.session() as s:
            people.add_donor(s, "société", "Alpes Conseil SARL")
            people.add_donation(s, "DON-1", "Alpes Conseil SARL", date(2026, 12, 1))
        station.intake("DON-1", drives=[], machines=[SERIAL], actor="Lina")
    agent = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="live-pxe",
                                kind="machine", host="laptop")
    events = [_event("machine_inventory", {"inventory": {"machine": {
                  "vendor": "Dell Inc.", "product": "Latitude 7490", "serial": SERIAL}}}),
              _event("drive_attached", {"evidence": evidence(
                  "/dev/nvme0n1", 256 << 30, serial="S4DXNF0M1", model="SAMSUNG MZVLB256",
                  transport="nvme")})]
    answers = station.receive(agent, parse_events(events))
    assert [a["outcome"] for a in answers] == ["applied", "applied"], answers
    return agent


def _jobs(station: Station, kind: str) -> list[Job]:
    with station.registry.session(readonly=True) as s:
        return list(s.query(Job).filter_by(kind=kind))


def _erased_and_certified(station: Station, job_id: int) -> None:
    """What the agent's reports and the certifier do, in short."""
    station.store.move(job_id, "running")
    station.store.move(job_id, "erased", reason="test")
    with station.registry.session() as s:
        drive = s.query(Drive).one()
        s.add(Document(id="EFF-TEST-1", kind="erasure", drive_id=drive.id, job_id=job_id,
                       issued_at=utcnow(), json_sha256="0" * 64))
        items.move(s, drive, "certified", actor="certifier", reason="test")


def _system_written(station: Station, job_id: int) -> None:
    station.store.move(job_id, "running")
    with station.registry.session() as s:
        job = s.get(Job, job_id)
        plan = job.plan
        info = deployments.ImageInfo(plan["name"], plan["version"], plan["sha256"],
                                     plan["image_size"], plan["mapped_bytes"])
        result = SimpleNamespace(ok=True, error=None, verify="full",
                                 verified_bytes=info.mapped_bytes, mismatches=[],
                                 written_bytes=info.mapped_bytes, ranges=3,
                                 write_seconds=1.0, verify_seconds=1.0)
        deployments.finish(s, job.drive_id, info, result, actor="agent live-pxe",
                           started_at=utcnow(), erasure_job_id=plan["erasure_job"],
                           after=None, hostname=plan["hostname"], job_id=job_id)
    station.store.move(job_id, "imaged", reason="test")


def test_a_laptop_of_a_donation_is_erased_imaged_once_reuse_is_confirmed_then_restarts(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    station = _station(settings, registry, tmp_path)
    agent = _boot_laptop(station, tied=True)
    (erase,) = _jobs(station, "erase")
    assert station.laptop_next(agent) is None
    _erased_and_certified(station, erase.id)
    assert station.jobs_for(agent) == [] and _jobs(station, "image") == []   # triage first
    with station.registry.session() as s:
        machine = s.query(Machine).one()
        machine.asset_tag = "RS05-0042"
        machines.orient(s, machine, "reuse", actor="Lina", why="checked at the bench")
    (view,) = station.jobs_for(agent)
    (image,) = _jobs(station, "image")
    assert view["id"] == image.id and image.agent_id == agent
    assert image.plan["name"] == "bureau" and image.plan["hostname"] == "poste-rs05-0042"
    assert image.plan["erasure_job"] == erase.id
    assert station.laptop_next(agent) is None                  # its system is being written
    _system_written(station, image.id)
    assert station.jobs_for(agent) == [] and len(_jobs(station, "image")) == 1
    assert station.laptop_next(agent) == "restart"


def test_without_confirmation_the_triage_proposal_is_enough(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    station = _station(settings, registry, tmp_path, confirm_triage=False)
    agent = _boot_laptop(station, tied=True)
    (erase,) = _jobs(station, "erase")
    _erased_and_certified(station, erase.id)
    assert station.jobs_for(agent) == []           # this inventory gives no complete triage
    with station.registry.session() as s:
        s.query(Machine).one().proposal = {"orientation": "reuse", "complete": True}
    assert len(station.jobs_for(agent)) == 1


def test_a_laptop_tied_to_no_donation_restarts_once_inventoried_untouched(
        settings: Settings, registry: Registry, tmp_path: Path) -> None:
    station = _station(settings, registry, tmp_path)
    agent = _boot_laptop(station, tied=False)
    assert station.jobs_for(agent) == [] and _jobs(station, "erase") == []
    assert station.laptop_next(agent) == "restart"


@pytest.mark.parametrize("kind", ["dock"])
def test_a_dock_agent_is_never_told_to_restart(settings: Settings, registry: Registry,
                                               kind: str) -> None:
    station = Station(settings, registry, ServicePolicy(auto_certify=False))
    agent = station.enrol_local(public_hex(Ed25519PrivateKey.generate()), name="dock-1",
                                kind=kind, host="bench")
    assert station.laptop_next(agent) is None


# -- over real processes: the live agent stops when the station says so ------------------

station_proc = pytest.fixture(name="station_proc")(bare_station)


def test_the_laptop_agent_exits_done_once_an_untied_laptop_is_inventoried(
        tmp_path: Path, station_proc: Serve) -> None:
    """A laptop tied to no donation boots the station: its agent, approved by a person,
    reports its inventory; the station tells it the laptop is done (inventory only);
    `imager agent run --machine` then exits with LAPTOP_DONE for the live system to
    restart it into its own disk."""
    from imager.cli.agent import LAPTOP_DONE
    station_proc.start()
    agent = subprocess.Popen(
        [sys.executable, "-m", "imager", "agent", "run", "--machine", "--no-watch",
         "--station", station_proc.url, "--name", "live-pxe", "--spool",
         str(tmp_path / "spool")], env=env_for(tmp_path / "laptop"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        station_proc.approve("live-pxe")
        out, _ = agent.communicate(timeout=120)
    finally:
        agent.kill()
    assert agent.returncode == LAPTOP_DONE, out
    assert "this laptop is done: it may restart" in out
    (machine,) = station_proc.get("/api/v1/machines")
    assert machine["state"] == "inventoried"
