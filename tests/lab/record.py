"""Record the firmware tools' outputs from the lab's emulated drives into tests/data/lab/.

    python tests/lab/record.py [--out DIR]      (root; builds the guest if needed)

Each file is <tool>-<drive>.txt: '#' header lines saying where it was recorded
(QEMU and Debian versions, emulated device, guest kernel, tool version, command,
exit status, stderr, date), then the command's stdout exactly.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `lab` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.vm import DEFAULT_DRIVES, LabVM, Result, device_specs, nvme_controller

DATA = Path(__file__).resolve().parents[1] / "data" / "lab"
ALL = "lab"  # pseudo drive name: a command about the whole guest
KIND_LABELS = {
    "nvme": "NVMe controller", "sata": "SATA disk on q35's ICH9 AHCI controller",
    "scsi": "SCSI disk on virtio-scsi-pci", "usb": "USB mass-storage stick on qemu-xhci",
    "sd": "SD card on sdhci-pci",
}
CANARY_OFFSET = 1 << 20  # byte offset of the marker block (4 KiB block 256)


@dataclass(frozen=True)
class Recording:
    """One command to record: `{dev}` is the drive's block device, `{ctrl}` its NVMe controller."""

    tool: str
    drive: str
    command: str
    package: str


def canary_script(ses: int) -> str:
    """Write a marker, read it, `nvme format --ses=N`, read it again (O_DIRECT both times)."""
    block = CANARY_OFFSET // 4096
    read = f"dd if={{dev}} bs=4096 skip={block} count=1 iflag=direct status=none | od -A d -t x1"
    return (f"echo '## write IMAGER-CANARY at byte {CANARY_OFFSET}'; "
            f"printf IMAGER-CANARY | dd of={{dev}} bs=4096 seek={block} count=1 conv=sync,fsync"
            " oflag=direct status=none; "
            f"echo '## read before format'; {read}; "
            f"echo '## nvme format {{dev}} --ses={ses} --force'; "
            f"nvme format {{dev}} --ses={ses} --force; echo \"## exit status $?\"; "
            f"echo '## read after format'; {read}")


RECORDINGS: tuple[Recording, ...] = (
    Recording("lsblk-J-O", ALL, "lsblk -J -O", "util-linux"),
    Recording("nvme-id-ctrl", "nvme", "nvme id-ctrl {ctrl} -o json", "nvme-cli"),
    Recording("nvme-id-ns", "nvme", "nvme id-ns {dev} -o json", "nvme-cli"),
    Recording("nvme-list", "nvme", "nvme list -o json", "nvme-cli"),
    Recording("hdparm-I", "sata", "hdparm -I {dev}", "hdparm"),
    Recording("hdparm-N", "sata", "hdparm -N {dev}", "hdparm"),
    Recording("hdparm-dco-identify", "sata", "hdparm --dco-identify {dev}", "hdparm"),
    Recording("hdparm-sanitize-status", "sata", "hdparm --sanitize-status {dev}", "hdparm"),
    Recording("hdparm-I", "usb", "hdparm -I {dev}", "hdparm"),     # no SAT bridge: no answer
    Recording("hdparm-I", "scsi", "hdparm -I {dev}", "hdparm"),
    *[Recording("smartctl-j-x", d.name, "smartctl -j -x {dev}", "smartmontools")
      for d in DEFAULT_DRIVES],
    Recording("smartctl-j-x-d-scsi", "usb", "smartctl -j -x -d scsi {dev}", "smartmontools"),
    Recording("sg_inq", "scsi", "sg_inq {dev}", "sg3-utils"),
    Recording("sg_inq", "usb", "sg_inq {dev}", "sg3-utils"),
    Recording("sg_opcodes", "scsi", "sg_opcodes {dev}", "sg3-utils"),
    Recording("mmc-extcsd-read", "sd", "mmc extcsd read {dev}", "mmc-utils"),
    # Destructive ones last.
    Recording("sg_sanitize-block", "scsi", "sg_sanitize --quick --block {dev}", "sg3-utils"),
    Recording("nvme-sanitize-block", "nvme", "nvme sanitize {ctrl} --sanact=2", "nvme-cli"),
    Recording("nvme-sanitize-log", "nvme", "nvme sanitize-log {ctrl} -o json", "nvme-cli"),
    Recording("nvme-format-ses1-canary", "nvme", canary_script(1), "nvme-cli"),
    Recording("nvme-format-ses2-canary", "nvme", canary_script(2), "nvme-cli"),
)


@dataclass(frozen=True)
class Provenance:
    """Versions that every header names."""

    qemu: str
    qemu_deb: str
    kernel: str
    packages: Mapping[str, str]


def host_provenance(vm: LabVM) -> Provenance:
    out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                         text=True, check=True).stdout
    qemu = re.search(r"version (\d+\.\d+(?:\.\d+)?)", out)
    deb = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "qemu-system-x86"],
                         capture_output=True, text=True).stdout.strip()
    assert vm.image is not None and vm.guest_kernel is not None
    packages = vm.image.manifest["debian_packages"]
    assert isinstance(packages, dict)
    return Provenance(qemu.group(1) if qemu else out.strip(), deb or "unknown",
                      vm.guest_kernel, packages)


def describe(drive: str, vm: LabVM) -> str:
    """The emulated device, with the exact -device option that made it."""
    if drive == ALL:
        kinds = ", ".join(KIND_LABELS[d.kind] for d in vm.drives)
        return f"lab guest with: {kinds}"
    spec = device_specs(vm.drives)[drive]
    spec = ",".join(p for p in spec.split(",") if not p.startswith("drive="))
    kind = next(d.kind for d in vm.drives if d.name == drive)
    return f"{KIND_LABELS[kind]} (-device {spec})"


def render(rec: Recording, command: str, result: Result, prov: Provenance,
           device: str) -> str:
    """The recorded file: provenance header, then stdout unchanged."""
    version = prov.packages.get(rec.package, "unknown")
    date = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [
        f"# Recorded from QEMU {prov.qemu} (Debian 12 qemu-system-x86 {prov.qemu_deb}) "
        f"emulated {device}, guest kernel {prov.kernel}, tool {rec.package} {version}, "
        f"command: {command}, date {date}",
        f"# Exit status: {result.rc}" + (" (timed out)" if result.timed_out else ""),
        *[f"# stderr: {line}" for line in result.stderr.splitlines()],
    ]
    return "\n".join(lines) + "\n" + result.stdout


def record_all(vm: LabVM, out: Path,
               recordings: Sequence[Recording] = RECORDINGS) -> list[Path]:
    """Run every recording in the booted lab and write its file; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    prov = host_provenance(vm)
    paths = vm.device_paths()
    written = []
    for rec in recordings:
        dev = paths.get(rec.drive, "")
        command = rec.command.format(dev=dev, ctrl=nvme_controller(dev))
        result = vm.run(command, timeout=300)
        path = out / f"{rec.tool}-{rec.drive}.txt"
        path.write_text(render(rec, command, result, prov, describe(rec.drive, vm)))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA, help=f"default {DATA}")
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="imager-lab-") as workdir, LabVM(Path(workdir)) as vm:
        print(f"guest {vm.guest_kernel} ready in {vm.boot_seconds} s")
        for path in record_all(vm, args.out):
            print(f"  {path}")
    print(f"done in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
