"""The lab: the station's code and the firmware tools inside a QEMU guest (TCG).

One guest boots for the module (tests/lab/vm.py) with an NVMe drive, an AHCI
SATA disk, a virtio-scsi disk, a USB stick and an SD card, each over a sparse
file. The first run builds the guest (tests/lab/build.py, about a minute) and
caches it. Under CI=true nothing here may skip.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA
from lab.record import CANARY_OFFSET, RECORDINGS, canary_script
from lab.vm import DEFAULT_DRIVES, LabVM, nvme_controller

import imager

pytestmark = pytest.mark.root

DRIVES = {d.name: d for d in DEFAULT_DRIVES}
LAB_DATA = DATA / "lab"


def run_json(vm: LabVM, cmd: str) -> Any:
    return json.loads(vm.run(cmd).check().stdout)


def test_guest_sees_every_drive_with_its_serial(vm: LabVM) -> None:
    devices = {d["path"]: d for d in vm.block_devices()}
    serials = {(d.get("serial") or "").strip(): d for d in devices.values()}
    for drive in DEFAULT_DRIVES:
        if drive.serial:
            assert drive.serial in serials, f"{drive.name} not seen: {sorted(serials)}"
            assert serials[drive.serial]["size"] == drive.size
    transports = {(d.get("serial") or "").strip(): d["tran"] for d in devices.values()}
    assert transports["LABNVME0001"] == "nvme"
    assert transports["LABSATA0001"] == "sata"
    assert transports["LABUSB0001"] == "usb"
    assert transports["LABSCSI0001"] is None  # virtio-scsi: lsblk names no transport
    assert any(p.startswith("/dev/mmcblk") for p in devices), "no SD card"


def test_sata_and_scsi_report_their_wwn(vm: LabVM, dev: dict[str, str]) -> None:
    devices = {d["path"]: d for d in vm.block_devices()}
    assert devices[dev["sata"]]["wwn"] == "0x5000c500a1b2c301"
    assert devices[dev["scsi"]]["wwn"] == "0x5000c500a1b2c302"


def test_station_code_imports_in_the_guest(vm: LabVM) -> None:
    out = vm.python("import imager, sys; print(imager.__version__, sys.version_info[:2])")
    assert out.check().stdout.split()[0] == imager.__version__


def test_station_dependencies_import_in_the_guest(vm: LabVM) -> None:
    modules = "cryptography sqlalchemy yaml psutil rich pyudev alembic"
    code = f"import importlib; [importlib.import_module(m) for m in {modules.split()!r}]"
    vm.python(code).check()


def test_station_cli_runs_in_the_guest(vm: LabVM) -> None:
    out = vm.run("python3 -m imager --help", env={"PYTHONPATH": "/project"}).check().stdout
    assert "erase" in out and "usage: imager" in out


def test_nvme_identify_controller(vm: LabVM, dev: dict[str, str]) -> None:
    ctrl = run_json(vm, f"nvme id-ctrl {nvme_controller(dev['nvme'])} -o json")
    assert ctrl["sn"].strip() == "LABNVME0001"
    assert ctrl["mn"].strip() == "QEMU NVMe Ctrl"
    # QEMU 7.2: Format NVM supported (bit 1), no Sanitize, no Format/Crypto attributes.
    assert (ctrl["oacs"], ctrl["sanicap"], ctrl["fna"]) == (266, 0, 0)
    assert ctrl["oacs"] & 0x2


def test_nvme_identify_namespace_and_list(vm: LabVM, dev: dict[str, str]) -> None:
    ns = run_json(vm, f"nvme id-ns {dev['nvme']} -o json")
    assert ns["nsze"] * 512 == DRIVES["nvme"].size
    listed = run_json(vm, "nvme list -o json")["Devices"]
    assert [(d["DevicePath"], d["SerialNumber"]) for d in listed] == [
        (dev["nvme"], "LABNVME0001")]


def test_hdparm_identify_sata(vm: LabVM, dev: dict[str, str]) -> None:
    out = vm.run(f"hdparm -I {dev['sata']}").check().stdout
    assert re.search(r"Serial Number:\s+LABSATA0001", out)
    assert re.search(r"Model Number:\s+LAB SATA SSD", out)
    assert "Solid State Device" in out
    assert "Security:" not in out, "QEMU's AHCI disk has no ATA Security feature set"


def test_hdparm_max_sectors_shows_no_hpa(vm: LabVM, dev: dict[str, str]) -> None:
    out = vm.run(f"hdparm -N {dev['sata']}").check().stdout
    sectors = DRIVES["sata"].size // 512
    assert f"max sectors   = {sectors}/{sectors}, HPA is disabled" in out


@pytest.mark.parametrize("name", [d.name for d in DEFAULT_DRIVES])
def test_smartctl_json_on_every_drive(vm: LabVM, dev: dict[str, str], name: str) -> None:
    result = vm.run(f"smartctl -j -x {dev[name]}")
    report = json.loads(result.stdout)
    if name in ("usb", "sd"):  # QEMU's USB bridge and the SD card are not recognised
        assert report["smartctl"]["exit_status"] & 0x1
        assert report["smartctl"]["messages"][0]["severity"] == "error"
    else:
        assert report["serial_number"] == DRIVES[name].serial
        # Bits 0-1: command line / open failed. Bit 2 (some command failed) is set
        # on QEMU's SATA and SCSI disks: they lack several SMART logs.
        assert report["smartctl"]["exit_status"] & 0x3 == 0
        assert report["smartctl"]["exit_status"] & 0x4 == (0 if name == "nvme" else 4)


def test_sg_inq_and_sg_opcodes_on_scsi(vm: LabVM, dev: dict[str, str]) -> None:
    inq = vm.run(f"sg_inq {dev['scsi']}").check().stdout
    assert "Unit serial number: LABSCSI0001" in inq
    opcodes = vm.run(f"sg_opcodes {dev['scsi']}")
    assert not opcodes.ok and "Invalid opcode" in opcodes.stderr


def test_sd_card_is_not_emmc(vm: LabVM, dev: dict[str, str]) -> None:
    """QEMU 7.2 offers an SD card only: no eMMC, so `mmc extcsd read` cannot work."""
    name = dev["sd"].removeprefix("/dev/")
    assert vm.run(f"cat /sys/block/{name}/device/type").check().stdout.strip() == "SD"
    extcsd = vm.run(f"mmc extcsd read {dev['sd']}")
    assert not extcsd.ok and "Could not read EXT_CSD" in extcsd.stderr


def test_nvme_sanitize_is_an_invalid_opcode(vm: LabVM, dev: dict[str, str]) -> None:
    result = vm.run(f"nvme sanitize {nvme_controller(dev['nvme'])} --sanact=2")
    assert not result.ok and "Invalid Command Opcode" in result.stderr


@pytest.mark.parametrize("ses", [1, 2])
def test_nvme_format_secure_erase_zeroes_the_canary(vm: LabVM, dev: dict[str, str],
                                                    ses: int) -> None:
    out = vm.run(canary_script(ses).format(dev=dev["nvme"])).check().stdout
    before, after = out.split("## read before format")[1].split("## read after format")
    assert "49 4d 41 47 45 52 2d 43 41 4e 41 52 59" in before  # "IMAGER-CANARY"
    assert "Success formatting namespace:1" in before and "## exit status 0" in before
    assert after.split() == ["0000000", *["00"] * 16, "*", "0004096"], \
        f"marker at byte {CANARY_OFFSET} survived nvme format --ses={ses}"


def test_recorded_outputs_have_a_provenance_header() -> None:
    for rec in RECORDINGS:
        path = LAB_DATA / f"{rec.tool}-{rec.drive}.txt"
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# Recorded from QEMU 7.2"), path
        assert ", guest kernel " in first and f", tool {rec.package} " in first, path


def test_lab_data_dir_holds_only_recordings() -> None:
    expected = {f"{rec.tool}-{rec.drive}.txt" for rec in RECORDINGS} | {"README.md"}
    assert {p.name for p in Path(LAB_DATA).iterdir()} == expected


ENGINE_IN_GUEST = """
import json, os
from imager.erase.nvme import NvmeFormatEngine
from imager.erase.progress import NullSink
from imager.host.blockdev import open_device
from imager.model import ErasePlan, MethodStep
path = "{path}"
with open(path, "r+b") as fh:
    for off in (0, 8 << 20, 63 << 20):
        fh.seek(off)
        fh.write(os.urandom(1 << 20))
    fh.flush()
    os.fsync(fh.fileno())
options = {{"ses": {ses}, "reads_as": "00"}}
plan = ErasePlan(steps=(MethodStep("nvme-format", engine="nvme-format", options=options),),
                 verify="{verify}", verify_seed=os.urandom(16).hex())
with open_device(path, write=True) as dev:
    ex = NvmeFormatEngine(options).execute(dev, plan, sink=NullSink())
print(json.dumps({{"outcome": ex.outcome, "reason": ex.reason,
                  "canaries": ex.canary.planted, "survivors": list(ex.canary.survivors),
                  "coverage": ex.verification.coverage if ex.verification else None}}))
"""


@pytest.mark.parametrize(("ses", "verify"), [(1, "full"), (2, "sample")])
def test_nvme_format_engine_erases_and_proves_it_in_the_guest(
        vm: LabVM, dev: dict[str, str], ses: int, verify: str) -> None:
    out = vm.python(ENGINE_IN_GUEST.format(path=dev["nvme"], ses=ses, verify=verify),
                    timeout=300).check()
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["outcome"] == "erased", result["reason"]
    assert result["canaries"] >= 10 and result["survivors"] == []
    assert result["coverage"] == 1.0 if verify == "full" else result["coverage"] >= 0.10


PROBE_IN_GUEST = """
import json
from imager.inventory.probe import probe
from imager.settings import Settings
out = {{}}
for name, path in {paths}.items():
    c = probe(path, Settings(data_dir="/tmp/imager"))
    out[name] = {{"medium": c.medium, "transport": c.transport, "serial": c.identity.serial,
                 "nvme_format": c.nvme.format_supported if c.nvme else None,
                 "nvme_sanitize": c.nvme.sanitize_supported if c.nvme else None,
                 "nvme_crypto": c.nvme.format_crypto_erase if c.nvme else None,
                 "ns_size": c.nvme_namespace.size if c.nvme_namespace else None,
                 "ata_security": c.ata.security is not None if c.ata else None,
                 "hpa": c.hpa.hidden_sectors if c.hpa else None, "dco": c.dco_real_max,
                 "scsi_sanitize": sorted(c.scsi_sanitize),
                 "inquiry_serial": c.scsi_inquiry.serial if c.scsi_inquiry else None,
                 "other_namespaces": list(c.nvme_other_namespaces),
                 "smart": c.smart.answered if c.smart else None, "ata_drive": c.ata_drive,
                 "problems": list(c.problems)}}
print(json.dumps(out))
"""


def test_probe_every_drive_in_the_guest(vm: LabVM, dev: dict[str, str]) -> None:
    out = vm.python(PROBE_IN_GUEST.format(paths=repr(dev)), timeout=300).check()
    caps = json.loads(out.stdout.strip().splitlines()[-1])
    nv = caps["nvme"]
    assert (nv["medium"], nv["transport"]) == ("ssd", "nvme")
    assert nv["nvme_format"] and not nv["nvme_sanitize"] and not nv["nvme_crypto"]
    assert nv["ns_size"] == DRIVES["nvme"].size
    sata = caps["sata"]
    assert (sata["medium"], sata["transport"], sata["serial"]) == ("ssd", "sata",
                                                                   DRIVES["sata"].serial)
    assert sata["ata_security"] is False and sata["hpa"] == 0 and sata["dco"] is None
    assert caps["scsi"]["scsi_sanitize"] == [] and caps["scsi"]["smart"] is True
    assert caps["scsi"]["inquiry_serial"] == "LABSCSI0001"
    assert caps["usb"]["inquiry_serial"] == "LABUSB0001"
    assert nv["other_namespaces"] == []
    assert caps["usb"]["medium"] == "usb-flash" and caps["usb"]["smart"] is True  # -d scsi
    assert caps["sd"]["medium"] == "sd-mmc"
    # ATA drive? SATA yes; NVMe, SD, the SCSI disk (SMART in SCSI) no; behind the USB
    # bridge, which passes no ATA command, nobody can say (hdparm -I: all zeros)
    assert {name: c["ata_drive"] for name, c in caps.items()} == {
        "nvme": False, "sata": True, "scsi": False, "usb": None, "sd": False}
    assert not any("hdparm" in p for c in caps.values() for p in c["problems"])
