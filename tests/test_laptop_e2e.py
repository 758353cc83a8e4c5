"""Laptops from the bench network to their installed system, end to end, in QEMU (TCG).

One bench (network namespaces: a bridge, the "router" dnsmasq, the station's
namespace) and one real station for every laptop: `imager serve` (HTTPS with its
own CA, the `lab` image in its catalogue, `--laptop-image lab`) and `imager boot
serve` (proxy-DHCP, TFTP, HTTP) on the bench interface, the live system of this
code (`imager boot build`, cached) and the lab OS image (cached).

1. A laptop of a donation (its SMBIOS serial scanned at intake) under OVMF with
   Secure Boot and an NVMe drive holding marked donor data: shim -> GRUB -> the
   live system, enrolled with its boot token; a technician confirms its triage;
   its drive is erased (NVMe format under the kernel's lockdown), verified and
   certified, receives the lab image (downloaded over HTTPS, read back); the laptop
   restarts, the boot service answers `local`, and the lab system boots from the
   NVMe and reports its profile and version. From the host: no marker left.
2. An unknown laptop: the menu; a technician picks "Inventorier cet ordinateur";
   inventoried only, it restarts, the menu again and, untouched, its own disk
   after 10 s. Its disk is byte-identical before and after.
3. SeaBIOS and plain OVMF laptops of a donation: as far as "enrolled".

Figures are printed (pytest -s) and kept in the test's folder (figures.json);
screendumps of the laptop's screen at each stage are kept there too (and copied
into $IMAGER_SCREENSHOTS when set)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bootnet import LOCAL_MARKER, BenchNet, Laptop, clean_console, marker_disk
from bootnet import missing as bench_missing
from conftest import need
from laptop_e2e import (
    BenchStation,
    DonorDisk,
    LaptopRun,
    Timeline,
    console_text,
    donor_disk,
    live_line,
    scan,
    sha256,
    to_installed_system,
)
from os_image import lab_image
from os_image import missing as os_missing
from sqlalchemy import select

from imager.boot import guest, live, menus
from imager.certify.keys import station_keys
from imager.imaging.catalogue import images_dir
from imager.profile.build import BuiltImage
from imager.settings import Settings
from imager.store.models import (
    Agent,
    Deployment,
    Document,
    Drive,
    ItemEvent,
    Job,
    Machine,
)

pytestmark = pytest.mark.root
FIGURES: dict[str, Any] = {}
DONATION = "DON-E2E-1"
TECHNICIAN = "Lina Technicienne"
MEMORY_MIB = 2048                 # the live system's root is in RAM
ENROL_SECONDS = 900               # firmware to enrolled, TCG on a busy 2-core machine


@dataclass
class Bench:
    net: BenchNet
    station: BenchStation
    lab: BuiltImage
    system: live.LiveSystem
    work: Path

    def session(self) -> Any:
        return self.station.session()


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    need(os.geteuid() == 0, "the laptops' bench needs root (namespaces, taps, mmdebstrap)")
    lacking = bench_missing() + os_missing() + guest.missing_tools()
    need(not lacking, f"the laptops' bench needs: {', '.join(lacking)} (scripts/install)")
    started = time.monotonic()
    system = live.build()
    work = tmp_path_factory.mktemp("laptop-e2e")
    data = work / "data"
    settings = Settings(data_dir=data)
    lab = lab_image(catalogue=images_dir(settings), keys=station_keys(settings))
    FIGURES["live system and lab image ready, s"] = round(time.monotonic() - started, 1)
    with BenchNet(work / "net") as net:
        station = BenchStation(net, data, system.folder)
        try:
            started = time.monotonic()
            station.start("--laptop-image", "lab")
            FIGURES["station and boot service started, s"] = round(time.monotonic() - started, 1)
            station.cli("donors", "add", "--kind", "mairie", "Mairie de Briançon")
            station.cli("donations", "add", "--donor", "Mairie de Briançon", DONATION)
            station.cli("technicians", "add", TECHNICIAN)
            yield Bench(net, station, lab, system, work)
        finally:
            codes = station.stop()
            print(f"\nlaptops end to end, figures: {json.dumps(FIGURES, indent=1)}")
            (work / "figures.json").write_text(json.dumps(FIGURES, indent=2))
            assert codes == {"boot serve": 0, "serve": 0}, codes


def _intake(bench: Bench, serial: str) -> None:
    """The laptop's serial scanned at the donation's intake, as the CLI does it."""
    bench.station.cli("intake", "--machine", "--technician", TECHNICIAN, DONATION, serial)


def _shot(vm: Laptop, name: str, settle: float = 2.0) -> None:
    """The laptop's screen now (after `settle` seconds for it to be drawn), kept in
    its folder and copied into $IMAGER_SCREENSHOTS when set."""
    time.sleep(settle)
    png = vm.screendump(vm.dir / f"{name}.png")
    keep = os.environ.get("IMAGER_SCREENSHOTS")
    if keep:
        shutil.copyfile(png, Path(keep) / png.name)


# -- 1. a laptop of a donation, Secure Boot, from the network to its installed system -------

SB_SERIAL, SB_MAC = "PF2SBE2E01", "52:54:00:e2:e0:01"
# stage -> (screendump's name, seconds to let the screen be drawn first)
SHOTS = {"erasing": ("portable-effacement", 1.0), "imaging": ("portable-installation", 1.0),
         "done": ("portable-termine", 1.0), "installed": ("portable-systeme-installe", 5.0)}


@dataclass
class Flow:
    run: LaptopRun
    disk: DonorDisk
    markers_before: int
    console: str

    @property
    def report(self) -> dict[str, str]:
        assert self.run.report is not None
        return self.run.report


@pytest.fixture(scope="module")
def secureboot_flow(bench: Bench) -> Flow:
    _intake(bench, SB_SERIAL)
    disk = donor_disk(bench.work / "sb-nvme.img")
    markers_before = len(scan(disk.path, disk.prefix, chunk=1 << 20))
    vm = bench.net.laptop("t480-secureboot", firmware="secureboot", serial=SB_SERIAL,
                          mac=SB_MAC, disk=disk.path, memory_mib=MEMORY_MIB)
    timeline: dict[str, float] = {}
    try:
        run = to_installed_system(
            bench.station, vm, technician=TECHNICIAN, enrol_seconds=ENROL_SECONDS,
            why="écran, clavier et batterie vérifiés à l'établi", stages=timeline,
            shot=lambda stage: _shot(vm, *SHOTS[stage]))
        console = console_text(vm)
    finally:
        vm.stop()
        FIGURES["secureboot laptop, s after power-on"] = timeline
        print(f"\nsecureboot laptop, s after power-on: {timeline}")
    return Flow(run, disk, markers_before, console)


def test_the_serial_console_says_each_stage_in_order(secureboot_flow: Flow) -> None:
    text = secureboot_flow.console
    said = re.findall(r"IMAGER-LIVE stage=(\S+)", text)
    order = ["start", "network", "agent-started", "enrolled", "job", "done"]
    assert [s for s in dict.fromkeys(said) if s in order] == order, said
    assert "failed" not in said and "pending" not in said, said
    kinds = re.findall(r"IMAGER-LIVE stage=job \S+ kind=(\w+)", text)
    assert list(dict.fromkeys(kinds)) == ["erase", "image"], kinds
    assert "Secure boot enabled" in text and "Verification failed" not in text
    assert re.search(r"[Kk]ernel is locked down|Lockdown: ", text), "no lockdown on the console"


def test_no_marker_of_the_donor_is_left_on_the_whole_nvme(secureboot_flow: Flow) -> None:
    disk = secureboot_flow.disk
    assert secureboot_flow.markers_before == len(disk.offsets) == 65
    started = time.monotonic()
    left = scan(disk.path, disk.prefix)
    FIGURES["scan of the 4 GiB NVMe file from the host, s"] = round(
        time.monotonic() - started, 1)
    assert left == [], f"donor markers left at offsets {left[:10]}"


def test_the_installed_lab_system_boots_from_the_nvme_under_secure_boot(
        bench: Bench, secureboot_flow: Flow) -> None:
    report = secureboot_flow.report
    assert report["profile"] == "lab" and report["version"] == bench.lab.spec.version
    assert (report["firmware"], report["secureboot"]) == ("uefi", "on")
    assert report["target"] == "multi-user" and report["locale_ok"] == "yes"
    assert bench.station.boot_answers(SB_SERIAL) == ["live", "local"]


def test_the_registry_holds_the_certified_imaged_laptop(bench: Bench,
                                                       secureboot_flow: Flow) -> None:
    with bench.session() as s:
        machine = s.get(Machine, secureboot_flow.run.machine_id)
        drive = s.get(Drive, secureboot_flow.run.drive_id)
        assert machine is not None and drive is not None
        assert machine.orientation == "reuse"            # confirmed by the technician
        # imaged, then certified again: its erasure certificate still holds
        assert machine.state == drive.state == "certified", (machine.state, drive.state)
        assert drive.machine_id == machine.id and drive.donation_id == machine.donation_id
        moves = [e.reason for e in s.scalars(select(ItemEvent).where(
            ItemEvent.drive_id == drive.id).order_by(ItemEvent.id))]
        assert any("written and verified" in (m or "") for m in moves), moves
        # the triage said parts (2 GiB, 1 thread: a VM); the technician chose reuse, said why
        assert machine.proposal and machine.proposal["orientation"] == "parts"
        erase = s.scalars(select(Job).where(Job.drive_id == drive.id, Job.kind == "erase")).one()
        report = erase.report or {}
        assert report["outcome"] == "erased" and report["achieved_class"] == "purge"
        assert [p["pattern"] for p in report["passes"]] == ["nvme format --ses=1"]
        assert report["verification"]["ok"] and report["verification"]["coverage"] == 1.0
        agent = s.get(Agent, machine.agent_id)
        assert agent is not None and agent.boot == "network" and agent.kind == "machine"
        assert (agent.info or {}).get("secure_boot") is True, agent.info
        deployment = s.scalars(select(Deployment).where(Deployment.drive_id == drive.id)).one()
        assert deployment.ok and deployment.image_name == "lab"
        assert deployment.verify == "full"
        assert deployment.verified_bytes == deployment.mapped_bytes > 0
        document = s.scalars(select(Document).where(Document.drive_id == drive.id,
                                                    Document.kind == "erasure")).one()
    path = bench.station.data / "documents" / f"{document.id}.json"
    verified = bench.station.cli("cert", "verify", str(path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    record = json.loads(path.read_text())
    agents = list(_blocks(record, "agent"))
    assert agents and all(a.get("boot") == "network" and a.get("secure_boot") is True
                          for a in agents), agents
    assert SB_SERIAL in json.dumps(record)


def _blocks(data: Any, key: str) -> Iterator[dict[str, Any]]:
    """Every dict under `key`, anywhere in a JSON document."""
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key and isinstance(v, dict):
                yield v
            yield from _blocks(v, key)
    elif isinstance(data, list):
        for item in data:
            yield from _blocks(item, key)


# -- 2. an unknown laptop: inventoried only, its own disk untouched ------------------------

UNKNOWN_SERIAL, UNKNOWN_MAC = "PF2UNKNOWN7", "52:54:00:e2:e0:07"


@dataclass
class Unknown:
    vm: Laptop
    disk: Path
    before: str
    after: str
    waited: float
    console: str
    timeline: Timeline


@pytest.fixture(scope="module")
def unknown_laptop(bench: Bench) -> Unknown:
    disk = marker_disk(bench.work / "unknown-disk.img")
    before = sha256(disk)
    vm = bench.net.laptop("unknown-uefi", firmware="uefi", serial=UNKNOWN_SERIAL,
                          mac=UNKNOWN_MAC, disk=disk, memory_mib=MEMORY_MIB)
    vm.start()
    tl = Timeline("unknown uefi", started=vm.started_at)
    try:
        vm.wait_for(re.escape(menus.ENTRY_INVENTORY), timeout=600)
        tl.mark("menu")
        _shot(vm, "portable-menu", settle=0.5)
        vm.send_keys("down", "ret")                   # a technician picks the inventory
        vm.wait_for(live_line("enrolled"), timeout=ENROL_SECONDS)
        tl.mark("enrolled")
        vm.wait_for(live_line("done"), timeout=600)
        tl.mark("done")
        vm.wait_for(re.escape(menus.ENTRY_INVENTORY), timeout=600, after=live_line("done"))
        shown = tl.mark("menu again")
        vm.wait_for(f"{LOCAL_MARKER} uefi", timeout=120, after=live_line("done"))
        waited = tl.mark("its own disk") - shown
        vm.wait_exit(timeout=60)
        console = clean_console(vm.text())
    finally:
        vm.stop()
        FIGURES["unknown laptop (uefi), s after power-on"] = dict(tl.stages)
        print(f"\n{tl.line()}")
    return Unknown(vm, disk, before, sha256(disk), waited, console, tl)


def test_an_unknown_laptop_is_inventoried_then_boots_its_own_disk_untouched(
        bench: Bench, unknown_laptop: Unknown) -> None:
    assert unknown_laptop.after == unknown_laptop.before, "the unknown laptop's disk changed"
    assert 9 <= unknown_laptop.waited <= 60, unknown_laptop.waited
    said = re.findall(r"IMAGER-LIVE stage=(\S+)", unknown_laptop.console)
    assert "job" not in said and "failed" not in said, said
    assert bench.station.boot_answers(UNKNOWN_SERIAL) == ["menu", "live", "menu"]
    machine = bench.station.machine(UNKNOWN_SERIAL)
    assert machine is not None and machine.donation_id is None
    assert machine.state == "inventoried"
    with bench.session() as s:
        drives = list(s.scalars(select(Drive).where(Drive.machine_id == machine.id)))
        assert drives and all(d.state == "inventoried" for d in drives)
    assert bench.station.jobs(machine.id, "erase") == []


# -- 3. SeaBIOS and plain OVMF: as far as enrolled ----------------------------------------

@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_a_laptop_of_a_donation_enrols_under(bench: Bench, firmware: str) -> None:
    serial = f"PF2{firmware.upper()}E2E"
    mac = "52:54:00:e2:e0:1" + ("1" if firmware == "bios" else "2")
    _intake(bench, serial)
    vm = bench.net.laptop(f"t480-{firmware}", firmware=firmware, serial=serial, mac=mac,
                          memory_mib=MEMORY_MIB)
    vm.start()
    try:
        found = vm.wait_for(live_line("enrolled"), timeout=ENROL_SECONDS)
        seconds = vm.seconds()
    finally:
        vm.stop()
    FIGURES[f"{firmware}: firmware to enrolled, s"] = seconds
    print(f"\n{firmware}: firmware to enrolled in {seconds} s")
    assert "agent=" in found.group(0)
    assert bench.station.boot_answers(serial) == ["live"]
    text = clean_console(vm.text())
    assert f"imager.mac={mac}" in text or firmware == "bios"
