"""What a resume may trust, and what reconcile does with dead owners."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from imager.erase.engine import ResumePoint
from imager.erase.overwrite import write_pass
from imager.erase.patterns import Repeating
from imager.erase.progress import NullSink
from imager.errors import DeviceError
from imager.host.blockdev import open_device
from imager.jobs.erase import check_identity, choose_start
from imager.model import DriveIdentity, ErasePlan, Extent, MethodStep, PassSpec
from imager.protocol.jobs import JobView
from imager.registry.jobs import RegistryJobStore
from imager.store.db import Registry
from imager.store.models import Job

PLAN = ErasePlan(steps=(MethodStep("nist-clear", passes=(PassSpec("zero"),)),), verify="full")
CHECKPOINT = {"index": 0, "offset": 4096, "seconds": 1.5, "done": [],
              "errors": [{"offset": 0, "length": 512, "error": "Input/output error"}]}


def _job(identity: str, size: int, checkpoint: dict | None = CHECKPOINT) -> JobView:
    return JobView(id=7, kind="erase", state="interrupted", device_path="/dev/sdz",
                   drive_identity=identity, drive_size=size, plan=PLAN,
                   checkpoint=checkpoint, report=None, reason=None, donation=None,
                   technician=None, created_at=datetime.now(UTC), started_at=None,
                   ended_at=None)


def test_a_drive_with_a_serial_resumes_from_its_checkpoint() -> None:
    ident = DriveIdentity(path="/dev/sdz", size=1 << 20, model="M", serial="S1")
    job = _job(ident.key, ident.size)
    check_identity(job, ident)
    start = choose_start(job, ident, explicit_device=False)
    assert (start.index, start.offset, start.seconds) == (0, 4096, 1.5)
    assert start.errors == (Extent(0, 512, "Input/output error"),)


def test_same_serial_but_another_size_is_another_drive() -> None:
    ident = DriveIdentity(path="/dev/sdz", size=1 << 20, model="M", serial="S1")
    with pytest.raises(DeviceError, match="is not the drive of job 7"):
        check_identity(_job(ident.key, 2 << 20), ident)


def test_a_drive_without_serial_never_resumes_from_a_checkpoint() -> None:
    anon = DriveIdentity(path="/dev/sdz", size=1 << 20)
    assert not anon.provable and anon.key == "path:/dev/sdz"
    job = _job(anon.key, anon.size)
    with pytest.raises(DeviceError, match="cannot prove .* --device PATH"):
        choose_start(job, anon, explicit_device=False)
    assert choose_start(job, anon, explicit_device=True) == ResumePoint()  # from zero
    assert choose_start(_job(anon.key, anon.size, None), anon,
                        explicit_device=False) == ResumePoint()  # first run: fine


def test_a_resumed_pass_reports_the_whole_pass(tmp_path: Path) -> None:
    img = tmp_path / "d.img"
    img.write_bytes(b"\xaa" * (1 << 20))
    prior = (Extent(0, 16384, "Input/output error"),)
    with open_device(str(img), write=True) as dev:
        res = write_pass(dev, Repeating(b"\0"), index=0, pattern="zero", sink=NullSink(),
                         start=1 << 19, prior_errors=prior, prior_seconds=2.0)
        end = write_pass(dev, Repeating(b"\0"), index=0, pattern="zero", sink=NullSink(),
                         start=1 << 20, prior_seconds=2.0)
    assert res.bytes_written == (1 << 20) - 16384 and res.failed_extents == prior
    assert res.seconds >= 2.0
    assert end.bytes_written == 1 << 20  # resumed exactly at the end: nothing lost


def test_reconcile_fails_queued_jobs_of_a_dead_creator(registry: Registry) -> None:
    store = RegistryJobStore(registry)
    ident = DriveIdentity(path="/dev/sdz", size=1 << 20, serial="S1")
    queued, running = store.create_erase(ident, PLAN), store.create_erase(ident, PLAN)
    store.move(running, "running")
    assert store.reconcile() == []  # this process is alive: nothing to do
    with registry.session() as s:
        for jid in (queued, running):
            s.get(Job, jid).owner_pid = 2**22 + 1  # a pid that does not exist
    assert sorted(store.reconcile()) == [queued, running]
    assert store.get(queued).state == "failed" and "never started" in (
        store.get(queued).reason or "")
    assert store.get(running).state == "interrupted"
    kinds = [e.kind for e in store.get(running, with_events=True).events]
    assert kinds == ["created", "running", "interrupted"]
