"""An imager USB stick that comes back is synced without a command, and is never
taken for a drive to erase.

A real stick image (`imager boot usb` onto a loop device over a sparse file,
then the real offline agent erasing a lab drive into its spool, as on a laptop)
is plugged in again as a loop device (partition scan on) while a real dock
agent (`imager agent run`) watches real kernel udev events for a real station
(`imager serve --auto-erase always`, which would erase any drive offered to
it): the stick is never reported as a drive (no drive, no job on it), its
spool is sent as the laptop's agent once a technician approved that agent, the
station certifies the erasure, the events move to spool/sent/ on the stick and
the dock agent's record says what happened in plain French; a second plug
sends nothing. With its station unreachable the stick keeps its spool. The
guard refuses to erase an imager stick, even asked by a person, with the fix.

The dock agent runs with --only-lab and the stick's image labelled as a lab
device of its data dir: other loop devices of this machine (other tests') are
left alone, sticks included. Needs root and what tests/test_boot_usb.py needs
to write a stick (no QEMU boot here)."""

from __future__ import annotations

import json
import random
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from clirun import imager, spawn
from conftest import need, need_root
from station_proc import Console, Serve, free_port, until
from test_agent_offline_erase import _erase_offline
from usb_stick import standin_live, stick

from imager.agent.agent import Agent, AgentConfig
from imager.boot import usb, usb_data
from imager.certify.keys import station_keys
from imager.cli import boot_usb
from imager.erase import guard
from imager.errors import RefusedDevice
from imager.host import stick_data
from imager.host.devices import DeviceFacts
from imager.host.udev import BlockEvent
from imager.host.virtual import made_up_label, write_label
from imager.settings import Settings

GiB = 1 << 30


# -- the guard's decision (no root) ------------------------------------------------------

def test_the_guard_refuses_an_imager_stick_but_lets_the_stick_writer_rewrite_it() -> None:
    facts = DeviceFacts(path="/dev/sdc", exists=True, is_block=True, sysname="sdc",
                        disk="sdc", imager_stick="sdc3")
    (reason,) = guard.refusals(facts)
    assert reason.startswith("/dev/sdc est une clé imager (partition IMAGER-DATA sdc3)")
    assert "`imager boot usb-sync /dev/sdc --station URL`" in reason
    assert "`imager boot usb /dev/sdc`" in reason and "is never erased" in reason
    assert guard.refusals(facts, stick_writer=True) == []
    plain = DeviceFacts(path="/dev/sdc", exists=True, is_block=True, sysname="sdc", disk="sdc")
    assert guard.refusals(plain) == []


# -- a real stick --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def station_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The station that writes the stick (its keys sign the kit) and later receives it."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("station") / "data")
    station_keys(settings)
    return settings


@pytest.fixture(scope="module")
def pending_stick(station_settings: Settings,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stick image whose spool holds one real offline erasure not yet sent."""
    need_root()
    lacking = usb.missing_tools()
    need(not lacking, f"writing a stick needs: {', '.join(lacking)} (scripts/install)")
    folder = tmp_path_factory.mktemp("stick")
    live = usb.StickFiles.in_folder(standin_live(folder / "live")).check()
    started = time.monotonic()
    with stick(folder, GiB) as (dev, image):
        usb.write_stick(dev, live, boot_usb.stick_content(station_settings, None),
                        station_settings, allow_loop=True)
        written = time.monotonic() - started
        mnt = folder / "data"
        mnt.mkdir()
        subprocess.run(["mount", f"{dev}p3", str(mnt)], check=True)
        try:
            _erase_offline(folder / "laptop", mnt / usb_data.KIT, mnt / usb_data.SPOOL)
            assert len(usb_data.pending(mnt / usb_data.SPOOL)) == 1
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    print(f"\nstick written in {written:.1f} s, erased offline into its spool in "
          f"{time.monotonic() - started - written:.1f} s")
    return image


def _copy(image: Path, folder: Path) -> Path:
    """A fresh copy of the stick (sparse), for one test."""
    copy = folder / "stick-copy.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(copy)], check=True)
    return copy


@contextmanager
def plugged(image: Path, *, read_only: bool = False) -> Iterator[str]:
    """The stick plugged in: a loop device with partition scanning, as the kernel
    shows a USB stick; unplugged after, whatever happened."""
    ro = ["--read-only"] if read_only else []
    dev = subprocess.run(["losetup", "--find", "--show", "--partscan", *ro, str(image)],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        # the kernel's own scan does not work everywhere (tests/test_boot_usb.py)
        subprocess.run(["partx", "--update", dev], capture_output=True)
        yield dev
    finally:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            if line.startswith(f"{dev}p"):
                subprocess.run(["umount", "--lazy", line.split()[1]], capture_output=True)
        subprocess.run(["partx", "--delete", dev], capture_output=True)
        subprocess.run(["losetup", "--detach", dev], capture_output=True)


@contextmanager
def spool_of(image: Path, folder: Path) -> Iterator[Path]:
    """The stick's spool, read-only through a loop of its own (a dock agent
    running sees a stick plugged in write-protected, and leaves it)."""
    with plugged(image, read_only=True) as dev:
        until(lambda: Path(f"{dev}p3").exists(), 10, "the data partition appears")
        mnt = folder / f"look-{time.monotonic_ns()}"
        mnt.mkdir()
        subprocess.run(["mount", "-o", "ro", f"{dev}p3", str(mnt)], check=True)
        try:
            yield mnt / usb_data.SPOOL
        finally:
            subprocess.run(["umount", str(mnt)], check=False)


class DockAgent:
    """`imager agent run --station URL --only-lab` in its own data dir, with the
    stick's image labelled as one of its lab devices."""

    def __init__(self, folder: Path, station: str, stick_image: Path) -> None:
        self.data = folder / "dock"
        self.label = made_up_label(random.Random(str(stick_image)))
        write_label(Settings(data_dir=self.data), stick_image, self.label)
        self.status = folder / "dock-status.json"
        self.proc = spawn(self.data, "agent", "run", "--station", station, "--only-lab",
                          "--name", "docks", "--status-file", str(self.status))
        assert self.proc.stderr is not None
        self.log = Console(self.proc.stderr)

    def said(self, pattern: str, seconds: float = 60) -> str:
        found = until(lambda: self.log.search(pattern), seconds,
                      f"the dock agent logs {pattern!r} (it logged: {self.log.lines[-20:]})")
        return str(found.string)

    def spooled(self, kind: str) -> list[dict[str, Any]]:
        spool = self.data / "spool" / "docks"
        return [e for e in (json.loads(p.read_text()) for p in spool.glob("*.event.json"))
                if e["kind"] == kind]

    def close(self) -> None:
        print("\ndock agent's log:\n  " + "\n  ".join(self.log.lines[-40:]))
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _kinds_from(station: Serve, agent: str) -> set[str]:
    """The kinds of the events the station received from the agent called `agent`."""
    with closing(sqlite3.connect(station.data / "registry.sqlite3")) as db:
        return {k for (k,) in db.execute(
            "SELECT e.kind FROM agent_events e JOIN agents a ON a.id = e.agent_id "
            "WHERE a.name = ?", (agent,))}


def _stick_said(station: Serve) -> dict[str, Any] | None:
    """What the dock agent's record says of the last stick it saw."""
    listed = json.loads(imager(station.data, "agents", "list", "--json").stdout)
    docks = next(a for a in listed if a["name"] == "docks")
    said: dict[str, Any] | None = docks.get("stick")
    return said


@pytest.mark.root
def test_a_stick_plugged_in_is_synced_by_the_dock_agent_never_offered_as_a_drive(
        pending_stick: Path, station_settings: Settings, tmp_path: Path) -> None:
    image = _copy(pending_stick, tmp_path)
    station = Serve(station_settings.data_dir, "--no-local-agent", "--auto-erase", "always")
    agent = None
    try:
        station.start()
        agent = DockAgent(tmp_path, station.url, image)
        station.approve("docks")
        agent.said("enrolled with")
        with plugged(image) as dev:
            plugged_at = time.monotonic()
            until(lambda: (s := _stick_said(station)) and s["outcome"] == "waiting", 60,
                  "the board is told the laptop's agent waits for a technician")
            waiting = _stick_said(station)
            assert waiting is not None
            assert waiting["text"].startswith("Clé imager branchée : ses rapports attendent")
            assert waiting["agent"] == "live-usb" and waiting["path"] == dev
            station.approve("live-usb")
            approved_at = time.monotonic()
            until(lambda: (s := _stick_said(station)) and s["outcome"] == "sent", 60,
                  "the stick's reports are sent by themselves once its agent is approved")
            synced_in = time.monotonic() - approved_at
            said = _stick_said(station)
            assert said is not None
            assert said["text"] == ("Clé imager branchée : 1 rapport envoyé. Vous pouvez la "
                                    "débrancher.")
            assert (said["pending"], said["sent"], said["left"]) == (1, 1, 0)
            until(lambda: [d for d in station.get("/api/v1/drives")
                           if d["state"] == "certified"], 60, "the erasure is certified")
            print(f"\nplugged in to waiting: {approved_at - plugged_at:.1f} s; approved to "
                  f"sent: {synced_in:.1f} s")
            # the stick is no drive of the station's, and has no job: only the laptop's
            # drive erased offline (its job made at the sync) is there
            drives, jobs = station.get("/api/v1/drives"), station.get("/api/v1/jobs")
            assert len(drives) == 1 and [j["kind"] for j in jobs] == ["erase"]
            seen = json.dumps([drives, jobs])
            assert agent.label["serial"] not in seen and agent.label["wwn"][2:] not in seen
            assert str(image) not in seen
            assert _kinds_from(station, "docks") <= {"stick_seen", "heartbeat"}
        (record,) = [json.loads(p.read_text())["document"]
                     for p in (station.data / "documents").glob("EFF-*.json")]
        assert record["agent"]["name"] == "live-usb" and record["agent"]["boot"] == "usb"
        until(lambda: agent is not None and agent.log.search("imager stick .* unplugged"), 30,
              "the dock agent sees the stick go")
        with spool_of(image, tmp_path) as spool:
            assert usb_data.pending(spool) == []
            assert [json.loads(p.read_text())["kind"] for p in usb_data.sent(spool)] == [
                "offline_erasure"]
        until(lambda: (s := _stick_said(station)) and s["outcome"] == "read_only", 30,
              "the board is told a write-protected stick is left alone")
        with plugged(image):                                        # a second plug
            until(lambda: (s := _stick_said(station)) and s["outcome"] == "nothing", 60,
                  "the board is told about the second plug")
            again = _stick_said(station)
            assert again is not None
            assert again["text"] == "Clé imager branchée : rien à envoyer (1 rapport envoyé avant)."
        assert len(list((station.data / "documents").glob("EFF-*.json"))) == 1
        assert [j["kind"] for j in station.get("/api/v1/jobs")] == ["erase"]
    finally:
        if agent is not None:
            agent.close()
        station.close()


@pytest.mark.root
def test_a_stick_whose_station_does_not_answer_keeps_its_spool(
        pending_stick: Path, tmp_path: Path) -> None:
    image = _copy(pending_stick, tmp_path)
    with spool_of(image, tmp_path) as spool:
        before = usb_data.digest(spool)
    agent = DockAgent(tmp_path, f"http://127.0.0.1:{free_port()}", image)  # nobody listens
    try:
        with plugged(image):
            line = agent.said(r"Imager stick plugged in, not synced: station .* unreachable")
            assert "The reports stay on the stick" in line
            (told,) = until(lambda: agent.spooled("stick_seen"), 30,
                            "the dock agent keeps what to tell the station")
            assert told["data"]["outcome"] == "unreachable"
            assert told["data"]["text"].startswith("Clé imager branchée : la station ne "
                                                   "répond pas. Les rapports restent sur la clé.")
            assert agent.proc.poll() is None
    finally:
        agent.close()
    with spool_of(image, tmp_path) as spool:
        assert usb_data.digest(spool) == before
        assert len(usb_data.pending(spool)) == 1 and usb_data.sent(spool) == []


@pytest.mark.root
def test_the_guard_refuses_to_erase_an_imager_stick_even_asked(
        pending_stick: Path, station_settings: Settings, tmp_path: Path) -> None:
    image = _copy(pending_stick, tmp_path)
    with open(image, "rb") as fh:
        assert stick_data.data_partition_number(fh.fileno()) == 3
    with plugged(image) as dev:
        name = dev.removeprefix("/dev/")
        assert stick_data.recognise(dev, station_settings) == f"{name}p3"
        with pytest.raises(RefusedDevice, match=r"imager boot usb-sync"):
            guard.check(dev, station_settings)
        asked = imager(tmp_path / "data", "erase", dev, "--verify", "none", check=False)
        assert asked.returncode != 0
        assert f"{dev} est une clé imager" in asked.stderr, asked.stderr
        assert f"imager boot usb {dev}" in asked.stderr
        usb.check_stick(dev, station_settings, allow_loop=True)   # the writer may rewrite it
    with spool_of(image, tmp_path) as spool:
        assert len(usb_data.pending(spool)) == 1


# -- recognised from the disk itself; what each agent does (no root) ------------------------

def _gpt_image(folder: Path, *, name: str) -> Path:
    """A sparse disk image with the stick's partition table (sgdisk), no filesystem."""
    image = folder / "table.img"
    with open(image, "wb") as fh:
        fh.truncate(64 << 20)
    subprocess.run(["sgdisk", "--new=1:2048:+8M", "--change-name=1:EFI system",
                    "--new=3:0:0", f"--change-name=3:{name}", str(image)],
                   check=True, capture_output=True)
    return image


def test_a_stick_is_recognised_by_its_partition_name_even_with_no_filesystem(
        tmp_path: Path) -> None:
    need(bool(shutil.which("sgdisk")), "needs sgdisk (gdisk)")
    with open(_gpt_image(tmp_path, name="IMAGER-DATA"), "rb") as fh:
        assert stick_data.data_partition_number(fh.fileno()) == 3
    with open(_gpt_image(tmp_path, name="Linux data"), "rb") as fh:
        assert stick_data.data_partition_number(fh.fileno()) is None
    with open(tmp_path / "blank.img", "wb") as fh:
        fh.truncate(1 << 20)
    with open(tmp_path / "blank.img", "rb") as fh:
        assert stick_data.data_partition_number(fh.fileno()) is None


@pytest.mark.parametrize("kind", ["dock", "machine"])
def test_no_agent_offers_a_stick_a_dock_agent_without_station_says_how_to_sync_it(
        tmp_path: Path, kind: str) -> None:
    need(bool(shutil.which("sgdisk")), "needs sgdisk (gdisk)")
    image = _gpt_image(tmp_path, name="IMAGER-DATA")
    settings = Settings(data_dir=tmp_path / "data")
    agent = Agent(settings, AgentConfig(name="a", spool=tmp_path / "spool", kind=kind,
                                        watch=False))
    agent._seen(BlockEvent("sdz", str(image), True, "add"), threading.Event())
    assert agent.present == {} and "sdz" in agent.sticks.present
    told = [e for e in agent.outbox.pending() if e["kind"] != "heartbeat"]
    if kind == "machine":        # a laptop's live system: its own boot stick, not told
        assert told == []
        return
    (event,) = told
    assert event["kind"] == "stick_seen" and event["data"]["outcome"] == "off"
    assert event["data"]["text"] == ("Clé imager branchée : ce poste n'envoie pas ses "
                                     f"rapports tout seul. Un responsable les envoie avec « "
                                     f"imager boot usb-sync {image} ».")
    agent._seen(BlockEvent("sdz", str(image), True, "change"), threading.Event())
    assert len(agent.outbox.pending()) == 1          # the same insertion: said once
    agent._seen(BlockEvent("sdz", str(image), False, "remove"), threading.Event())
    assert agent.sticks.present == {}
