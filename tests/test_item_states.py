"""Drive states follow jobs and documents; every step is an event (who, when, why)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import imager, json_lines
from sqlalchemy import text

from imager.errors import UsageError
from imager.model import DriveIdentity, ErasePlan
from imager.registry import items
from imager.registry.jobs import RegistryJobStore
from imager.settings import Settings
from imager.store.db import Registry, utcnow
from imager.store.models import Drive

MiB = 1 << 20
TECH = "Camille Martin"


def _drive(data: Path, ref: str) -> dict:
    return json.loads(imager(data, "drives", "show", ref, "--json").stdout)


def _moves(view: dict) -> list[tuple[str | None, str | None, str]]:
    return [(e["from"], e["to"], e["actor"]) for e in view["history"] if e["kind"] == "move"]


def _plan() -> ErasePlan:
    from imager.erase.plan import plan_for
    from imager.erase.policy import load
    from imager.inventory.capabilities import DriveCapabilities
    ident = DriveIdentity(path="/dev/x", size=MiB)
    return plan_for(DriveCapabilities(identity=ident, medium="unknown", transport="loop"),
                    load(None), method="nist-clear")


@pytest.mark.root
def test_erase_and_certificate_move_the_drive(tmp_path: Path,
                                              loopdev: Callable[..., str]) -> None:
    data = tmp_path / "station"
    imager(data, "technicians", "add", TECH)
    dev = loopdev(8 * MiB)
    with open(dev, "r+b") as fh:
        fh.write(os.urandom(MiB))
    report = json_lines(imager(data, "erase", dev, "--technician", TECH, "--json").stdout)[-1]
    view = _drive(data, "1")
    assert view["state"] == "erased" and view["job"]["state"] == "erased"
    assert _moves(view) == [("inventoried", "erasing", TECH), ("erasing", "erased", TECH)]
    assert view["history"][0]["kind"] == "registered"
    assert all(e["job"] == report["job_id"] for e in view["history"][1:])
    imager(data, "cert", "issue", str(report["job_id"]))
    view = _drive(data, "1")
    assert view["state"] == "certified"
    assert view["history"][-1]["data"]["document"].startswith("EFF-")
    # by hand: ready, then handed over; after that, no more erasure
    imager(data, "drives", "move", "1", "ready", "--why", "contrôlé", "--technician", TECH)
    imager(data, "drives", "move", "1", "handed_over", "--why", "remis à Mme B.",
           "--technician", TECH)
    out = imager(data, "erase", dev, "--json", check=False)
    assert out.returncode == 2 and "may not be erased" in out.stderr
    assert _drive(data, "1")["state"] == "handed_over"
    out = imager(data, "drives", "move", "1", "to_parts", "--why", "x", "--technician", TECH,
                 check=False)
    assert out.returncode == 2 and "legal moves: none" in out.stderr


@pytest.mark.root
def test_failed_erasure_is_a_state_with_a_next_step(
        tmp_path: Path, faultdisk: Callable[..., object]) -> None:
    data = tmp_path / "station"
    imager(data, "technicians", "add", TECH)
    disk = faultdisk(16 * MiB, [(8 * MiB, 4096)])
    report = json_lines(imager(data, "erase", disk.device, "--technician", TECH, "--json",
                               check=False).stdout)[-1]
    assert report["outcome"] == "failed"
    view = _drive(data, "1")
    assert view["state"] == "erase_failed"
    assert "destruction" in view["next_step"]["en"]
    last = view["history"][-1]
    assert last["to"] == "erase_failed" and last["reason"] == report["reason"]
    assert last["data"]["next_step"]["fr"]
    imager(data, "cert", "issue", str(report["job_id"]))
    assert _drive(data, "1")["state"] == "to_destroy"
    out = imager(data, "erase", disk.device, "--json", check=False)
    assert out.returncode == 2 and "may not be erased" in out.stderr
    imager(data, "cert", "destroy", "1", "--technique", "shred", "--witness", "M. Roux",
           "--technician", TECH)
    view = _drive(data, "1")
    assert view["state"] == "destroyed"
    assert [m[:2] for m in _moves(view)][-2:] == [("erase_failed", "to_destroy"),
                                                  ("to_destroy", "destroyed")]


def test_interrupted_jobs_keep_the_drive_erasing_and_conflicts_are_kept(
        registry: Registry) -> None:
    store = RegistryJobStore(registry)
    plan = _plan()
    ident = DriveIdentity(path="/dev/none", size=MiB, serial="S1", model="M")
    job = store.create_erase(ident, plan)
    store.move(job, "running")
    store.move(job, "interrupted", reason="power cut")
    with registry.session(readonly=True) as s:
        drive = items.find_drive(s, "S1")
        assert drive.state == "erasing"
        assert [e.kind for e in items.history(s, drive)][-1] == "interrupted"
    store.move(job, "running")
    # someone sent the drive to destruction by hand while it was erasing:
    # the job's end is still recorded, as a conflict for a person to see
    with registry.session() as s:
        drive = items.find_drive(s, "S1")
        drive.state = "to_destroy"
    store.move(job, "erased")
    with registry.session(readonly=True) as s:
        drive = items.find_drive(s, "S1")
        last = items.history(s, drive)[-1]
        assert drive.state == "to_destroy" and last.kind == "conflict"
        assert last.data["wanted"] == "erased" and "cannot become erased" in last.reason


def test_a_drive_typed_in_at_intake_is_inventoried_by_its_first_probe(
        registry: Registry) -> None:
    with registry.session() as s:
        s.add(Drive(identity="serial:M:S2", serial="S2", model="M", size_bytes=MiB,
                    state="received", created_at=utcnow()))
    RegistryJobStore(registry).create_erase(DriveIdentity(path="/dev/x", size=MiB, serial="S2",
                                                  model="M"), _plan())
    with registry.session(readonly=True) as s:
        drive = items.find_drive(s, "S2")
        assert drive.state == "inventoried"
        assert [(e.from_state, e.to_state) for e in items.history(s, drive)] == [
            ("received", "inventoried")]


def test_migration_gives_existing_drives_the_state_of_their_documents(
        settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True)
    reg = Registry(settings.database_url)
    try:
        reg.upgrade("0003")
        with reg.engine.begin() as conn:
            for i, job_state in enumerate(("erased", "failed", "erased", "running"), 1):
                conn.execute(text(
                    "INSERT INTO drives (id, identity, size_bytes, rotational, created_at) "
                    "VALUES (:i, :k, 1, 0, '2026-01-01')"), {"i": i, "k": f"serial::{i}"})
                conn.execute(text(
                    "INSERT INTO jobs (id, kind, state, drive_id, device_path, plan, "
                    "created_at) VALUES (:i, 'erase', :s, :i, '/dev/x', '{}', '2026-01-01')"),
                    {"i": i, "s": job_state})
            conn.execute(text(
                "INSERT INTO documents (id, kind, drive_id, job_id, issued_at, json_sha256) "
                "VALUES ('EFF-1', 'erasure', 3, 3, '2026-01-02', 'x')"))
        reg.upgrade()
        with reg.engine.connect() as conn:
            states = dict(conn.execute(text("SELECT id, state FROM drives")).all())
        assert states == {1: "erased", 2: "erase_failed", 3: "certified", 4: "erasing"}
    finally:
        reg.close()


def test_erasing_is_refused_from_final_states(registry: Registry) -> None:
    for state in ("to_destroy", "destroyed", "handed_over", "to_recycling"):
        with pytest.raises(UsageError, match="may not be erased"):
            items.check_can_erase(Drive(id=1, identity="x", state=state))
