"""Detection with real udev events (kernel netlink) on loop devices: a drive
attached is registered by its identity, a drive detached is marked gone, a
drive pulled out mid-erase fails its job ("drive removed"), and a drive
plugged in again, in another "dock", is recognised as the same drive."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from conftest import need_root
from station_proc import free_port, until

from imager.agent.agent import Agent, AgentConfig
from imager.host.virtual import made_up_label, write_label
from imager.protocol.proof import public_hex
from imager.registry import items
from imager.settings import Settings
from imager.station.api import create_app
from imager.station.service import ServicePolicy, Station
from imager.store.db import Registry
from imager.store.models import Drive, Job

pytestmark = pytest.mark.root
MiB = 1 << 20


class Bench:
    """An in-process station (API on loopback) and its dock agent."""

    def __init__(self, settings: Settings, auto_erase: str) -> None:
        self.settings = settings
        self.registry = Registry.open(settings)
        self.station = Station(settings, self.registry,
                               ServicePolicy(auto_erase=auto_erase, auto_certify=False))
        self.station.start()
        port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(create_app(self.station), port=port,
                                                    log_level="warning"))
        threading.Thread(target=self.server.run, daemon=True).start()
        until(lambda: self.server.started, 30, "the API is up")
        self.stop = threading.Event()
        self.agent = Agent(settings, AgentConfig(
            name="docks", spool=settings.data_dir / "spool", station=f"http://127.0.0.1:{port}",
            only_lab=True))
        self.station.enrol_local(public_hex(self.agent.key), name="docks", host="bench")
        self.agent.start(self.stop)
        until(self.agent.watching.is_set, 30, "the agent watches")

    def drive(self, serial: str) -> dict[str, Any] | None:
        with self.registry.session(readonly=True) as s:
            d = s.query(Drive).filter_by(serial=serial).one_or_none()
            return items.drive_summary(s, d, with_history=True) if d else None

    def close(self) -> None:
        self.stop.set()
        self.agent.join(30)
        self.server.should_exit = True
        self.station.stop()
        self.registry.close()


@pytest.fixture
def bench(settings: Settings) -> Iterator[Callable[[str], Bench]]:
    need_root()
    made: list[Bench] = []

    def make(auto_erase: str, **changes: Any) -> Bench:
        made.append(Bench(dataclasses.replace(settings, **changes), auto_erase))
        return made[-1]

    try:
        yield make
    finally:
        for b in made:
            b.close()


def _label(settings: Settings, *images: Path) -> dict[str, Any]:
    label = made_up_label(random.Random(str(images[0])))
    for image in images:
        write_label(settings, image, label)
    return label


def _detach(dev: str) -> None:
    subprocess.run(["losetup", "-d", dev], check=True)


def test_attach_detach_and_replug_elsewhere_keep_the_identity(
        bench: Callable[[str], Bench], settings: Settings, tmp_path: Path,
        loopdev: Callable[..., str]) -> None:
    image = tmp_path / "donated.img"
    image.write_bytes(b"")
    with open(image, "r+b") as fh:
        fh.truncate(16 * MiB)
    label = _label(settings, image)
    b = bench("never")
    dev = loopdev(0, backing=image)
    first = until(lambda: (d := b.drive(label["serial"])) and d["present"] and d, 30,
                  "the attached drive is registered")
    assert first["identity"] == f"wwn:{label['wwn']}" and first["path"] == dev
    assert first["state"] == "inventoried" and first["model"] == label["model"]
    _detach(dev)
    until(lambda: not b.drive(label["serial"])["present"], 30, "the drive is marked gone")
    filler = tmp_path / "filler.img"      # takes the old device name: another dock
    filler.write_bytes(bytes(MiB))
    loopdev(0, backing=filler)
    other = loopdev(0, backing=image)
    again = until(lambda: (d := b.drive(label["serial"])) and d["present"] and d, 30,
                  "the drive is back")
    assert again["id"] == first["id"] and again["path"] == other != dev
    kinds = [e["kind"] for e in again["history"]]
    assert kinds == ["registered", "plugged_in", "unplugged", "plugged_in"]


def test_a_drive_pulled_out_mid_erase_fails_its_job(
        bench: Callable[[str], Bench], settings: Settings,
        faultdisk: Callable[..., Any], loopdev: Callable[..., str]) -> None:
    # a slow drive (32 MiB/s), so the erasure is seen running and pulled mid-way: on a
    # fast machine, three passes at page-cache speed once ended in half a second, before
    # any checkpoint of theirs reached the station
    disk = faultdisk(256 * MiB, attach=False, write_rate=32 * MiB)
    label = _label(settings, disk.image, disk.backing)
    b = bench("always")
    dev = loopdev(0, backing=disk.image)

    def job() -> Job | None:
        with b.registry.session(readonly=True) as s:
            return s.query(Job).order_by(Job.id.desc()).first()

    try:
        until(lambda: (j := job()) and j.state == "running" and (j.checkpoint or {}).get(
            "offset", 0) > 0, 120, "the erasure runs")
    except AssertionError as exc:   # say what the station saw instead
        j = job()
        raise AssertionError(f"{exc}; job: {j and (j.state, j.reason, j.checkpoint)}; drive: "
                             f"{b.drive(label['serial'])}") from exc
    assert b.drive(label["serial"])["state"] == "erasing"
    disk.pull()                 # the drive stops answering...
    _detach(dev)                # ...and leaves its dock (the kernel detaches on close)
    ended = until(lambda: (j := job()) and j.state not in ("queued", "running") and j, 120,
                  "the job ends")
    assert ended.state == "failed" and "drive removed" in ended.reason
    view = until(lambda: (d := b.drive(label["serial"])) and not d["present"] and d, 30,
                 "the drive is marked gone")
    assert view["state"] == "erase_failed" and view["next_step"]
    # plugged in again (the data is still in the backing file): the same drive
    time.sleep(0.5)
    loopdev(0, backing=disk.backing)
    back = until(lambda: (d := b.drive(label["serial"])) and d["present"] and d, 30,
                 "the drive is back")
    assert back["id"] == view["id"] and back["state"] == "erase_failed"
    with b.registry.session(readonly=True) as s:   # no new job: a person decides
        assert s.query(Job).count() == 1


def test_a_drive_whose_identity_does_not_fit_the_protocol_does_not_stop_detection(
        bench: Callable[[str], Bench], settings: Settings, tmp_path: Path,
        loopdev: Callable[..., str]) -> None:
    """A drive reporting a 300-character model cannot be sent (the protocol refuses
    it); it is logged, and the drives plugged in after it are still detected."""
    odd, plain = tmp_path / "odd.img", tmp_path / "plain.img"
    for image in (odd, plain):
        with open(image, "wb") as fh:
            fh.truncate(16 * MiB)
    write_label(settings, odd, {**made_up_label(random.Random(1)), "model": "M" * 300})
    label = _label(settings, plain)
    b = bench("never")
    loopdev(0, backing=odd)
    loopdev(0, backing=plain)
    until(lambda: (d := b.drive(label["serial"])) and d["present"], 30,
          "the drive plugged in after the odd one is registered")
    assert any(t.name == "agent-watch" and t.is_alive() for t in threading.enumerate())
