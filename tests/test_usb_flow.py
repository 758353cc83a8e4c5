"""A laptop erased and installed from a USB stick with no network, end to end.

The real live system (`imager.boot.live.build()`, cached) is written with the
station's offline kit and its signed `lab` image (`imager boot usb --image lab`'s
library call) to a stick (a loop device over a sparse file: `allow_loop`, a
keyword of the library only). A laptop VM boots it under OVMF with Secure Boot
(QEMU TCG): the stick on USB, no network device at all, an SMBIOS serial, an
emulated NVMe drive seeded with marked "donor data". Its live session finds the
stick's IMAGER-DATA partition, finds no network, runs the offline agent (the
kit's signed policy: erasure verified in full, then the kit's image written and
read back), shows the end on the laptop's screen, syncs the stick and powers off.

Then, from the host: no marker is left on the NVMe's backing file; the stick's
ESP is as written; its spool holds the offline erasure and deployment;
`imager boot usb-sync` to a real station, once its technician approved the
laptop's agent, has the drive certified (the document verifies, its agent block
says boot usb and Secure Boot on) and the deployment recorded; a second sync sends
nothing. Last, the laptop boots from its NVMe without the stick: the lab system
reports itself on the serial console, Secure Boot on.

Needs root, qemu-system-x86, ovmf, the live and OS image builds' tools (cached
builds otherwise: IMAGER_LIVE_CACHE, IMAGER_OS_CACHE) and the stick's tools.
IMAGER_SCREENSHOTS=DIR keeps the laptop's screens (docs/usb-*.png)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from clirun import imager
from conftest import need, need_root
from live_vm import LiveVM
from os_image import OVMF, lab_image
from os_image import missing as os_missing
from station_proc import Serve, until

from imager.boot import guest, live, stages, usb, usb_data
from imager.boot.live import LiveSystem
from imager.certify.keys import station_keys
from imager.cli import boot_usb
from imager.imaging.catalogue import images_dir
from imager.profile import boot_report
from imager.settings import Settings

pytestmark = pytest.mark.root
MiB, GiB = 1 << 20, 1 << 30
SERIAL = "USB-TEST-0001"
AGENT = f"portable {SERIAL}"
STATION_URL = "https://station.lan:8470"      # on the stick; the laptop has no network
NVME_SIZE = 4 * GiB
STICK_SIZE = 3 * GiB
MARK = b"DONOR-DATA-MARKER"
CODE, VARS = "OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"
BOOT_SECONDS, ERASE_SECONDS, IMAGE_SECONDS = 900, 2400, 2400


def _need_all() -> None:
    need_root()
    lacking = os_missing() + usb.missing_tools() + guest.missing_tools()
    need(not lacking, f"the USB flow needs: {', '.join(lacking)} (scripts/install)")


# -- the laptop ---------------------------------------------------------------------------


class StickLaptop(LiveVM):
    """A laptop under OVMF Secure Boot: the stick on xHCI (first boot device), an
    NVMe drive, no network device, its SMBIOS serial; the UEFI variables kept in
    its own file across boots. `stick=None`: booted from its NVMe alone."""

    def __init__(self, workdir: Path, system: LiveSystem, *, nvme: Path, stick: Path | None,
                 variables: Path) -> None:
        super().__init__(workdir, system, station=None, serial=SERIAL)
        self.nvme, self.stick, self.variables = nvme, stick, variables
        self.times: dict[str, float] = {}

    def argv(self) -> list[str]:
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35,smm=on",
                "-global", "driver=cfi.pflash01,property=secure,value=on",
                "-drive", f"if=pflash,format=raw,unit=0,file={OVMF / CODE},readonly=on",
                "-drive", f"if=pflash,format=raw,unit=1,file={self.variables}",
                "-nodefaults", "-m", str(self.memory_mib), "-smp", str(self.cpus),
                "-vga", "std", "-display", "none", "-no-reboot", "-nic", "none",
                "-serial", f"file:{self.console}",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                "-smbios", f"type=1,manufacturer=Lab,product=UsbTest,serial={SERIAL}",
                "-drive", f"if=none,id=d0,file={self.nvme},format=raw",
                "-device", "nvme,serial=NVME-USB-0001,drive=d0,bootindex=2"]
        if self.stick is not None:
            argv += ["-device", "qemu-xhci,id=xhci",
                     "-drive", f"if=none,id=stick,file={self.stick},format=raw",
                     "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=1"]
        return argv

    def mark(self, name: str, stage: str, seconds: float, **match: str) -> dict[str, str]:
        """wait_for, and the seconds since QEMU started kept as times[name]."""
        fields = self.wait_for(stage, seconds, **match)
        self.times.setdefault(name, round(time.monotonic() - self.started, 1))
        return fields

    def job_at(self, kind: str, phase: str, percent: int, seconds: float) -> bool:
        """Whether a `job kind=KIND phase=PHASE` line of `percent` or more came within
        `seconds` (the job may end before: False once a later stage or another kind
        shows)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            said = self.lines()
            if any(s == stages.JOB and f.get("kind") == kind and f.get("phase") == phase
                   and int(f["percent"]) >= percent for s, f in said):
                return True
            if said and (said[-1][0] != stages.JOB or said[-1][1].get("kind") != kind):
                return False
            time.sleep(0.5)
        return False


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def system() -> LiveSystem:
    _need_all()
    return live.build()


@pytest.fixture(scope="module")
def station_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The station: its keys sign the kit and the `lab` image in its catalogue."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("usb-station") / "data")
    lab_image(catalogue=images_dir(settings), keys=station_keys(settings))
    return settings


@pytest.fixture(scope="module")
def figures() -> Iterator[dict[str, float]]:
    found: dict[str, float] = {}
    yield found
    print(f"\nUSB flow figures (s): {json.dumps(found)}")


@pytest.fixture(scope="module")
def laptop_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The laptop's NVMe backing file seeded with donor data, its UEFI variables."""
    folder = tmp_path_factory.mktemp("usb-laptop")
    nvme = folder / "nvme.img"
    _seed(nvme)
    variables = folder / "vars.fd"
    shutil.copyfile(OVMF / VARS, variables)
    return {"nvme": nvme, "vars": variables, "folder": folder}


@pytest.fixture(scope="module")
def stick_image(system: LiveSystem, station_settings: Settings, figures: dict[str, float],
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stick, written as `imager boot usb --image lab --station URL` writes it."""
    image = tmp_path_factory.mktemp("usb-stick") / "stick.img"
    with open(image, "wb") as fh:
        fh.truncate(STICK_SIZE)
    files = usb.StickFiles.in_folder(system.folder)
    content = boot_usb.stick_content(station_settings, STATION_URL, image="lab")
    with _attached(image, blank=True) as dev:
        written = usb.write_stick(dev, files.check(), content, station_settings,
                                  allow_loop=True)
    figures["stick_write"] = written.seconds
    print(f"\nstick: ESP {written.esp_used / 1e6:.0f} of {written.esp_size / 1e6:.0f} MB, data "
          f"{written.data_size / 1e9:.2f} GB, written in {written.seconds} s")
    return image


@pytest.fixture(scope="module")
def offline_run(system: LiveSystem, stick_image: Path, laptop_files: dict[str, Path],
                figures: dict[str, float]) -> Iterator[StickLaptop]:
    """The laptop booted from the stick until it powered off by itself."""
    esp_before = _esp_digest(stick_image)
    work = laptop_files["folder"] / "offline"
    work.mkdir()
    with StickLaptop(work, system, nvme=laptop_files["nvme"], stick=stick_image,
                     variables=laptop_files["vars"]) as vm:
        vm.mark("stick", stages.STICK, BOOT_SECONDS)
        vm.mark("offline", stages.OFFLINE, 300)
        vm.mark("erase", stages.JOB, 600, kind="erase")
        if vm.job_at("erase", "verify", 30, ERASE_SECONDS):
            _keep(vm.screendump(work / "usb-effacement.png"))
        vm.mark("image", stages.JOB, ERASE_SECONDS, kind="image")
        if vm.job_at("image", "write", 30, IMAGE_SECONDS):
            _keep(vm.screendump(work / "usb-installation.png"))
        vm.mark("done", stages.OFFLINE_DONE, IMAGE_SECONDS)
        time.sleep(3)
        _keep(vm.screendump(work / "usb-termine.png"))
        vm.mark("poweroff", stages.POWEROFF, 300)
        assert vm.exited(120) is not None, f"the laptop did not power off:\n{vm.tail()}"
        vm.times["off"] = round(time.monotonic() - vm.started, 1)
        t = vm.times
        figures.update(firmware_to_erase=t["erase"], erase=round(t["image"] - t["erase"], 1),
                       image=round(t["done"] - t["image"], 1), offline_flow=t["off"])
        print(f"\nUSB laptop, seconds since QEMU started: {t}")
        assert _esp_digest(stick_image) == esp_before, "the stick's ESP was written"
        yield vm


# -- the offline run ------------------------------------------------------------------------


def test_the_laptop_says_each_step_on_its_serial_console(offline_run: StickLaptop) -> None:
    said = [(stage, fields) for stage, fields in offline_run.lines()]
    names = [stage for stage, _ in said]
    assert names[:2] == [stages.START, stages.STICK], names
    (stick,) = [f for s, f in said if s == stages.STICK]
    assert stick["part"].startswith("/dev/sd") and stick["part"].endswith("3")
    assert [f["reason"] for s, f in said if s == stages.NETWORK_FAILED] == [stages.NO_INTERFACE]
    (offline,) = [f for s, f in said if s == stages.OFFLINE]
    assert offline["reason"] == stages.NO_INTERFACE and int(offline["pid"]) > 1
    kinds = [f["kind"] for s, f in said if s == stages.JOB]
    assert kinds[0] == "erase" and kinds[-1] == "image" and "image" not in kinds[
        :kinds.index("image")], kinds
    assert names[-2:] == [stages.OFFLINE_DONE, stages.POWEROFF], names
    assert said[-2][1] == {"erased": "1", "installed": "1"}
    assert stages.FAILED not in names and stages.AGENT_STARTED not in names


def test_no_donor_data_is_left_on_the_drive(offline_run: StickLaptop,
                                            laptop_files: dict[str, Path]) -> None:
    assert _markers(laptop_files["nvme"]) == []


def test_the_sticks_spool_holds_the_erasure_and_the_deployment(
        offline_run: StickLaptop, stick_image: Path) -> None:
    with _attached(stick_image, read_only=True) as dev, _mounted(f"{dev}p3") as root:
        spool = root / usb_data.SPOOL
        kinds = [json.loads(p.read_text())["kind"] for p in usb_data.pending(spool)]
        assert {"offline_erasure", "offline_deployment"} <= set(kinds), kinds
        assert kinds.index("offline_erasure") < kinds.index("offline_deployment")
        events = {e["kind"]: e["data"] for e in (json.loads(p.read_text())
                                                 for p in usb_data.pending(spool))}
        report = events["offline_erasure"]["report"]
        assert report["outcome"] == "erased" and report["verification"]["mode"] == "full"
        assert report["plan"]["steps"][0]["engine"] == "nvme-format"     # under lockdown
        deployed = events["offline_deployment"]
        assert deployed["result"]["ok"] and deployed["image"]["name"] == "lab"
        assert "error" not in deployed["after"], deployed["after"]
        assert json.loads((spool / "agent.json").read_text())["secure_boot"] is True


# -- back at the station ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synced(offline_run: StickLaptop, stick_image: Path, station_settings: Settings,
           figures: dict[str, float]) -> Iterator[tuple[Serve, str]]:
    """The stick synced to a real station once the laptop's agent was approved."""
    station = Serve(station_settings.data_dir, "--no-local-agent")
    try:
        station.start()
        with _attached(stick_image) as dev:
            first = imager(station.data, "boot", "usb-sync", dev, "--station", station.url,
                           check=False)
            assert first.returncode == 2 and "waits for a technician" in first.stderr, first
            station.approve(AGENT)
            started = time.monotonic()
            done = imager(station.data, "boot", "usb-sync", dev, "--station", station.url)
            figures["sync"] = round(time.monotonic() - started, 1)
            print(f"\nusb-sync: {done.stdout.strip()}")
            again = imager(station.data, "boot", "usb-sync", dev, "--station", station.url)
            yield station, again.stdout
    finally:
        station.close()


def test_the_sync_certifies_the_drive_and_records_the_deployment(
        synced: tuple[Serve, str]) -> None:
    station, _ = synced
    until(lambda: [d for d in station.get("/api/v1/drives") if d["state"] == "certified"],
          120, "the drive erased offline is certified")
    (path,) = (station.data / "documents").glob("EFF-*.json")
    record = json.loads(path.read_text())["document"]
    assert record["agent"]["name"] == AGENT
    assert record["agent"]["boot"] == "usb" and record["agent"]["secure_boot"] is True
    checked = imager(station.data, "cert", "verify", str(path))
    print(f"\ncert verify: {checked.stdout.strip()[:400]}")
    with closing(sqlite3.connect(station.data / "registry.sqlite3")) as db:
        assert db.execute("SELECT image_name, ok, verify FROM deployments").fetchall() == [
            ("lab", 1, "full")]


def test_a_second_sync_sends_nothing(synced: tuple[Serve, str]) -> None:
    _, again = synced
    assert "rien à envoyer / nothing to send" in again, again


# -- the installed system -----------------------------------------------------------------------


def test_without_the_stick_the_laptop_boots_its_installed_system(
        offline_run: StickLaptop, system: LiveSystem, laptop_files: dict[str, Path],
        figures: dict[str, float]) -> None:
    work = laptop_files["folder"] / "installed"
    work.mkdir()
    with StickLaptop(work, system, nvme=laptop_files["nvme"], stick=None,
                     variables=laptop_files["vars"]) as vm:
        report = None
        while report is None and vm.exited(1) is None \
                and time.monotonic() - vm.started < BOOT_SECONDS:
            report = boot_report.parse_report(vm.console.read_text(errors="replace"))
        figures["installed_boot"] = round(time.monotonic() - vm.started, 1)
        assert report is not None, f"no boot report from the NVMe:\n{vm.tail()}"
    assert report["profile"] == "lab" and report["secureboot"] == "on", report
    assert report["firmware"] == "uefi", report


# -- helpers --------------------------------------------------------------------------------------


def _seed(path: Path) -> None:
    """A sparse drive image with a marker every 64 MiB and one in its last MiB."""
    with open(path, "wb") as fh:
        fh.truncate(NVME_SIZE)
        for offset in [*range(0, NVME_SIZE, 64 * MiB), NVME_SIZE - MiB // 2]:
            fh.seek(offset)
            fh.write(MARK + f" at {offset} ".encode() + b"x" * 4000)
    assert len(_markers(path)) == NVME_SIZE // (64 * MiB) + 1


def _markers(path: Path) -> list[int]:
    """The offsets of MARK in the file, reading only its data (not its holes)."""
    found: list[int] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size, offset = os.fstat(fd).st_size, 0
        while offset < size:
            try:
                offset = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:                      # ENXIO: only a hole is left
                break
            end = os.lseek(fd, offset, os.SEEK_HOLE)
            while offset < end:
                chunk = os.pread(fd, min(8 * MiB, end - offset) + len(MARK), offset)
                at = chunk.find(MARK)
                while at >= 0:
                    if not found or found[-1] != offset + at:
                        found.append(offset + at)
                    at = chunk.find(MARK, at + 1)
                offset += min(8 * MiB, end - offset)
    finally:
        os.close(fd)
    return sorted(set(found))


def _esp_digest(image: Path) -> str:
    """sha256 of the stick up to its data partition: MBR, GPT, BIOS boot, the ESP."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    end = table["partitions"][2]["start"] * 512
    digest = hashlib.sha256()
    with open(image, "rb") as fh:
        while fh.tell() < end:
            digest.update(fh.read(min(8 * MiB, end - fh.tell())))
    return digest.hexdigest()


@contextmanager
def _attached(image: Path, *, read_only: bool = False, blank: bool = False) -> Iterator[str]:
    """A loop device over `image` (a stick, its partitions seen unless `blank`);
    detached after, whatever happened."""
    argv = ["losetup", "--find", "--show", "--partscan", *(["--read-only"] if read_only
                                                           else []), str(image)]
    dev = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    try:
        if not blank:
            subprocess.run(["partx", "--update", dev], capture_output=True)
            until(lambda: Path(f"{dev}p3").exists() or None, 20, f"{dev}'s partitions")
        yield dev
    finally:
        for line in Path("/proc/self/mounts").read_text().splitlines():
            source, target = line.split()[:2]
            if source.startswith(f"{dev}p"):
                subprocess.run(["umount", target], capture_output=True)
        subprocess.run(["partx", "--delete", dev], capture_output=True)
        subprocess.run(["losetup", "--detach", dev], capture_output=True)


@contextmanager
def _mounted(part: str) -> Iterator[Path]:
    mnt = Path(f"/run/imager-usbflow-{os.getpid()}-{time.monotonic_ns()}")
    mnt.mkdir(parents=True)
    try:
        subprocess.run(["mount", "-o", "ro,noload", part, str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=False)
    finally:
        mnt.rmdir()


def _keep(png: Path) -> None:
    """Copy a screendump into $IMAGER_SCREENSHOTS (docs/ takes the ones looked at)."""
    keep = os.environ.get("IMAGER_SCREENSHOTS")
    if keep:
        shutil.copyfile(png, Path(keep) / png.name)
