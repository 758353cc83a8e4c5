"""Hidden areas (HPA, DCO): found with hdparm (through a USB or SAS adapter too),
removed, proven gone, recorded.

The fake hdparm answers with outputs published for real drives
(tests/data/real/ata): a 500 GB disk whose HPA hid 2113 sectors, then the
same disk after `hdparm -N p976773168`, and the DCO of a WD5000BMVV. No
publication shows a DCO that hides sectors: those cases are derived from
the real recordings by edits commented where they are made. The probe behind
an adapter replays the WD5000BMVV's `hdparm -I` through its USB case, and the
QEMU lab's USB stick and SCSI disk (tests/data/lab)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import DATA, read_recorded, replay

from imager.erase import policy
from imager.erase.hidden import probe_hidden, remove_hidden
from imager.erase.plan import plan_for
from imager.errors import DeviceError
from imager.host.run import RunResult
from imager.inventory import hdparm
from imager.inventory.capabilities import DriveCapabilities
from imager.inventory.probe import capabilities
from imager.model import DriveIdentity, HiddenAreas
from imager.settings import Settings

REAL = DATA / "real" / "ata"
DEV = "/dev/sdz"
SECTORS = 976773168

HPA_ENABLED = read_recorded(REAL / "hdparm-N-hpa-enabled-500gb.txt")   # 976771055/976773168
SET_NATIVE = read_recorded(REAL / "hdparm-N-p-native-500gb.txt")
HPA_REMOVED = read_recorded(REAL / "hdparm-N-hpa-removed-500gb.txt")   # 976773168/976773168
DCO_OLD = read_recorded(REAL / "hdparm-dco-identify-wd5000bmvv.txt")   # real max 976773168
# Derived: hdparm >= 9.4x prints this first line when the DCO page's checksum
# is right (the 2011 hdparm of the recording did not print it); the parser
# trusts a DCO only with it (see the QEMU zero-page trap in the lab README).
DCO = "DCO Checksum verified.\n" + DCO_OLD
QEMU_DCO = read_recorded(DATA / "lab" / "hdparm-dco-identify-sata.txt")  # unusable page
# Derived: the removed-HPA recording as a drive whose DCO caps it 2113 sectors
# lower answers `hdparm -N` (visible = native = DCO maximum).
DCO_CAPPED = HPA_REMOVED.replace(f"{SECTORS}/{SECTORS}", "976771055/976771055")
# Derived: that capped drive with an HPA as well, hiding 1055 more sectors.
DCO_AND_HPA = HPA_ENABLED.replace(f"976771055/{SECTORS}", "976770000/976771055")


def result(argv: Sequence[str], code: int = 0, out: str = "", err: str = "") -> RunResult:
    return RunResult(tuple(argv), code, out, err, 0.0)


@dataclass
class FakeAtaDisk:
    """`hdparm -N` and `--dco-identify` answers that change as commands run."""

    max_sectors: list[str]          # hdparm -N answers: [before, after the change]
    dco: str = QEMU_DCO
    dco_after: str | None = None
    kernel_size: int = SECTORS * 512
    changes_work: bool = True
    calls: list[tuple[str, ...]] = field(default_factory=list)
    inputs: list[str | None] = field(default_factory=list)
    changed: bool = False

    def __call__(self, argv: Sequence[str], *, timeout: float = 60, check: bool = True,
                 input: str | None = None) -> RunResult:
        self.calls.append(tuple(argv))
        self.inputs.append(input)
        args = list(argv)
        if args == ["hdparm", "-N", DEV]:
            return result(argv, out=self.max_sectors[1 if self.changed else 0])
        if args == ["hdparm", "--dco-identify", DEV]:
            return result(argv, out=self.dco_after if self.changed and self.dco_after else self.dco)
        if args[:2] == ["hdparm", "--yes-i-know-what-i-am-doing"]:
            return self.change(argv)
        if args[0] == "tee":
            return result(argv, out=input or "")
        if args[:2] == ["blockdev", "--getsize64"]:
            return result(argv, out=f"{self.kernel_size}\n")
        if args[:2] == ["blockdev", "--getss"]:
            return result(argv, out="512\n")
        raise AssertionError(f"unexpected command {argv}")

    def change(self, argv: Sequence[str]) -> RunResult:
        if not self.changes_work:
            return result(argv, 5, err=" HDIO_DRIVE_CMD(setmax) failed: Input/output error\n")
        self.changed = True
        return result(argv, out=SET_NATIVE if "-N" in argv else
                      "\n/dev/sdz:\n issuing DCO restore command\n")


def never_called(argv: Sequence[str], **kw: object) -> RunResult:
    raise AssertionError(f"nothing is hidden, yet {list(argv)} was run")


def test_hpa_recordings_parse() -> None:
    before = hdparm.parse_hpa(HPA_ENABLED)
    assert (before.current_max, before.native_max, before.enabled) == (976771055, SECTORS, True)
    assert before.hidden_sectors == 2113
    assert hdparm.parse_hpa(SET_NATIVE).hidden_sectors == 0
    assert not hdparm.parse_hpa(HPA_REMOVED).enabled


def test_dco_recording_parses_only_with_its_checksum_line() -> None:
    assert re.search(r"Real max sectors: 976773168", DCO_OLD)
    assert hdparm.parse_dco_real_max(DCO_OLD, native_max=SECTORS) is None
    assert hdparm.parse_dco_real_max(DCO, native_max=SECTORS) == SECTORS


def test_probe_finds_the_real_hpa() -> None:
    disk = FakeAtaDisk([HPA_ENABLED])
    found = probe_hidden(DEV, runner=disk)
    assert found == HiddenAreas(visible_max=976771055, native_max=SECTORS, dco_real_max=None)
    assert found.hpa_hidden == 2113 and found.dco_hidden == 0


def test_probe_refuses_a_drive_that_does_not_answer_hdparm_n() -> None:
    def usb_stick(argv: Sequence[str], **kw: object) -> RunResult:
        return result(argv, 25, out="\n/dev/sdz:\n", err="SG_IO: bad/missing sense data\n")

    with pytest.raises(DeviceError, match=f"hdparm -N {DEV} did not report max sectors"):
        probe_hidden(DEV, runner=usb_stick)


LAB = DATA / "lab"


@dataclass
class Tools:
    """The firmware tools as the probe runs them, answering with recordings (a command
    not listed is a test failure: the probe must not run it)."""

    path: str
    answers: dict[str, Path | str | None]    # command with {dev} -> recording, text, failure

    def __call__(self, argv: list[str]) -> RunResult:
        command = " ".join(argv).replace(self.path, "{dev}")
        if command not in self.answers:
            raise AssertionError(f"the probe ran {command}")
        answer = self.answers[command]
        if isinstance(answer, Path):
            return dataclasses.replace(replay(answer), argv=tuple(argv))
        return result(argv, 0 if answer else 1, out=answer or "")


def _probed(tmp_path: Path, settings: Settings, transport: str,
            answers: dict[str, Path | str | None]) -> DriveCapabilities:
    device = tmp_path / "sdc"           # stands for the block device: it exists
    device.touch()
    ident = DriveIdentity(path=str(device), size=SECTORS * 512, transport=transport)
    return capabilities(ident, settings, runner=Tools(str(device), answers))


USB_STICK = {
    "hdparm -I {dev}": LAB / "hdparm-I-usb.txt", "sg_opcodes {dev}": None,
    "sg_inq {dev}": LAB / "sg_inq-usb.txt", "smartctl -j -x {dev}": LAB / "smartctl-j-x-usb.txt",
    "smartctl -j -x -d scsi {dev}": LAB / "smartctl-j-x-d-scsi-usb.txt"}


def test_a_sata_disk_in_a_usb_case_is_checked_through_its_bridge(tmp_path: Path,
                                                                 settings: Settings) -> None:
    """The WD5000BMVV answered hdparm -I through its USB case's bridge (the recording);
    asked -N then, it tells its HPA: here the 500 GB disk's recording, of the same size."""
    caps = _probed(tmp_path, settings, "usb", {
        **USB_STICK, "hdparm -I {dev}": REAL / "hdparm-I-wd5000bmvv-enhanced.txt",
        "hdparm -N {dev}": HPA_ENABLED, "hdparm --dco-identify {dev}": DCO})
    assert caps.ata is not None and caps.ata.model == "WDC WD5000BMVV-11GNWS0"
    assert caps.hpa is not None and caps.hpa.hidden_sectors == 2113
    assert caps.medium == "hdd" and caps.ata_drive is True
    plan = plan_for(caps, policy.load())
    assert plan.medium == "usb-disk" and plan.ata_drive is True
    assert plan.hidden == HiddenAreas(visible_max=976771055, native_max=SECTORS,
                                      dco_real_max=SECTORS)
    assert not [n for n in plan.advice if "hdparm -N" in n.en]   # checked, then removed


def test_a_bridge_passing_no_ata_command_leaves_it_unknown(tmp_path: Path,
                                                            settings: Settings) -> None:
    """QEMU's USB stick: hdparm -I exits 0 with an all-zero IDENTIFY (no model), so -N is
    not asked; nothing says whether a SATA disk sits behind the bridge."""
    caps = _probed(tmp_path, settings, "usb", USB_STICK)
    assert (caps.ata, caps.hpa, caps.ata_drive, caps.medium) == (None, None, None, "usb-flash")
    plan = plan_for(caps, policy.load())
    assert plan.ata_drive is None and [n for n in plan.advice if "hdparm -N" in n.en]


def test_a_scsi_drive_on_a_sas_adapter_is_no_ata_drive(tmp_path: Path,
                                                       settings: Settings) -> None:
    """The lab's virtio-scsi disk, as a SAS HBA shows a SAS disk: INQUIRY vendor QEMU and
    SMART in SCSI; hdparm -I gets the same all-zero IDENTIFY as through the USB stick."""
    caps = _probed(tmp_path, settings, "sas", {
        "hdparm -I {dev}": LAB / "hdparm-I-scsi.txt", "sg_opcodes {dev}": LAB /
        "sg_opcodes-scsi.txt", "sg_inq {dev}": LAB / "sg_inq-scsi.txt",
        "smartctl -j -x {dev}": LAB / "smartctl-j-x-scsi.txt"})
    assert (caps.ata, caps.hpa, caps.ata_drive) == (None, None, False)
    plan = plan_for(caps, policy.load())
    assert plan.medium == "sas-ssd"      # lsblk said it does not spin
    assert plan.ata_drive is False and not [n for n in plan.advice if "hdparm -N" in n.en]


def test_nothing_hidden_runs_no_command() -> None:
    before = probe_hidden(DEV, runner=FakeAtaDisk([HPA_REMOVED], dco=DCO))
    assert not before.any_hidden and before.dco_real_max == SECTORS
    change = remove_hidden(DEV, before, runner=never_called)
    assert change.before == change.after == before and change.actions == ()


def test_hpa_is_removed_and_recorded_before_and_after() -> None:
    disk = FakeAtaDisk([HPA_ENABLED, HPA_REMOVED])
    before = probe_hidden(DEV, runner=disk)
    change = remove_hidden(DEV, before, runner=disk)
    assert change.before.hpa_hidden == 2113
    assert change.after == HiddenAreas(visible_max=SECTORS, native_max=SECTORS)
    assert change.actions == (
        f"hdparm --yes-i-know-what-i-am-doing -N p{SECTORS} {DEV}",
        "echo 1 > /sys/block/sdz/device/rescan")
    assert disk.calls[-2:] == [("blockdev", "--getsize64", DEV), ("blockdev", "--getss", DEV)]
    assert "1\n" in disk.inputs


def test_dco_is_restored_and_recorded() -> None:
    disk = FakeAtaDisk([DCO_CAPPED, HPA_REMOVED], dco=DCO)
    before = probe_hidden(DEV, runner=disk)
    assert before.dco_hidden == 2113 and before.hpa_hidden == 0
    change = remove_hidden(DEV, before, runner=disk)
    assert change.actions == (f"hdparm --yes-i-know-what-i-am-doing --dco-restore {DEV}",
                              "echo 1 > /sys/block/sdz/device/rescan")
    assert not change.after.any_hidden and change.after.dco_real_max == SECTORS


def test_hpa_goes_before_the_dco_restore() -> None:
    # hdparm(8): --dco-restore fails while a -Np maximum is set.
    disk = FakeAtaDisk([DCO_AND_HPA, HPA_REMOVED], dco=DCO)
    before = probe_hidden(DEV, runner=disk)
    assert (before.hpa_hidden, before.dco_hidden) == (1055, 2113)
    change = remove_hidden(DEV, before, runner=disk)
    assert [a.split()[2] for a in change.actions[:2]] == ["-N", "--dco-restore"]
    assert change.actions[0].endswith(f"-N p976771055 {DEV}")


def test_what_is_still_hidden_is_named() -> None:
    disk = FakeAtaDisk([HPA_ENABLED, HPA_ENABLED], changes_work=False)
    before = probe_hidden(DEV, runner=disk)
    with pytest.raises(DeviceError, match=rf"{DEV} still hides 2113 sectors in an HPA "
                                          r"\(976771055 of 976773168 visible\) after .*"
                                          r"failed: HDIO_DRIVE_CMD\(setmax\).*replug"):
        remove_hidden(DEV, before, runner=disk)


def test_a_kernel_still_seeing_the_old_size_is_an_error() -> None:
    disk = FakeAtaDisk([HPA_ENABLED, HPA_REMOVED], kernel_size=976771055 * 512)
    before = probe_hidden(DEV, runner=disk)
    with pytest.raises(DeviceError, match="kernel still sees 500106780160 bytes .* replug"):
        remove_hidden(DEV, before, runner=disk)


def test_a_dco_restore_that_fails_and_leaves_its_page_unreadable_is_not_taken_for_success(
        ) -> None:
    # hdparm says nothing wrong, yet the drive still shows its capped size and its
    # DCO page no longer reads (QEMU's unusable page): "no DCO" is not "removed".
    disk = FakeAtaDisk([DCO_CAPPED, DCO_CAPPED], dco=DCO, dco_after=QEMU_DCO)
    before = probe_hidden(DEV, runner=disk)
    assert before.dco_hidden == 2113
    with pytest.raises(DeviceError, match=rf"{DEV} still hides 2113 sectors \(976771055 "
                                          rf"visible of the {SECTORS} found before\)"):
        remove_hidden(DEV, before, runner=disk)
